//! Finding signatures and attestations for an image digest D in its repository:
//!
//! - the legacy cosign tags `sha256-<hex>.sig` (simple-signing layers) and `sha256-<hex>.att`
//!   (DSSE envelope layers with a `predicateType` annotation);
//! - OCI 1.1 referrers of D, through the referrers API or, where the registry has none, the
//!   fallback tag `sha256-<hex>` holding an image index:
//!   - Sigstore bundles v0.3 (`cosign sign`/`attest` v3, `gh attestation`, sigstore clients);
//!   - cosign's legacy layers attached as referrers (`cosign sign|attest
//!     --registry-referrers-mode=oci-1-1`): a manifest of artifactType
//!     `application/vnd.dev.cosign.artifact.sig.v1+json` holding simple-signing layers, or of
//!     `application/vnd.dev.cosign.artifact.att.v1+json` / `application/vnd.in-toto+json` holding
//!     DSSE layers, each with the same annotations as in the `.sig` / `.att` images.
//!
//! A referrer's kind is read from the manifest itself (`artifactType`, else `config.mediaType`, as
//! OCI 1.1 and cosign 2.x write it), the index entry's `artifactType` only pre-selects.
//!
//! Everything found is evidence to verify, nothing more: discovery never decides.

use std::collections::BTreeMap;

use serde_json::Value;

use super::registry::{MAX_BLOB_BYTES, Registry, RegistryError};
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
/// The artifact type of cosign's simple-signing signatures attached as referrers.
pub const COSIGN_SIG_REFERRER: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The artifact type of cosign's DSSE attestations attached as referrers (cosign 2.x).
pub const COSIGN_ATT_REFERRER: &str = "application/vnd.dev.cosign.artifact.att.v1+json";
/// The artifact type cosign 3 gives DSSE attestation layers attached as referrers.
pub const INTOTO_REFERRER: &str = "application/vnd.in-toto+json";
/// Most layers read from one signature manifest, and most referrers followed.
const MAX_LAYERS: usize = 64;
const MAX_REFERRERS: usize = 64;

/// Where a signature or attestation artifact was found. Displayed as in messages:
/// `tag sha256-….sig layer 0`, `referrer sha256:… (referrers API) layer 0`,
/// `referrer sha256:… (referrers fallback tag sha256-…)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Location {
    /// A layer of the legacy `.sig` / `.att` image at this tag.
    Tag { tag: String, layer: usize },
    /// A referrer of the digest listed by the referrers API (`layer`: of a cosign referrer).
    Referrer {
        digest: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        layer: Option<usize>,
    },
    /// A referrer listed in the referrers fallback tag's index.
    FallbackTag {
        tag: String,
        digest: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        layer: Option<usize>,
    },
}

impl Location {
    /// The same place, at layer `i` of its manifest.
    fn layer(&self, i: usize) -> Self {
        match self.clone() {
            Self::Tag { tag, .. } => Self::Tag { tag, layer: i },
            Self::Referrer { digest, .. } => Self::Referrer { digest, layer: Some(i) },
            Self::FallbackTag { tag, digest, .. } => Self::FallbackTag { tag, digest, layer: Some(i) },
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let layer = match self {
            Self::Tag { tag, layer } => return write!(f, "tag {tag} layer {layer}"),
            Self::Referrer { digest, layer } => {
                write!(f, "referrer {digest} (referrers API)")?;
                layer
            }
            Self::FallbackTag { tag, digest, layer } => {
                write!(f, "referrer {digest} (referrers fallback tag {tag})")?;
                layer
            }
        };
        match layer {
            Some(i) => write!(f, " layer {i}"),
            None => Ok(()),
        }
    }
}

/// One legacy layer: the blob and the cosign annotations.
#[derive(Debug, Clone)]
pub struct LegacyLayer {
    pub location: Location,
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
    pub location: Location,
    pub json: Vec<u8>,
}

/// Everything found for one digest.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Simple-signing layers: of the `.sig` image, then of cosign signature referrers.
    pub signatures: Vec<LegacyLayer>,
    /// DSSE layers: of the `.att` image, then of cosign attestation referrers.
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
    /// Simple-signing layers (`.sig` tag and signature referrers).
    pub signatures: bool,
    /// DSSE attestation layers (`.att` tag and attestation referrers).
    pub attestations: bool,
}

impl Wanted {
    pub const ALL: Self = Self { signatures: true, attestations: true };
}

/// What a referrer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferrerKind {
    /// A Sigstore bundle v0.3 (its first layer).
    Bundle,
    /// cosign simple-signing layers.
    Signatures,
    /// cosign DSSE attestation layers.
    Attestations,
}

impl ReferrerKind {
    /// The kind an artifact type names, if it is one portcullis reads.
    pub fn from_artifact_type(artifact_type: &str) -> Option<Self> {
        match artifact_type {
            BUNDLE_V03 | BUNDLE_V03_ALT => Some(Self::Bundle),
            COSIGN_SIG_REFERRER => Some(Self::Signatures),
            COSIGN_ATT_REFERRER | INTOTO_REFERRER => Some(Self::Attestations),
            _ => None,
        }
    }

    /// The kind of a referrer manifest: its `artifactType`, else its `config.mediaType`.
    pub fn of_manifest(manifest: &Value) -> Option<Self> {
        let field = |pointer: &str| manifest.pointer(pointer).and_then(Value::as_str).filter(|t| !t.is_empty());
        match field("/artifactType") {
            Some(artifact_type) => Self::from_artifact_type(artifact_type),
            None => field("/config/mediaType").and_then(Self::from_artifact_type),
        }
    }

    fn wanted(self, wanted: Wanted) -> bool {
        match self {
            Self::Bundle => true,
            Self::Signatures => wanted.signatures,
            Self::Attestations => wanted.attestations,
        }
    }
}

/// Look in every place cosign writes for `digest` in the image's repository (bundle referrers
/// always; the legacy layers, as tags or referrers, that `wanted` asks for). The legacy tags and
/// the referrers are looked up concurrently (each request bounded by the registry's per-host
/// limit); the first error, in this fixed order (tags, then referrers), is the answer.
pub async fn discover(
    registry: &Registry,
    image: &ImageRef,
    digest: &Digest,
    wanted: Wanted,
) -> Result<Evidence, RegistryError> {
    let legacy = [("sig", false, wanted.signatures), ("att", true, wanted.attestations)];
    let legacy = legacy.into_iter().filter(|(_, _, wanted)| *wanted).map(|(suffix, into_attestations, _)| async move {
        let tag = tag_for(digest, suffix);
        let found = match registry.manifest(image.registry(), image.repository(), &tag).await? {
            None => None,
            Some(manifest) => {
                let json = manifest.json().map_err(|e| invalid(&tag, e))?;
                let at = Location::Tag { tag: tag.clone(), layer: 0 };
                Some(legacy_layers(registry, image, &json, &at).await?)
            }
        };
        Ok::<_, RegistryError>((tag, into_attestations, found))
    });
    let (legacy, referrers) =
        futures_util::future::join(join_all(legacy), referrers(registry, image, digest, wanted)).await;
    let mut evidence = Evidence::default();
    for found in legacy {
        match found? {
            (tag, _, None) => evidence.looked.push(format!("tag {tag}: absent")),
            (tag, into_attestations, Some(layers)) => {
                evidence.looked.push(format!("tag {tag}: {} layer(s)", layers.len()));
                if into_attestations {
                    evidence.attestations = layers;
                } else {
                    evidence.signatures = layers;
                }
            }
        }
    }
    let found = referrers?;
    evidence.looked.extend(found.looked);
    evidence.signatures.extend(found.signatures);
    evidence.attestations.extend(found.attestations);
    evidence.bundles.extend(found.bundles);
    Ok(evidence)
}

/// Run `futures` concurrently; their results in order.
async fn join_all<T>(futures: impl IntoIterator<Item = impl std::future::Future<Output = T>>) -> Vec<T> {
    futures_util::future::join_all(futures).await
}

/// The OCI 1.1 referrers of `digest` (the API, else the fallback tag) that are ours.
async fn referrers(
    registry: &Registry,
    image: &ImageRef,
    digest: &Digest,
    wanted: Wanted,
) -> Result<Evidence, RegistryError> {
    let (host, repo) = (image.registry(), image.repository());
    let mut evidence = Evidence::default();
    let fallback_tag = tag_for(digest, "");
    let (index, how, fallback) = match registry.referrers_api(host, repo, digest).await? {
        Some(index) => (Some(index), "referrers API".to_owned(), false),
        None => {
            let how = format!("referrers fallback tag {fallback_tag}");
            match registry.manifest(host, repo, &fallback_tag).await? {
                Some(m) if m.is_index() => (Some(m.json().map_err(|e| invalid(&how, e))?), how, true),
                Some(_) => (None, format!("{how} (not an index, ignored)"), true),
                None => (None, how, true),
            }
        }
    };
    let entries: Vec<Value> =
        index.as_ref().and_then(|i| i.get("manifests")).and_then(Value::as_array).cloned().unwrap_or_default();
    // An entry without artifactType (older registries) may still be one of ours: its manifest says.
    let candidates: Vec<&Value> = entries
        .iter()
        .filter(|m| match m.get("artifactType").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            Some(artifact_type) => ReferrerKind::from_artifact_type(artifact_type).is_some_and(|k| k.wanted(wanted)),
            None => true,
        })
        .take(MAX_REFERRERS)
        .collect();
    evidence.looked.push(format!(
        "{how}: {} signature or attestation referrer(s) among {} referrer(s)",
        candidates.len(),
        entries.len()
    ));
    for entry in candidates {
        let Some(referrer) = entry.get("digest").and_then(Value::as_str).and_then(|d| Digest::parse(d).ok()) else {
            continue;
        };
        let location = if fallback {
            Location::FallbackTag { tag: fallback_tag.clone(), digest: referrer.to_string(), layer: None }
        } else {
            Location::Referrer { digest: referrer.to_string(), layer: None }
        };
        let Some(manifest) = registry.manifest(host, repo, &referrer.to_string()).await? else {
            evidence.looked.push(format!("{location}: listed but absent"));
            continue;
        };
        let json = manifest.json().map_err(|e| invalid(&location.to_string(), e))?;
        let Some(kind) = ReferrerKind::of_manifest(&json).filter(|k| k.wanted(wanted)) else {
            continue;
        };
        // The referrer must point back at D: a signature attached to another image is not evidence.
        let subject = json.pointer("/subject/digest").and_then(Value::as_str);
        if subject != Some(digest.to_string().as_str()) {
            evidence.looked.push(format!("{location}: subject {subject:?} is not {digest}, ignored"));
            continue;
        }
        match kind {
            ReferrerKind::Bundle => {
                let Some(layer) = json.pointer("/layers/0") else {
                    evidence.looked.push(format!("{location}: no layer"));
                    continue;
                };
                let blob = fetch_layer(registry, image, layer, &location.to_string()).await?;
                evidence.bundles.push(FoundBundle { location, json: blob });
            }
            ReferrerKind::Signatures => {
                evidence.signatures.extend(legacy_layers(registry, image, &json, &location).await?);
            }
            ReferrerKind::Attestations => {
                evidence.attestations.extend(legacy_layers(registry, image, &json, &location).await?);
            }
        }
    }
    Ok(evidence)
}

async fn legacy_layers(
    registry: &Registry,
    image: &ImageRef,
    json: &Value,
    at: &Location,
) -> Result<Vec<LegacyLayer>, RegistryError> {
    // A manifest without a layers list is not an image manifest: an error, never "0 layers"
    // (which would read as "unsigned").
    let layers = json.get("layers").and_then(Value::as_array).ok_or_else(|| RegistryError::Invalid {
        url: at.to_string(),
        why: "not an image manifest (no \"layers\" list)".to_owned(),
    })?;
    let fetches = layers.iter().take(MAX_LAYERS).enumerate().map(|(i, layer)| async move {
        let location = at.layer(i);
        let blob = fetch_layer(registry, image, layer, &location.to_string()).await?;
        let annotations = layer
            .get("annotations")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect())
            .unwrap_or_default();
        Ok(LegacyLayer { location, blob, annotations })
    });
    // In layer order; the first error (by layer) is the answer.
    join_all(fetches).await.into_iter().collect()
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
