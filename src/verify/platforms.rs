//! The platform manifests of an image index, for `platforms: every-platform`.
//!
//! Every entry a container runtime could select is verified. An entry that cannot be checked
//! (a digest that does not parse, more entries than the limit) is a failure that says why,
//! never skipped. Only buildkit attestation manifests (platform `unknown/unknown` AND the
//! annotation `vnd.docker.reference.type: attestation-manifest`) are left out: they are not
//! images. An `unknown/unknown` entry without that annotation, an entry without a platform, or
//! a real platform wearing the annotation is verified like any other.

use serde_json::Value;

use super::registry::{DOCKER_MANIFEST_LIST, OCI_INDEX, Registry, RegistryError};
use crate::image::{Digest, ImageRef};

/// The annotation buildkit puts on the attestation manifests of an index.
const ANN_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// Why the platforms of an index could not be listed for verification.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The index could not be read (not a signature failure).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The index was read, but not all of its platforms can be verified: a denial.
    #[error("{0}")]
    Unverifiable(String),
}

/// The platform manifests of the index at `digest` to verify, as (`os/arch[/variant]`,
/// digest); empty for a plain manifest. More than `max` is an error naming the flag that
/// raises the limit.
pub async fn platforms(
    registry: &Registry,
    image: &ImageRef,
    digest: &Digest,
    max: usize,
) -> Result<Vec<(String, Digest)>, PlatformError> {
    let Some(manifest) = registry.manifest(image.registry(), image.repository(), &digest.to_string()).await? else {
        return Err(PlatformError::Registry(RegistryError::Status {
            url: format!("{}/{}@{digest}", image.registry(), image.repository()),
            status: 404,
            detail: String::new(),
        }));
    };
    let json = manifest.json().map_err(|e| RegistryError::Invalid {
        url: format!("{}/{}@{digest}", image.registry(), image.repository()),
        why: format!("the {} is not JSON: {e}", if manifest.is_index() { "image index" } else { "manifest" }),
    })?;
    // An index is recognised by its content too: a registry that serves an index under a
    // manifest media type must not make its platforms go unchecked.
    let index_content = json.get("manifests").is_some()
        || json.get("mediaType").and_then(Value::as_str).is_some_and(|t| t == OCI_INDEX || t == DOCKER_MANIFEST_LIST);
    if !manifest.is_index() && !index_content {
        return Ok(Vec::new());
    }
    let entries = match json.get("manifests") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(PlatformError::Unverifiable(format!(
                "the index {digest} has a `manifests` field that is not a list: its platforms cannot be checked"
            )));
        }
    };
    let mut out = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let platform = platform_name(entry);
        if is_attestation_manifest(entry, &platform) {
            continue;
        }
        let raw = entry.get("digest");
        let Some(d) = raw.and_then(Value::as_str).and_then(|d| Digest::parse(d).ok()) else {
            return Err(PlatformError::Unverifiable(format!(
                "the index {digest} lists platform {platform} (manifests[{index}]) with digest {}, which is not a \
                 valid digest: it cannot be verified, and a runtime could still select it",
                raw.map_or_else(|| "(none)".to_owned(), Value::to_string)
            )));
        };
        out.push((platform, d));
    }
    if out.len() > max {
        return Err(PlatformError::Unverifiable(format!(
            "the index {digest} has {} platform manifests, more than the {max} checked with `platforms: \
             every-platform`; the ones beyond the limit would go unverified. If the index is legitimate, raise the \
             limit with --max-platforms (PORTCULLIS_MAX_PLATFORMS)",
            out.len()
        )));
    }
    Ok(out)
}

/// A buildkit attestation manifest: `unknown/unknown` and annotated as one.
fn is_attestation_manifest(entry: &Value, platform: &str) -> bool {
    let kind = entry.get("annotations").and_then(|a| a.get(ANN_REFERENCE_TYPE)).and_then(Value::as_str);
    platform == "unknown/unknown" && kind == Some("attestation-manifest")
}

/// `os/architecture[/variant]` of an index entry, `(no platform)` without one.
fn platform_name(entry: &Value) -> String {
    let Some(p) = entry.get("platform") else {
        return "(no platform)".to_owned();
    };
    let part = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let variant = p.get("variant").and_then(Value::as_str).map(|v| format!("/{v}")).unwrap_or_default();
    format!("{}/{}{variant}", part("os"), part("architecture"))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{is_attestation_manifest, platform_name};

    #[test]
    fn only_annotated_unknown_entries_are_attestations() {
        let annotated = json!({"vnd.docker.reference.type": "attestation-manifest"});
        let entry = |platform: Value, annotations: Value| json!({"platform": platform, "annotations": annotations});
        let unknown = json!({"os": "unknown", "architecture": "unknown"});
        let e = entry(unknown.clone(), annotated.clone());
        assert!(is_attestation_manifest(&e, &platform_name(&e)));
        let e = entry(unknown, json!({}));
        assert!(!is_attestation_manifest(&e, &platform_name(&e)));
        let e = entry(json!({"os": "linux", "architecture": "arm64", "variant": "v8"}), annotated.clone());
        assert_eq!(platform_name(&e), "linux/arm64/v8");
        assert!(!is_attestation_manifest(&e, &platform_name(&e)));
        let e = json!({"annotations": annotated});
        assert_eq!(platform_name(&e), "(no platform)");
        assert!(!is_attestation_manifest(&e, &platform_name(&e)));
    }
}
