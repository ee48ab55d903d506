//! Key-signed DSSE bundles without transparency log or timestamp, as cosign v3 writes them with
//! `--tlog-upload=false`. `sigstore-bundle` refuses to parse such bundles (it requires log or
//! timestamp data), so under `transparencyLog: skip` they are checked here: exactly one DSSE
//! signature, made by the authority's key over the PAE of the payload.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::legacy::verify_raw_signature;
use super::{BundleError, Content, MAX_BUNDLE_BYTES, SUPPORTED_MEDIA_TYPES, Verified, describe_key, parse_public_key};
use crate::verify::dsse::pae;

/// `Ok(Some(..))` if this is a key-only DSSE bundle and the signature verifies, `Ok(None)` if it
/// is not key-only (the caller takes the full Sigstore path), `Err` if it is key-only and bad.
pub(super) fn verify_key_only_dsse(bundle_json: &[u8], pem: &str) -> Result<Option<Verified>, BundleError> {
    if bundle_json.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::Malformed(format!("bundle is larger than {MAX_BUNDLE_BYTES} bytes")));
    }
    let Ok(value) = serde_json::from_slice::<Value>(bundle_json) else {
        return Ok(None);
    };
    let media_type = value.get("mediaType").and_then(Value::as_str).unwrap_or_default();
    let material = value.get("verificationMaterial");
    let has = |key: &str| {
        material.and_then(|m| m.get(key)).is_some_and(|v| match v {
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::Null => false,
            _ => true,
        })
    };
    let key_only = SUPPORTED_MEDIA_TYPES.contains(&media_type)
        && material.and_then(|m| m.get("publicKey")).is_some()
        && !has("tlogEntries")
        && !has("timestampVerificationData");
    let Some(envelope) = value.get("dsseEnvelope").filter(|_| key_only) else {
        return Ok(None);
    };
    let malformed = |what: &str| BundleError::Malformed(format!("key-signed DSSE bundle: {what}"));
    let payload_type =
        envelope.get("payloadType").and_then(Value::as_str).ok_or_else(|| malformed("no payloadType"))?;
    let payload = envelope
        .get("payload")
        .and_then(Value::as_str)
        .and_then(|p| B64.decode(p).ok())
        .ok_or_else(|| malformed("payload is not base64"))?;
    let signatures = envelope.get("signatures").and_then(Value::as_array).ok_or_else(|| malformed("no signatures"))?;
    let [signature] = signatures.as_slice() else {
        return Err(malformed(&format!("{} signatures; exactly one is expected", signatures.len())));
    };
    let signature = signature
        .get("sig")
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .ok_or_else(|| malformed("the signature is not base64"))?;
    verify_raw_signature(pem, &pae(payload_type, &payload), &signature)?;
    let described = describe_key(&parse_public_key(pem)?);
    Ok(Some(Verified {
        content: Content::Dsse { payload_type: payload_type.to_owned(), payload },
        signer: described,
        signed_at: None,
    }))
}
