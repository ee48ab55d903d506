//! Rekor `intoto` 0.0.1 entries: cosign attestations logged before cosign 2.0.
//!
//! `sigstore-types` 0.15 parses only `intoto` 0.0.2. An 0.0.1 entry differs only in its body
//! (`spec.content.hash` and `spec.content.payloadHash`, `spec.publicKey`; no envelope); the
//! transparency evidence — SET over the canonical body, integrated time, inclusion proof — does
//! not depend on the kind. So the one entry of a DSSE bundle is handed to `sigstore-verify`
//! labelled 0.0.2: it verifies the SET (and the inclusion proof where present), the certificate
//! chain, SCT and validity at the logged time, and the envelope signature, and stops in its last
//! step, the body's consistency with the bundle, where it cannot read the 0.0.1 body. That step
//! is made here: the body is an `intoto` 0.0.1 entry whose payload hash is the envelope payload's
//! SHA-256 and whose public key is the bundle's signing certificate (or the authority's key).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use sigstore_verify::types::{Bundle, DerPublicKey, SignatureContent};

use super::BundleError;

/// If the bundle's only log entry is an `intoto` 0.0.1 entry of a DSSE envelope, label it 0.0.2
/// (see the module doc) and say so.
pub(super) fn relabel(bundle: &mut Value) -> bool {
    let has_envelope = bundle.get("dsseEnvelope").is_some();
    let Some([entry]) =
        bundle.pointer_mut("/verificationMaterial/tlogEntries").and_then(Value::as_array_mut).map(Vec::as_mut_slice)
    else {
        return false;
    };
    let kind = entry.pointer("/kindVersion/kind").and_then(Value::as_str);
    let version = entry.pointer("/kindVersion/version").and_then(Value::as_str);
    if !has_envelope || kind != Some("intoto") || version != Some("0.0.1") {
        return false;
    }
    match entry.pointer_mut("/kindVersion/version") {
        Some(version) => {
            *version = Value::String("0.0.2".to_owned());
            true
        }
        None => false,
    }
}

/// Whether `error` is `sigstore-verify` failing to read the relabelled body — its last step, so
/// every earlier check passed.
pub(super) fn is_body_unreadable(error: &sigstore_verify::Error) -> bool {
    use sigstore_verify::{Error as E, TransparencyLogError as T};
    matches!(error, E::TransparencyLog(T::MalformedEntry(detail)) if detail.starts_with("failed to parse Rekor body"))
}

/// The consistency of the `intoto` 0.0.1 entry with the envelope and the signer (`key`, else the
/// bundle's certificate). Returns the entry's integrated time (verified by its SET).
pub(super) fn check_entry(bundle: &Bundle, key: Option<&DerPublicKey>) -> Result<Option<i64>, BundleError> {
    let [entry] = bundle.verification_material.tlog_entries.as_slice() else {
        return Err(BundleError::TransparencyLog("expected one intoto 0.0.1 log entry".to_owned()));
    };
    let SignatureContent::DsseEnvelope(envelope) = &bundle.content else {
        return Err(BundleError::TransparencyLog("an intoto entry logs a DSSE envelope".to_owned()));
    };
    let bad = |why: &str| BundleError::TransparencyLog(format!("intoto 0.0.1 log entry: {why}"));
    let body: Value =
        serde_json::from_slice(entry.canonicalized_body.as_bytes()).map_err(|_| bad("body is not JSON"))?;
    let text = |pointer: &str| body.pointer(pointer).and_then(Value::as_str);
    if text("/kind") != Some("intoto") || text("/apiVersion") != Some("0.0.1") {
        return Err(bad("the body is not of kind intoto 0.0.1"));
    }
    if text("/spec/content/payloadHash/algorithm") != Some("sha256") {
        return Err(bad("the payload hash is not sha256"));
    }
    let logged = text("/spec/content/payloadHash/value").ok_or_else(|| bad("no payload hash"))?.to_ascii_lowercase();
    let actual = crate::verify::dsse::hex(sigstore_verify::crypto::sha256(envelope.payload.as_bytes()).as_bytes());
    if logged != actual {
        return Err(BundleError::TransparencyLog(format!(
            "the intoto 0.0.1 log entry records payload sha256:{logged}, the envelope's payload is sha256:{actual} \
             (an entry of another attestation)"
        )));
    }
    let verifier = text("/spec/publicKey")
        .and_then(|b64| B64.decode(b64).ok())
        .and_then(|pem| String::from_utf8(pem).ok())
        .ok_or_else(|| bad("no readable public key"))?;
    match (key, bundle.signing_certificate()) {
        (Some(key), _) => {
            let logged =
                DerPublicKey::from_pem(&verifier).map_err(|_| bad("the logged verifier is not a public key"))?;
            if logged.as_bytes() != key.as_bytes() {
                return Err(BundleError::TransparencyLog(
                    "the intoto 0.0.1 log entry names another key than the authority's".to_owned(),
                ));
            }
        }
        (None, Some(cert)) => {
            let logged = super::hashes::pem_der(&verifier, "CERTIFICATE")
                .ok_or_else(|| bad("the logged verifier is not a certificate"))?;
            if logged != cert.as_bytes() {
                return Err(BundleError::TransparencyLog(
                    "the intoto 0.0.1 log entry names another certificate than the bundle's".to_owned(),
                ));
            }
            super::hashes::within_validity(cert.as_bytes(), entry.integrated_time.map(|t| t.as_second()))?;
        }
        (None, None) => return Err(BundleError::Material("the bundle has no signing certificate".to_owned())),
    }
    Ok(entry.integrated_time.map(|t| t.as_second()))
}
