//! Finding signatures and attestations for an image digest D in its repository:
//!
//! - the legacy cosign tags `sha256-<hex>.sig` (simple-signing layers) and `sha256-<hex>.att`
//!   (DSSE envelope layers with a `predicateType` annotation);
//! - Sigstore bundles v0.3 attached as OCI 1.1 referrers, through the referrers API or, where
//!   the registry has none, the fallback tag `sha256-<hex>` holding an image index.
//!
//! Everything found is evidence to verify, nothing more: discovery never decides.

use std::collections::BTreeMap;

use serde_json::Value;

use super::registry::{MAX_BLOB_BYTES, Manifest, Registry, RegistryError};
use crate::image::{Digest, ImageRef};

/// Annotations cosign puts on legacy signature layers.
pub const ANN_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
pub const ANN_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
pub const ANN_CHAIN: &str = "dev.sigstore.cosign/chain";
pub const ANN_BUNDLE: &str = "dev.sigstore.cosign/bundle";
pub const ANN_TIMESTAMP: &str = "dev.sigstore.cosign/rfc3161timestamp";
/// The artifact type of Sigstore bundles v0.3 attached as referrers.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const BUNDLE_V03_ALT: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";
/// Most layers read from one signature manifest, and most referrers followed.
const MAX_LAYERS: usize = 64;
const MAX_REFERRERS: usize = 64;

/// One legacy layer: the blob and the cosign annotations.
#[derive(Debug, Clone)]
pub struct LegacyLayer {
    pub location: String,
    pub blob: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl LegacyLayer {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// A Sigstore bundle found as a referrer.
#[derive(Debug, Clone)]
pub struct FoundBundle {
    pub location: String,
    pub json: Vec<u8>,
}

/// Everything found for one digest.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Layers of the `.sig` image.
    pub signatures: Vec<LegacyLayer>,
    /// Layers of the `.att` image.
    pub attestations: Vec<LegacyLayer>,
    /// Bundles attached as referrers.
    pub bundles: Vec<FoundBundle>,
    /// Where we looked and what was there, for messages.
    pub looked: Vec<String>,
}

/// `sha256:abc…` → `sha256-abc…` (+ suffix).
pub fn tag_for(digest: &Digest, suffix: &str) -> String {
    let base = format!("{}-{}", digest.algorithm(), digest.hex());
    if suffix.is_empty() { base } else { format!("{base}.{suffix}") }
}

/// What to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Legacy `.sig` layers.
    pub signatures: bool,
    /// Legacy `.att` layers.
    pub attestations: bool,
}

impl Wanted {
    pub const ALL: Self = Self { signatures: true, attestations: true };
}

/// Look in every place cosign writes for `digest` in the image's repository (bundle referrers
/// always; the legacy tags that `wanted` asks for).
pub async fn discover(
    registry: &Registry,
    image: &ImageRef,
    digest: &Digest,
    wanted: Wanted,
) -> Result<Evidence, RegistryError> {
    let (host, repo) = (image.registry(), image.repository());
    let mut evidence = Evidence::default();
    let legacy = [("sig", false, wanted.signatures), ("att", true, wanted.attestations)];
    for (suffix, into_attestations, _) in legacy.into_iter().filter(|(_, _, wanted)| *wanted) {
        let tag = tag_for(digest, suffix);
        match registry.manifest(host, repo, &tag).await? {
            None => evidence.looked.push(format!("tag {tag}: absent")),
            Some(manifest) => {
                let layers = legacy_layers(registry, image, &manifest, &tag).await?;
                evidence.looked.push(format!("tag {tag}: {} layer(s)", layers.len()));
                if into_attestations {
                    evidence.attestations = layers;
                } else {
                    evidence.signatures = layers;
                }
            }
        }
    }
    let (index, how) = match registry.referrers_api(host, repo, digest).await? {
        Some(index) => (Some(index), "referrers API".to_owned()),
        None => {
            let tag = tag_for(digest, "");
            let how = format!("referrers fallback tag {tag}");
            match registry.manifest(host, repo, &tag).await? {
                Some(m) if m.is_index() => (Some(m.json().map_err(|e| invalid(&how, e))?), how),
                Some(_) => (None, format!("{how} (not an index, ignored)")),
                None => (None, how),
            }
        }
    };
    let entries: Vec<Value> =
        index.as_ref().and_then(|i| i.get("manifests")).and_then(Value::as_array).cloned().unwrap_or_default();
    let bundles: Vec<&Value> = entries.iter().filter(|m| is_bundle(m)).take(MAX_REFERRERS).collect();
    evidence.looked.push(format!("{how}: {} bundle(s) among {} referrer(s)", bundles.len(), entries.len()));
    for entry in bundles {
        let Some(referrer) = entry.get("digest").and_then(Value::as_str).and_then(|d| Digest::parse(d).ok()) else {
            continue;
        };
        let location = format!("referrer {referrer} ({how})");
        let Some(manifest) = registry.manifest(host, repo, &referrer.to_string()).await? else {
            evidence.looked.push(format!("{location}: listed but absent"));
            continue;
        };
        let json = manifest.json().map_err(|e| invalid(&location, e))?;
        // The referrer must point back at D: a bundle attached to another image is not evidence.
        let subject = json.pointer("/subject/digest").and_then(Value::as_str);
        if subject != Some(digest.to_string().as_str()) {
            evidence.looked.push(format!("{location}: subject {subject:?} is not {digest}, ignored"));
            continue;
        }
        let Some(layer) = json.pointer("/layers/0") else {
            evidence.looked.push(format!("{location}: no layer"));
            continue;
        };
        let blob = fetch_layer(registry, image, layer, &location).await?;
        evidence.bundles.push(FoundBundle { location, json: blob });
    }
    Ok(evidence)
}

fn is_bundle(entry: &Value) -> bool {
    let artifact_type = entry.get("artifactType").and_then(Value::as_str).unwrap_or_default();
    artifact_type == BUNDLE_V03 || artifact_type == BUNDLE_V03_ALT
}

async fn legacy_layers(
    registry: &Registry,
    image: &ImageRef,
    manifest: &Manifest,
    tag: &str,
) -> Result<Vec<LegacyLayer>, RegistryError> {
    let json = manifest.json().map_err(|e| invalid(tag, e))?;
    let layers = json.get("layers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (i, layer) in layers.iter().take(MAX_LAYERS).enumerate() {
        let location = format!("tag {tag} layer {i}");
        let blob = fetch_layer(registry, image, layer, &location).await?;
        let annotations = layer
            .get("annotations")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect())
            .unwrap_or_default();
        out.push(LegacyLayer { location, blob, annotations });
    }
    Ok(out)
}

async fn fetch_layer(
    registry: &Registry,
    image: &ImageRef,
    layer: &Value,
    location: &str,
) -> Result<Vec<u8>, RegistryError> {
    let digest = layer.get("digest").and_then(Value::as_str).and_then(|d| Digest::parse(d).ok()).ok_or_else(|| {
        RegistryError::Invalid { url: location.to_owned(), why: "layer without a valid digest".into() }
    })?;
    if layer.get("size").and_then(Value::as_u64).is_some_and(|s| s > MAX_BLOB_BYTES as u64) {
        return Err(RegistryError::TooLarge { url: location.to_owned(), limit: MAX_BLOB_BYTES });
    }
    registry.blob(image.registry(), image.repository(), &digest, MAX_BLOB_BYTES).await
}

fn invalid(location: &str, e: serde_json::Error) -> RegistryError {
    RegistryError::Invalid { url: location.to_owned(), why: format!("not JSON: {e}") }
}
