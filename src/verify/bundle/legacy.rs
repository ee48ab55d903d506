//! Legacy cosign signatures (OCI `.sig` / `.att` layers with annotations) as v0.1 bundles, so
//! they are verified by the same code as every other bundle.
//!
//! Annotations: `dev.cosignproject.cosign/signature` (base64), `dev.sigstore.cosign/certificate`
//! and `…/chain` (PEM), `dev.sigstore.cosign/bundle` (Rekor SET:
//! `{"SignedEntryTimestamp", "Payload": {"body", "integratedTime", "logIndex", "logID"}}`) and
//! `dev.sigstore.cosign/rfc3161timestamp` (`{"SignedRFC3161Timestamp": base64}`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{BundleError, parse_public_key};

const V01: &str = "application/vnd.dev.sigstore.bundle+json;version=0.1";
const V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// Build a v0.1-style bundle (JSON) from cosign legacy annotations so it goes through
/// [`super::verify_bundle`].
///
/// `payload` is the layer blob: the signed payload of a `.sig` layer, or the DSSE envelope JSON
/// of an `.att` layer (whose own signatures are then used and `signature_b64` is ignored).
/// The chain annotation is only checked to be PEM: the chain that counts is the trusted root's.
/// Without a certificate the bundle carries a public-key hint, for verification by key.
pub fn bundle_from_legacy(
    payload: &[u8],
    signature_b64: &str,
    certificate_pem: Option<&str>,
    chain_pem: Option<&str>,
    rekor_bundle_json: Option<&str>,
    rfc3161_timestamp_json: Option<&str>,
) -> Result<Vec<u8>, BundleError> {
    // Without a Rekor entry (timestamped only) the v0.1 rule "every entry has a promise" cannot
    // hold: such a signature becomes a v0.3 bundle, whose material is the one certificate.
    let logged = rekor_bundle_json.is_some();
    let mut material = serde_json::Map::new();
    match certificate_pem {
        Some(pem) => {
            let der = pem_blocks(pem, "CERTIFICATE", "dev.sigstore.cosign/certificate")?
                .into_iter()
                .next()
                .ok_or_else(|| malformed("dev.sigstore.cosign/certificate holds no PEM CERTIFICATE"))?;
            let raw = json!({ "rawBytes": B64.encode(der) });
            if logged {
                material.insert("x509CertificateChain".into(), json!({ "certificates": [raw] }));
            } else {
                material.insert("certificate".into(), raw);
            }
        }
        None => {
            material.insert("publicKey".into(), json!({ "hint": "" }));
        }
    }
    if let Some(chain) = chain_pem {
        pem_blocks(chain, "CERTIFICATE", "dev.sigstore.cosign/chain")?;
    }
    let tlog = match rekor_bundle_json {
        Some(text) => vec![tlog_entry(text)?],
        None => Vec::new(),
    };
    material.insert("tlogEntries".into(), Value::Array(tlog));
    if let Some(text) = rfc3161_timestamp_json {
        let ts: Value = serde_json::from_str(text)
            .map_err(|e| malformed(&format!("dev.sigstore.cosign/rfc3161timestamp is not JSON: {e}")))?;
        let token = ts
            .get("SignedRFC3161Timestamp")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("dev.sigstore.cosign/rfc3161timestamp has no SignedRFC3161Timestamp"))?;
        material
            .insert("timestampVerificationData".into(), json!({ "rfc3161Timestamps": [{ "signedTimestamp": token }] }));
    }
    let mut bundle = serde_json::Map::new();
    bundle.insert("mediaType".into(), if logged { V01 } else { V03 }.into());
    bundle.insert("verificationMaterial".into(), Value::Object(material));
    match dsse_envelope(payload) {
        Some(envelope) => {
            bundle.insert("dsseEnvelope".into(), envelope);
        }
        None => {
            let digest = sigstore_verify::crypto::sha256(payload);
            B64.decode(signature_b64.trim())
                .map_err(|e| malformed(&format!("dev.cosignproject.cosign/signature is not base64: {e}")))?;
            bundle.insert(
                "messageSignature".into(),
                json!({
                    "messageDigest": { "algorithm": "SHA2_256", "digest": B64.encode(digest.as_bytes()) },
                    "signature": signature_b64.trim(),
                }),
            );
        }
    }
    serde_json::to_vec(&Value::Object(bundle)).map_err(|e| malformed(&e.to_string()))
}

/// Verify a signature over `data` with a PEM public key, for key-only legacy signatures under
/// `transparencyLog: skip`: every key type and hash cosign signs with (see [`crate::verify::keys`]).
pub fn verify_raw_signature(pem: &str, data: &[u8], signature: &[u8]) -> Result<(), BundleError> {
    let key = parse_public_key(pem)?;
    raw_signature(&key, data, signature)
}

/// [`verify_raw_signature`] with a parsed key.
pub(super) fn raw_signature(
    key: &sigstore_verify::types::DerPublicKey,
    data: &[u8],
    signature: &[u8],
) -> Result<(), BundleError> {
    use crate::verify::keys::{KeyError, verify};
    match verify(key.as_bytes(), data, signature) {
        Ok(_) => Ok(()),
        Err(e @ KeyError::BadSignature { .. }) => Err(BundleError::Signature(e.to_string())),
        Err(e) => Err(BundleError::Key(e.to_string())),
    }
}

fn malformed(what: &str) -> BundleError {
    BundleError::Malformed(format!("legacy cosign signature: {what}"))
}

/// A DSSE envelope layer blob, re-shaped as a bundle `dsseEnvelope`.
fn dsse_envelope(payload: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    let object = value.as_object()?;
    let (payload_type, body, signatures) =
        (object.get("payloadType")?, object.get("payload")?, object.get("signatures")?);
    let signatures: Vec<Value> = signatures
        .as_array()?
        .iter()
        .map(|s| json!({ "sig": s.get("sig").cloned().unwrap_or(Value::Null), "keyid": s.get("keyid").and_then(Value::as_str).unwrap_or("") }))
        .collect();
    Some(json!({ "payload": body, "payloadType": payload_type, "signatures": signatures }))
}

/// The Rekor bundle annotation as a v0.1 tlog entry (inclusion promise only).
fn tlog_entry(text: &str) -> Result<Value, BundleError> {
    let rekor: Value =
        serde_json::from_str(text).map_err(|e| malformed(&format!("dev.sigstore.cosign/bundle is not JSON: {e}")))?;
    let field =
        |v: &Value, name: &str| v.get(name).cloned().ok_or_else(|| malformed(&format!("Rekor bundle has no {name}")));
    let set = field(&rekor, "SignedEntryTimestamp")?;
    let payload = field(&rekor, "Payload")?;
    let body_b64 = field(&payload, "body")?;
    let body_b64 = body_b64.as_str().ok_or_else(|| malformed("Rekor bundle body is not a string"))?;
    let body: Value = B64
        .decode(body_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("Rekor bundle body is not base64 JSON"))?;
    let (kind, version) = (field(&body, "kind")?, field(&body, "apiVersion")?);
    let log_id = field(&payload, "logID")?;
    let log_id = log_id
        .as_str()
        .and_then(|h| (h.len() % 2 == 0).then_some(h))
        .and_then(|h| {
            (0..h.len()).step_by(2).map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok()).collect::<Option<Vec<u8>>>()
        })
        .ok_or_else(|| malformed("Rekor bundle logID is not hex"))?;
    let number = |name: &str| -> Result<String, BundleError> {
        let v = field(&payload, name)?;
        v.as_i64().map(|n| n.to_string()).ok_or_else(|| malformed(&format!("Rekor bundle {name} is not an integer")))
    };
    Ok(json!({
        "logIndex": number("logIndex")?,
        "logId": { "keyId": B64.encode(log_id) },
        "kindVersion": { "kind": kind, "version": version },
        "integratedTime": number("integratedTime")?,
        "inclusionPromise": { "signedEntryTimestamp": set },
        "canonicalizedBody": body_b64,
    }))
}

/// The DER contents of every `label` block of a PEM text; an error if there is none.
fn pem_blocks(pem: &str, label: &str, what: &str) -> Result<Vec<Vec<u8>>, BundleError> {
    let (begin, end) = (format!("-----BEGIN {label}-----"), format!("-----END {label}-----"));
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let stop = after.find(&end).ok_or_else(|| malformed(&format!("{what}: unterminated PEM block")))?;
        let b64: String = after[..stop].chars().filter(|c| !c.is_whitespace()).collect();
        blocks.push(B64.decode(b64).map_err(|e| malformed(&format!("{what}: PEM is not base64: {e}")))?);
        rest = &after[stop + end.len()..];
    }
    if blocks.is_empty() {
        return Err(malformed(&format!("{what} holds no PEM {label}")));
    }
    Ok(blocks)
}
