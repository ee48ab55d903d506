//! The namespace binding, kept through a kustomize (or Helm) build. Pure.
//!
//! The MAC of a SOPS file binds a resource's `metadata.namespace` and `metadata.name` as written
//! in the file; a build run on the decrypted files can still move the resource (`namespace: dev`,
//! `namePrefix`, a patch). So the decrypting step records, in a [`Manifest`] written beside the
//! decrypted tree (never inside it), the identity (kind, namespace, name) every decrypted resource
//! was encrypted with, and tags the resource with an origin annotation holding an unguessable
//! token. After the build, [`Manifest::check`] reads the built resources:
//!
//! - a resource carrying a token is compared with the identity recorded for it: another
//!   namespace is refused, a name changed only by a prefix/suffix is refused unless renames are
//!   allowed, any other change of name or kind is refused; an unknown token is refused;
//! - every resource (annotated or not) is searched for the secret values of the encrypted files
//!   (salted SHA-256 fingerprints, values of [`MIN_TRACKED_LEN`] bytes or more): a value that only
//!   files encrypted for other namespaces hold is refused. This catches an overlay that removes the
//!   annotation with a patch or copies a value into another resource with `replacements`.
//!
//! Why an annotation plus a manifest: kustomize keeps annotations through every transformer that
//! does not target them (namespace, prefixes, labels, commonAnnotations, patches), and the token
//! tells which file a renamed resource came from; the manifest, outside the build's reach, holds
//! what an overlay must not be able to change (the identities and the fingerprints). The
//! annotation is removed from the output of the check.
//!
//! A resource whose file has no `metadata.namespace` (and files without a Kubernetes identity:
//! dotenv, ini, binary) may go to any namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::tree::{Entry, Leaf, Node, Value};

mod violation;
pub use violation::Violation;

/// The annotation that carries a decrypted resource's origin token through the build.
pub const ANNOTATION: &str = "portcullis.dev/sops-origin";

/// Secret values shorter than this are not fingerprinted (too likely to occur by chance).
pub const MIN_TRACKED_LEN: usize = 8;

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("the binding manifest is not valid ({0}); use the file `portcullis decrypt --tree` wrote")]
    Invalid(String),
    #[error("binding manifest version {0} is not supported (this portcullis writes version 1)")]
    Version(u32),
}

/// What `portcullis decrypt --tree` records about the files it decrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    /// Hex salt of the fingerprints and seed of the tokens (random per decryption).
    salt: String,
    pub origins: Vec<Origin>,
}

/// One decrypted resource (or one file without a Kubernetes identity).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// The file, relative to the decrypted tree.
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Salted fingerprints of its secret values.
    #[serde(default)]
    pub values: Vec<String>,
}

impl Origin {
    fn describe(&self) -> String {
        let kind = self.kind.as_deref().unwrap_or("resource");
        let name = self.name.as_deref().unwrap_or("(no name)");
        match &self.namespace {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        }
    }
}

/// What the check does with a name changed by a prefix or suffix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Renamed {
    Allow,
    #[default]
    Deny,
}

/// Settings of [`Manifest::check`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub renamed: Renamed,
    /// The namespace a resource without `metadata.namespace` is applied to (Argo CD: the
    /// application's destination namespace). Without it, such a resource is refused when its file
    /// names a namespace.
    pub default_namespace: Option<String>,
    /// The namespaces encrypted resources may be bound to (empty: any). The MAC binds the values
    /// of `metadata.name` and `metadata.namespace`, not which key holds which: a file with the two
    /// keys swapped decrypts, bound to a namespace named like the resource.
    pub expect_namespaces: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn get_str<'a>(node: &'a Node, path: &[&str]) -> Option<&'a str> {
    let mut n = node;
    for p in path {
        n = n.get(p)?;
    }
    n.as_str()
}

/// String leaves of a node (depth first).
fn string_leaves<'a>(node: &'a Node, out: &mut Vec<&'a str>) {
    match node {
        Node::Map(entries) => entries.iter().for_each(|e| {
            if let Entry::Pair(_, v) = e {
                string_leaves(v, out);
            }
        }),
        Node::Seq(items) => items.iter().for_each(|i| string_leaves(i, out)),
        Node::Leaf(Leaf { value: Value::Str(s), .. }) => out.push(s),
        _ => {}
    }
}

impl Manifest {
    /// An empty manifest with a random `salt` (at least 16 bytes from the caller's RNG).
    #[must_use]
    pub fn new(salt: &[u8]) -> Self {
        Self { version: 1, salt: hex(salt), origins: Vec::new() }
    }

    /// Read a manifest written by [`Manifest::to_json`].
    ///
    /// # Errors
    /// [`BindingError`] when it does not parse or has another version.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BindingError> {
        let m: Self = serde_json::from_slice(bytes).map_err(|e| BindingError::Invalid(e.to_string()))?;
        if m.version != 1 {
            return Err(BindingError::Version(m.version));
        }
        if m.salt.len() < 32 {
            return Err(BindingError::Invalid("salt too short".to_owned()));
        }
        Ok(m)
    }

    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn fingerprint(&self, value: &[u8]) -> Option<String> {
        (value.len() >= MIN_TRACKED_LEN).then(|| {
            let mut h = Sha256::new();
            h.update(self.salt.as_bytes());
            h.update(b"\0value\0");
            h.update(value);
            hex(&h.finalize())
        })
    }

    fn next_token(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.salt.as_bytes());
        h.update(b"\0token\0");
        h.update(self.origins.len().to_le_bytes());
        hex(&h.finalize()[..16])
    }

    /// Record a file without a Kubernetes identity (dotenv, ini, binary): its values.
    pub fn record_values<'a>(&mut self, file: &str, values: impl IntoIterator<Item = &'a [u8]>) {
        let mut fps: Vec<String> = values.into_iter().filter_map(|v| self.fingerprint(v)).collect();
        fps.sort();
        fps.dedup();
        self.origins.push(Origin { file: file.to_owned(), values: fps, ..Origin::default_for(file) });
    }

    /// Record one decrypted document of `file` and tag it with the origin annotation. Documents
    /// that are not Kubernetes resources (no `kind` or no `metadata.name`) are recorded by their
    /// values only.
    pub fn record_resource(&mut self, file: &str, node: &mut Node) {
        let kind = get_str(node, &["kind"]).map(str::to_owned);
        let name = get_str(node, &["metadata", "name"]).map(str::to_owned);
        let namespace = get_str(node, &["metadata", "namespace"]).map(str::to_owned);
        let mut raw: Vec<Vec<u8>> = Vec::new();
        if let Node::Map(entries) = &*node {
            for e in entries {
                let Entry::Pair(k, v) = e else { continue };
                let mut leaves = Vec::new();
                match (kind.as_deref(), k.as_str()) {
                    (_, "apiVersion" | "kind" | "metadata") => {}
                    (Some("Secret"), "data") => {
                        string_leaves(v, &mut leaves);
                        for s in leaves {
                            let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                            raw.push(STANDARD.decode(compact).unwrap_or_else(|_| s.as_bytes().to_vec()));
                        }
                    }
                    _ => {
                        string_leaves(v, &mut leaves);
                        raw.extend(leaves.into_iter().map(|s| s.as_bytes().to_vec()));
                    }
                }
            }
        }
        let mut values: Vec<String> = raw.iter().filter_map(|v| self.fingerprint(v)).collect();
        raw.iter_mut().for_each(zeroize::Zeroize::zeroize);
        values.sort();
        values.dedup();
        let token = match (&kind, &name) {
            (Some(_), Some(_)) => {
                let token = self.next_token();
                annotate(node, &token);
                Some(token)
            }
            _ => None,
        };
        self.origins.push(Origin { file: file.to_owned(), token, kind, namespace, name, values });
    }

    /// Check the built resources (JSON values, in order) and remove the origin annotations from
    /// them. Returns every violation found.
    #[must_use]
    pub fn check(&self, built: &mut [serde_json::Value], opts: &CheckOptions) -> Vec<Violation> {
        check_all(std::slice::from_ref(self), built, opts)
    }
}

/// The namespaces a fingerprint may go to (`None`: anywhere) and the resources holding it.
type Allowed<'a> = BTreeMap<&'a str, (BTreeSet<Option<&'a str>>, BTreeSet<String>)>;

/// [`Manifest::check`] over several manifests (one per decryption: a tree, or each run of the
/// generator in a build).
#[must_use]
pub fn check_all(manifests: &[Manifest], built: &mut [serde_json::Value], opts: &CheckOptions) -> Vec<Violation> {
    let by_token: BTreeMap<&str, &Origin> =
        manifests.iter().flat_map(|m| &m.origins).filter_map(|o| o.token.as_deref().map(|t| (t, o))).collect();
    let allowed: Vec<(&Manifest, Allowed<'_>)> = manifests
        .iter()
        .map(|m| {
            let mut allowed = Allowed::new();
            for o in &m.origins {
                for v in &o.values {
                    let slot = allowed.entry(v.as_str()).or_default();
                    slot.0.insert(o.namespace.as_deref());
                    slot.1.insert(o.describe());
                }
            }
            (m, allowed)
        })
        .collect();
    let mut out = Vec::new();
    for obj in built.iter_mut() {
        let kind = obj.get("kind").and_then(serde_json::Value::as_str).unwrap_or("resource").to_owned();
        let name = obj.pointer("/metadata/name").and_then(serde_json::Value::as_str).unwrap_or("").to_owned();
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .or_else(|| opts.default_namespace.clone());
        let resource = match &ns {
            Some(n) => format!("{kind} {n}/{name}"),
            None => format!("{kind} {name}"),
        };
        if let Some(token) = take_annotation(obj) {
            match by_token.get(token.as_str()) {
                None => out.push(Violation::UnknownToken { resource: resource.clone() }),
                Some(origin) => check_identity(origin, &kind, &name, ns.as_deref(), &resource, opts, &mut out),
            }
        }
        let mut strings = Vec::new();
        json_strings(obj, &mut strings);
        let mut origins = BTreeSet::new();
        for s in strings {
            let decoded = STANDARD.decode(s).ok();
            for bytes in std::iter::once(s.as_bytes()).chain(decoded.as_deref()) {
                for (m, allowed) in &allowed {
                    let Some(fp) = m.fingerprint(bytes) else { continue };
                    if let Some((namespaces, names)) = allowed.get(fp.as_str())
                        && !namespaces.contains(&None)
                        && !namespaces.contains(&ns.as_deref())
                    {
                        origins.extend(names.iter().cloned());
                    }
                }
            }
        }
        if !origins.is_empty() {
            out.push(Violation::Value { resource, built: ns, origins: origins.into_iter().collect() });
        }
    }
    dedup_value_violations(&mut out);
    out
}

fn check_identity(
    origin: &Origin,
    kind: &str,
    name: &str,
    ns: Option<&str>,
    resource: &str,
    opts: &CheckOptions,
    out: &mut Vec<Violation>,
) {
    let described = origin.describe();
    if let Some(bound) = &origin.namespace
        && !opts.expect_namespaces.is_empty()
        && !opts.expect_namespaces.contains(bound)
    {
        out.push(Violation::Unexpected {
            origin: described.clone(),
            file: origin.file.clone(),
            expected: opts.expect_namespaces.join(", "),
        });
    }
    if let Some(bound) = &origin.namespace
        && ns != Some(bound.as_str())
    {
        out.push(Violation::Namespace {
            origin: described.clone(),
            file: origin.file.clone(),
            bound: bound.clone(),
            built: ns.map(str::to_owned),
            resource: resource.to_owned(),
        });
    }
    let bound_name = origin.name.as_deref().unwrap_or_default();
    if origin.kind.as_deref() != Some(kind) || (name != bound_name && !name.contains(bound_name)) {
        out.push(Violation::Changed { origin: described, file: origin.file.clone(), built: resource.to_owned() });
    } else if name != bound_name {
        let (origin, file, built) = (described, origin.file.clone(), resource.to_owned());
        out.push(match opts.renamed {
            Renamed::Deny => Violation::Renamed { origin, file, built },
            Renamed::Allow => Violation::RenamedAllowed { origin, file, built },
        });
    }
}

/// A resource refused for its identity is not reported again for its values.
fn dedup_value_violations(out: &mut Vec<Violation>) {
    let named: BTreeSet<String> = out
        .iter()
        .filter_map(|v| match v {
            Violation::Namespace { resource, .. } => Some(resource.clone()),
            _ => None,
        })
        .collect();
    out.retain(|v| !matches!(v, Violation::Value { resource, .. } if named.contains(resource)));
}

impl Origin {
    fn default_for(file: &str) -> Self {
        Self { file: file.to_owned(), token: None, kind: None, namespace: None, name: None, values: Vec::new() }
    }
}

fn json_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|i| json_strings(i, out)),
        serde_json::Value::Object(o) => o.values().for_each(|i| json_strings(i, out)),
        _ => {}
    }
}

/// Add `metadata.annotations[ANNOTATION] = token` to a resource.
fn annotate(node: &mut Node, token: &str) {
    let Node::Map(entries) = node else { return };
    let Some(meta) = entries.iter_mut().find_map(|e| match e {
        Entry::Pair(k, v) if k == "metadata" => Some(v),
        _ => None,
    }) else {
        return;
    };
    let Node::Map(meta) = meta else { return };
    let leaf = Node::Leaf(Leaf::new(Value::Str(token.to_owned()), None));
    if let Some(Node::Map(ann)) = meta.iter_mut().find_map(|e| match e {
        Entry::Pair(k, v) if k == "annotations" => Some(v),
        _ => None,
    }) {
        ann.retain(|e| !matches!(e, Entry::Pair(k, _) if k == ANNOTATION));
        ann.push(Entry::Pair(ANNOTATION.to_owned(), leaf));
        return;
    }
    meta.retain(|e| !matches!(e, Entry::Pair(k, _) if k == "annotations"));
    meta.push(Entry::Pair("annotations".to_owned(), Node::Map(vec![Entry::Pair(ANNOTATION.to_owned(), leaf)])));
}

/// Remove the origin annotation (and an `annotations` map it leaves empty); return its value.
fn take_annotation(obj: &mut serde_json::Value) -> Option<String> {
    let meta = obj.get_mut("metadata")?.as_object_mut()?;
    let ann = meta.get_mut("annotations")?.as_object_mut()?;
    let token = ann.remove(ANNOTATION)?;
    if ann.is_empty() {
        meta.remove("annotations");
    }
    Some(token.as_str().map_or_else(|| token.to_string(), str::to_owned))
}

#[cfg(test)]
mod tests;
