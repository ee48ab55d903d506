//! Policies: the file format ([`model`]), its compiled form (this module), compiling
//! ([`compile`]), matching ([`matcher`]), CEL ([`cel`]), SBOM normalisation for attestation
//! conditions ([`sbom`]) and loading from disk ([`load`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub mod cel;
pub mod claims;
pub mod compile;
pub mod lint;
pub mod load;
pub mod matcher;
pub mod model;
pub mod sbom;
pub mod schema;
pub mod signed;

#[cfg(test)]
mod example_tests;

pub use compile::{PolicyError, builtin_trusted_root};
pub use model::{DigestRule, Mode, Platforms, Require, SopsCiphertext, TransparencyLog};

use self::cel::Expression;
use self::matcher::{Glob, Selector};
use crate::image::ImageRef;

/// Where a policy was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One compiled policy document.
#[derive(Debug, Clone)]
pub enum Policy {
    Image(ImagePolicy),
    Resource(ResourcePolicy),
}

impl Policy {
    pub fn name(&self) -> &str {
        match self {
            Policy::Image(p) => &p.name,
            Policy::Resource(p) => &p.name,
        }
    }

    pub fn source(&self) -> &Source {
        match self {
            Policy::Image(p) => &p.source,
            Policy::Resource(p) => &p.source,
        }
    }
}

/// Every policy in force, as one immutable value swapped whole on reload.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub images: Vec<ImagePolicy>,
    pub resources: Vec<ResourcePolicy>,
}

impl PolicySet {
    /// Build a set, checking that names are unique.
    pub fn new(policies: Vec<Policy>) -> Result<Self, PolicyError> {
        compile::check_unique(&policies)?;
        let mut set = Self::default();
        for policy in policies {
            match policy {
                Policy::Image(p) => set.images.push(p),
                Policy::Resource(p) => set.resources.push(p),
            }
        }
        Ok(set)
    }

    /// How many policies the set holds.
    pub fn len(&self) -> usize {
        self.images.len() + self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every file the set's authorities read (key files, trusted roots), sorted, once each.
    pub fn referenced_files(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> =
            self.images.iter().flat_map(|p| &p.authorities).flat_map(|a| a.file_paths().map(PathBuf::from)).collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

/// A compiled `ImagePolicy`.
#[derive(Debug, Clone)]
pub struct ImagePolicy {
    pub name: String,
    pub source: Source,
    /// A hash of the document (and its file name) and, once loaded, of the content of the key
    /// files and trusted roots it names: results cached for one policy are never reused for an
    /// edited one, nor after a key file changed.
    pub fingerprint: u64,
    pub mode: Mode,
    pub selector: Selector,
    pub images: Vec<Glob>,
    pub exclude_images: Vec<Glob>,
    pub allowed_images: Option<Vec<Glob>>,
    pub digest: DigestRule,
    pub platforms: Platforms,
    pub require: Require,
    pub authorities: Vec<Authority>,
    pub attestations: Vec<Attestation>,
}

impl ImagePolicy {
    /// Whether this policy applies to the image (by the `images`/`excludeImages` globs).
    pub fn applies_to(&self, image: &ImageRef) -> bool {
        let name = image.name();
        matcher::any_matches(&self.images, &name) && !matcher::any_matches(&self.exclude_images, &name)
    }

    /// Whether the policy needs signatures or attestations checked.
    pub fn needs_verification(&self) -> bool {
        !self.authorities.is_empty() || !self.attestations.is_empty()
    }
}

/// A compiled `ResourcePolicy`.
#[derive(Debug, Clone)]
pub struct ResourcePolicy {
    pub name: String,
    pub source: Source,
    pub mode: Mode,
    pub selector: Selector,
    pub rules: Vec<Condition>,
    /// The built-in SOPS ciphertext check for matched objects (None: the default, deny).
    pub sops_ciphertext: Option<SopsCiphertext>,
}

/// A CEL condition and the message to show when it is false.
#[derive(Debug, Clone)]
pub struct Condition {
    pub expression: Expression,
    pub message: Option<String>,
}

/// A trusted signer.
#[derive(Debug, Clone)]
pub struct Authority {
    pub name: String,
    pub kind: AuthorityKind,
    pub transparency_log: TransparencyLog,
    /// The `trustedRoot` file; `None` with `files.trusted_root` set is a built-in root
    /// (`trustedRoot: github`).
    pub trusted_root: Option<PathBuf>,
    /// The content of the files the authority names (`publicKeyFile`, `trustedRoot`), read when
    /// the policies are loaded ([`load`]): the verifier never reads the disk. Empty until then.
    pub files: AuthorityFiles,
}

impl Authority {
    /// The files this authority reads: its `publicKeyFile` and its `trustedRoot`.
    pub fn file_paths(&self) -> impl Iterator<Item = &std::path::Path> {
        let key = match &self.kind {
            AuthorityKind::Key(KeyRef::File(path)) => Some(path.as_path()),
            _ => None,
        };
        key.into_iter().chain(self.trusted_root.as_deref())
    }
}

/// The content of an authority's files, as read when its policy was loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorityFiles {
    /// The `publicKeyFile` (PEM).
    pub key: Option<FileContent>,
    /// The `trustedRoot` (trusted_root.json).
    pub trusted_root: Option<FileContent>,
}

/// A file's text and a hash of it (to cache what is parsed from it, per content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    pub text: Arc<str>,
    pub hash: u64,
}

impl FileContent {
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        use std::hash::{Hash, Hasher};
        let text = text.into();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        Self { hash: hasher.finish(), text }
    }
}

/// Key-based or keyless.
#[derive(Debug, Clone)]
pub enum AuthorityKind {
    Key(KeyRef),
    Keyless(Identity),
    /// `keyless.identities`: several identities, any one of which may sign (one authority).
    KeylessAny(Vec<Identity>),
}

/// Where a public key comes from.
#[derive(Debug, Clone)]
pub enum KeyRef {
    File(PathBuf),
    Pem(String),
    Secret { name: String, namespace: Option<String>, key: Option<String> },
}

/// The certificate identity a keyless signature must carry.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The exact OIDC issuer; with `issuer_regexp`, that expression's source (for messages).
    pub issuer: String,
    pub subject: SubjectMatch,
    pub github: Option<model::GithubSpec>,
    /// `issuerRegExp` (always anchored): matched instead of `issuer`.
    pub issuer_regexp: Option<regex::Regex>,
    /// `claims:`: Fulcio certificate extensions that must be present with these values.
    pub claims: Vec<claims::ClaimMatch>,
}

/// How the certificate subject (SAN) is matched. Every form is anchored.
#[derive(Debug, Clone)]
pub enum SubjectMatch {
    Exact(String),
    Pattern(Glob),
    RegExp(regex::Regex),
    /// No subject constraint of its own: the `github` claims or `claims` decide.
    GithubOnly,
}

/// A required attestation.
#[derive(Debug, Clone)]
pub struct Attestation {
    pub name: String,
    /// The full predicate type URI.
    pub predicate_type: String,
    /// Authorities that may have signed it; empty = any of the policy's.
    pub authorities: Vec<String>,
    pub conditions: Vec<Condition>,
}

/// Short predicate type names (as cosign uses them) → URIs. A URI is taken as written.
pub fn predicate_type_uri(name: &str) -> Option<String> {
    let uri = match name {
        "slsaprovenance" | "slsaprovenance02" => "https://slsa.dev/provenance/v0.2",
        "slsaprovenance1" => "https://slsa.dev/provenance/v1",
        "spdx" | "spdxjson" => "https://spdx.dev/Document",
        "cyclonedx" => "https://cyclonedx.org/bom",
        "vuln" => "https://cosign.sigstore.dev/attestation/vuln/v1",
        "openvex" => "https://openvex.dev/ns",
        "link" => "https://in-toto.io/Link/v1",
        "custom" => "https://cosign.sigstore.dev/attestation/v1",
        uri if uri.contains("://") && !uri.contains(char::is_whitespace) => uri,
        _ => return None,
    };
    Some(uri.to_owned())
}
