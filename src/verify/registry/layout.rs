//! An OCI image layout directory standing in for a registry: recorded, offline evidence for
//! `portcullis policy test` (`cosign save` writes this layout; so do `oras`, `crane` and
//! `skopeo`).
//!
//! The layout serves every repository of every registry: it holds the one image a test case is
//! about, with its signatures and attestations. What it serves goes through the same checks as
//! a registry's answers: every manifest and blob is read by digest and its sha256 compared with
//! the digest asked for, and the registry's size limits apply. Tags are the
//! `org.opencontainers.image.ref.name` annotations of `index.json` (a bare tag, or a whole
//! reference ending in `:tag`); a layout written by `cosign save` has none, and there the
//! `.sig`/`.att` tags of its image are its `dev.cosignproject.cosign/sigs` and `…/atts`
//! entries. Referrers are the manifests listed in `index.json` whose `subject` is the digest.
//!
//! Files are read synchronously: a layout is a small local directory, read by `policy test`
//! only, never by the webhook.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{MAX_MANIFEST_BYTES, Manifest, OCI_INDEX, OCI_MANIFEST, RegistryError, mismatch, sha256_digest};
use crate::image::Digest;

/// The annotation naming a tag in an OCI layout's `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation `cosign save` puts on each entry of its layout.
const COSIGN_KIND: &str = "kind";
const COSIGN_IMAGE: &str = "dev.cosignproject.cosign/image";
const COSIGN_IMAGE_INDEX: &str = "dev.cosignproject.cosign/imageIndex";
const COSIGN_SIGS: &str = "dev.cosignproject.cosign/sigs";
const COSIGN_ATTS: &str = "dev.cosignproject.cosign/atts";
/// Most entries of `index.json` read.
const MAX_ENTRIES: usize = 1024;

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Open a layout: `DIR/oci-layout` must say `imageLayoutVersion` 1.0.0 and `DIR/index.json`
    /// must parse.
    pub fn open(root: &Path) -> Result<Self, RegistryError> {
        let layout = Self { root: root.to_owned() };
        let marker = layout.read_file(&root.join("oci-layout"), 4096)?;
        let version = serde_json::from_slice::<Value>(&marker)
            .ok()
            .and_then(|v| v.get("imageLayoutVersion").and_then(Value::as_str).map(str::to_owned));
        if version.as_deref() != Some("1.0.0") {
            return Err(layout.invalid("oci-layout", "is not an OCI image layout (imageLayoutVersion 1.0.0)"));
        }
        layout.entries()?;
        Ok(layout)
    }

    fn url(&self, what: &str) -> String {
        format!("oci-layout:{}/{what}", self.root.display())
    }

    fn invalid(&self, what: &str, why: &str) -> RegistryError {
        RegistryError::Invalid { url: self.url(what), why: why.to_owned() }
    }

    /// Read a file of at most `limit` bytes.
    fn read_file(&self, path: &Path, limit: usize) -> Result<Vec<u8>, RegistryError> {
        let url = format!("oci-layout:{}", path.display());
        let io = |e: std::io::Error| RegistryError::Transport { url: url.clone(), error: e.to_string() };
        let file = std::fs::File::open(path).map_err(io)?;
        if file.metadata().map_err(io)?.len() > limit as u64 {
            return Err(RegistryError::TooLarge { url: url.clone(), limit });
        }
        let mut bytes = Vec::new();
        file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() > limit {
            return Err(RegistryError::TooLarge { url, limit });
        }
        Ok(bytes)
    }

    /// The descriptors of `index.json`.
    fn entries(&self) -> Result<Vec<Value>, RegistryError> {
        let bytes = self.read_file(&self.root.join("index.json"), MAX_MANIFEST_BYTES)?;
        let index: Value =
            serde_json::from_slice(&bytes).map_err(|e| self.invalid("index.json", &format!("is not JSON: {e}")))?;
        let entries = index.get("manifests").and_then(Value::as_array).cloned().unwrap_or_default();
        if entries.len() > MAX_ENTRIES {
            return Err(self.invalid("index.json", &format!("lists more than {MAX_ENTRIES} manifests")));
        }
        Ok(entries)
    }

    /// A blob by digest: at most `limit` bytes, and its sha256 must be `digest`.
    pub fn blob(&self, digest: &Digest, limit: usize) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blobs/{}/{}", digest.algorithm(), digest.hex());
        // `Digest` holds a known algorithm and lower-case hex only: the path stays in the layout.
        let bytes = self.read_file(&self.root.join(&what), limit)?;
        let actual = sha256_digest(&bytes);
        if digest.algorithm() != "sha256" || &actual != digest {
            return Err(mismatch(&self.url(&what), digest, &actual));
        }
        Ok(bytes)
    }

    /// The digest a tag names, if the layout has it.
    fn tag(&self, tag: &str) -> Result<Option<(Digest, Option<String>)>, RegistryError> {
        let entries = self.entries()?;
        let named: Vec<&Value> = entries
            .iter()
            .filter(|e| {
                annotation(e, REF_NAME).is_some_and(|name| {
                    name == tag || name.rsplit_once(':').is_some_and(|(repo, t)| t == tag && !repo.contains('@'))
                })
            })
            .collect();
        let chosen = match named.as_slice() {
            [one] => Some(*one),
            [] => self.cosign_tag(&entries, tag),
            _ => return Err(self.invalid("index.json", &format!("names tag {tag:?} more than once"))),
        };
        chosen.map(|entry| self.descriptor(entry)).transpose()
    }

    /// `cosign save`'s layout: the `.sig`/`.att` tag of its image is its sigs/atts entry.
    fn cosign_tag<'a>(&self, entries: &'a [Value], tag: &str) -> Option<&'a Value> {
        let (subject, kind) = match tag.rsplit_once('.') {
            Some((subject, "sig")) => (subject, COSIGN_SIGS),
            Some((subject, "att")) => (subject, COSIGN_ATTS),
            _ => return None,
        };
        let image = subject.replacen('-', ":", 1);
        let has_image = entries.iter().any(|e| {
            matches!(annotation(e, COSIGN_KIND), Some(COSIGN_IMAGE | COSIGN_IMAGE_INDEX))
                && e.get("digest").and_then(Value::as_str) == Some(image.as_str())
        });
        let mut of_kind = entries.iter().filter(|e| annotation(e, COSIGN_KIND) == Some(kind));
        match (has_image, of_kind.next(), of_kind.next()) {
            (true, Some(entry), None) => Some(entry),
            _ => None,
        }
    }

    fn descriptor(&self, entry: &Value) -> Result<(Digest, Option<String>), RegistryError> {
        let digest = entry
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|d| Digest::parse(d).ok())
            .ok_or_else(|| self.invalid("index.json", "an entry has no valid digest"))?;
        Ok((digest, entry.get("mediaType").and_then(Value::as_str).map(str::to_owned)))
    }

    /// A manifest by tag or digest; `None` when the layout has no such tag or blob.
    pub fn manifest(&self, reference: &str) -> Result<Option<Manifest>, RegistryError> {
        let (digest, listed_type) = match Digest::parse(reference) {
            Ok(digest) => (digest, None),
            Err(_) => match self.tag(reference)? {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        if !self.root.join("blobs").join(digest.algorithm()).join(digest.hex()).is_file() {
            return Ok(None);
        }
        let bytes = self.blob(&digest, MAX_MANIFEST_BYTES)?;
        let media_type = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType").and_then(Value::as_str).map(str::to_owned))
            .or(listed_type)
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        Ok(Some(Manifest { media_type, digest, bytes }))
    }

    /// The digest of a tag (or the digest itself, when the layout has it).
    pub fn resolve(&self, reference: &str) -> Result<Digest, RegistryError> {
        match self.manifest(reference)? {
            Some(manifest) => Ok(manifest.digest),
            None => Err(RegistryError::Status {
                url: self.url(&format!("manifests/{reference}")),
                status: 404,
                detail: ": not in the layout".to_owned(),
            }),
        }
    }

    /// The referrers of `digest` among the manifests `index.json` lists, as the referrers API
    /// answers; `None` when there is none (then the fallback tag is looked up, as with a
    /// registry without the API).
    pub fn referrers(&self, digest: &Digest) -> Result<Option<Value>, RegistryError> {
        let mut found = Vec::new();
        for entry in self.entries()? {
            let (entry_digest, _) = self.descriptor(&entry)?;
            let Some(manifest) = self.manifest(&entry_digest.to_string())? else {
                continue;
            };
            let Ok(json) = manifest.json() else {
                continue;
            };
            if json.pointer("/subject/digest").and_then(Value::as_str) != Some(digest.to_string().as_str()) {
                continue;
            }
            let artifact_type =
                json.get("artifactType").or_else(|| json.pointer("/config/mediaType")).cloned().unwrap_or(Value::Null);
            let mut descriptor = json!({
                "mediaType": manifest.media_type,
                "digest": manifest.digest.to_string(),
                "size": manifest.bytes.len(),
                "artifactType": artifact_type,
            });
            if let Some(annotations) = json.get("annotations") {
                descriptor["annotations"] = annotations.clone();
            }
            found.push(descriptor);
        }
        if found.is_empty() {
            return Ok(None);
        }
        Ok(Some(json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found})))
    }
}

fn annotation<'a>(entry: &'a Value, name: &str) -> Option<&'a str> {
    entry.get("annotations").and_then(|a| a.get(name)).and_then(Value::as_str)
}

#[cfg(test)]
mod tests;
