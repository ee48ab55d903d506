//! Image references: parse and CANONICALISE the way the container runtime resolves them (pure).
//!
//! `nginx` is `docker.io/library/nginx:latest`; `ghcr.io/acme/app@sha256:…` keeps its digest and
//! has no tag. The grammar is the one of `distribution/reference`: a domain is the first
//! component when it contains `.` or `:`, is `localhost`, or has an upper-case letter; path
//! components are lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
//!
//! Every reference and every image glob of a policy goes through the same canonicaliser
//! ([`ImageRef::parse`], [`canonical_glob`]), so a name cannot be spelt past a policy: the
//! registry host is canonicalised by [`host`] (lower case, port 443 dropped, Docker Hub aliases
//! folded, IPv6 in RFC 5952 form; non-ASCII, trailing-dot and non-canonical IPv4 hosts refused),
//! and a one-component Docker Hub path gets `library/`.

use std::fmt;

pub mod host;
#[cfg(test)]
mod tests;

pub(crate) use host::is_domain;
pub use host::{DOCKER_HUB, canonical_host};

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed and normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// A content digest `algorithm:hex`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: String,
    hex: String,
}

/// Why an image reference does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("the image reference is empty")]
    Empty,
    #[error("the image field is not a string")]
    NotAString,
    #[error("the image reference is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("invalid path component {0:?}: use lowercase letters, digits and . _ - separators")]
    InvalidComponent(String),
    #[error("invalid registry host {host:?}: {why}")]
    InvalidRegistry { host: String, why: String },
    #[error(
        "registry host {0:?} is not ASCII: write internationalised names in their punycode (xn--) form, \
         as the runtime resolves them"
    )]
    NonAsciiHost(String),
    #[error(
        "registry host {0:?} is an IPv4 address in a non-canonical form that resolvers read as another \
         address; write it as four decimal octets (e.g. 127.0.0.1)"
    )]
    NonCanonicalIp(String),
    #[error("invalid tag {0:?}: up to 128 of [A-Za-z0-9_.-], not starting with . or -")]
    InvalidTag(String),
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex> or sha512:<128 lowercase hex>")]
    InvalidDigest(String),
}

impl Digest {
    /// Parse `sha256:<64 hex>` or `sha512:<128 hex>` (lowercase hex only, as OCI requires).
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        let bad = || ImageRefError::InvalidDigest(s.to_owned());
        let (algorithm, hex) = s.split_once(':').ok_or_else(bad)?;
        let want = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(bad()),
        };
        let lower_hex = hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex.len() != want || !lower_hex {
            return Err(bad());
        }
        Ok(Self { algorithm: algorithm.to_owned(), hex: hex.to_owned() })
    }

    /// A sha256 digest from the hash bytes.
    pub fn sha256(hash: [u8; 32]) -> Self {
        let hex = hash.iter().map(|b| format!("{b:02x}")).collect();
        Self { algorithm: "sha256".to_owned(), hex }
    }

    /// The algorithm, `sha256` or `sha512`.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The lowercase hex encoding of the hash.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl ImageRef {
    /// Parse and normalise a reference as written in a pod spec.
    pub fn parse(input: &str) -> Result<Self, ImageRefError> {
        if input.is_empty() {
            return Err(ImageRefError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if name.len() > MAX_NAME_LEN {
            return Err(ImageRefError::TooLong);
        }
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        let (registry, path) = split_registry(name)?;
        let mut repository = path.to_owned();
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        for component in repository.split('/') {
            validate_component(component)?;
        }
        // The limit holds for the name as the runtime reads it (distribution checks the
        // normalized name), so the canonical form always parses back (found by fuzzing).
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ImageRefError::TooLong);
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self { registry, repository, tag, digest })
    }

    /// The registry host (with port, if any), e.g. `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one (`latest` is implied only without a digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference is pinned.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, the part image globs are matched against.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image pinned to `digest` (the tag is kept for readability).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self { digest: Some(digest), ..self.clone() }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ImageRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Split `host[:port]/path` into the canonical registry and the path.
fn split_registry(name: &str) -> Result<(String, &str), ImageRefError> {
    match name.split_once('/') {
        Some((first, path)) if is_domain(first) => {
            let host = canonical_host(first)?;
            // The canonical form must still read as a host: `Registry/app` and `reg:443/app` are
            // pulled from a host, but `registry/app` names a Docker Hub namespace.
            if !is_domain(&host) {
                return Err(ImageRefError::InvalidRegistry {
                    host: first.to_owned(),
                    why: format!(
                        "written as {host} it has no `.` or port, so it would name a Docker Hub namespace; \
                         use the registry's full name (with its domain) or a port other than 443"
                    ),
                });
            }
            Ok((host, path))
        }
        _ => Ok((DOCKER_HUB.to_owned(), name)),
    }
}

/// Why an image glob of a policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageGlobError {
    #[error("the pattern is empty; write a registry/repository glob such as ghcr.io/acme/** (or ** for every image)")]
    Empty,
    #[error(
        "{pattern:?} has a tag or digest, so it can never match; use {fix} — images are matched without tag or digest"
    )]
    TagOrDigest { pattern: String, fix: String },
    #[error("{pattern:?} has upper-case letters in the repository path, which no image can have; use {fix}")]
    UpperCase { pattern: String, fix: String },
    #[error("{pattern:?} has an empty path component (`//` or a trailing `/`), so it can never match")]
    EmptyComponent { pattern: String },
    #[error("{pattern:?}: {error}")]
    Host { pattern: String, error: ImageRefError },
}

/// Canonicalise an image glob exactly as references are canonicalised: `nginx` →
/// `docker.io/library/nginx`, `acme/*` → `docker.io/acme/*`, `GHCR.IO:443/acme/**` →
/// `ghcr.io/acme/**`, `index.docker.io/nginx` → `docker.io/library/nginx`. Globs that could never match a
/// canonical name (a tag or digest, upper-case path, empty component) are refused. A host with
/// wildcards (`*.example.com`) is lower-cased and loses port 443; a pattern starting with `**` is
/// taken as written.
pub fn canonical_glob(pattern: &str) -> Result<String, ImageGlobError> {
    if pattern.is_empty() {
        return Err(ImageGlobError::Empty);
    }
    let stripped = strip_tag_or_digest(pattern);
    if stripped != pattern {
        let fix = canonical_glob(stripped).unwrap_or_else(|_| stripped.to_owned());
        return Err(ImageGlobError::TagOrDigest { pattern: pattern.to_owned(), fix });
    }
    // `**…` may span the host and path; `*/app`, `?` start with a wildcard host component that
    // has no literal part to canonicalise.
    let first = pattern.split_once('/').map_or(pattern, |(first, _)| first);
    if pattern.starts_with("**") || (first.starts_with(['*', '?']) && !is_domain(first)) {
        return Ok(pattern.to_owned());
    }
    let (host, path) = match pattern.split_once('/') {
        Some((first, path)) if is_domain(first) => {
            let host = if first.contains(['*', '?']) {
                wild_host(first)
            } else {
                canonical_host(first).map_err(|error| ImageGlobError::Host { pattern: pattern.to_owned(), error })?
            };
            (host, path)
        }
        _ => (DOCKER_HUB.to_owned(), pattern),
    };
    if path.split('/').any(str::is_empty) {
        return Err(ImageGlobError::EmptyComponent { pattern: pattern.to_owned() });
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        let fix = format!("{host}/{}", path.to_ascii_lowercase());
        return Err(ImageGlobError::UpperCase { pattern: pattern.to_owned(), fix });
    }
    let library = host == DOCKER_HUB && !path.contains('/') && !path.contains("**");
    Ok(if library { format!("{host}/library/{path}") } else { format!("{host}/{path}") })
}

/// A host with wildcards (`*.example.com`, `REGISTRY-*.example.com:443`): lower case, port 443
/// dropped; the literal parts cannot be checked further.
fn wild_host(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    match lower.strip_suffix(":443") {
        Some(without) => without.to_owned(),
        None => lower,
    }
}

/// The pattern without a `:tag` in its last component or an `@digest`.
fn strip_tag_or_digest(pattern: &str) -> &str {
    let pattern = pattern.split_once('@').map_or(pattern, |(name, _)| name);
    let last_slash = pattern.rfind('/').map_or(0, |i| i + 1);
    // A ':' in the first component (no '/') of `host:port/...` is a port, not a tag.
    match pattern[last_slash..].rfind(':') {
        Some(i) if last_slash > 0 || !pattern.contains('/') => &pattern[..last_slash + i],
        _ => pattern,
    }
}

fn validate_component(c: &str) -> Result<(), ImageRefError> {
    let bad = || ImageRefError::InvalidComponent(c.to_owned());
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    // Separators: '.', '_', '__', or one or more '-'.
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let valid = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !valid {
            return Err(bad());
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), ImageRefError> {
    let bad = || ImageRefError::InvalidTag(tag.to_owned());
    let first_ok = tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if tag.len() > MAX_TAG_LEN || !first_ok || !rest_ok {
        return Err(bad());
    }
    Ok(())
}
