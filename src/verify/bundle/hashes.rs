//! Rekor `hashedrekord` 0.0.1 entries that record a SHA-384 or SHA-512 artifact hash.
//!
//! Sigstore clients signing with ECDSA P-384 / P-521 keys log the artifact's SHA-384 / SHA-512
//! (`spec.data.hash.algorithm`). `sigstore-verify` 0.15 reads that hash as SHA-256 in its last
//! step — the entry's consistency with the bundle — and fails with "SHA-256 hash must be 32
//! bytes, got 48" AFTER every other check passed (certificate chain and validity at the logged
//! time, SCT, SET, inclusion proof and checkpoint, signature over the artifact). That one step
//! is done here instead, for exactly those entries: the logged hash is the artifact's under the
//! logged algorithm, the logged signature is the bundle's, the logged verifier is the bundle's
//! certificate (or the authority's key), and the logged time lies in the certificate's validity.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use sha2::Digest as _;
use sigstore_verify::types::{Bundle, DerPublicKey, KindVersion, SignatureContent};

use super::{Artifact, BundleError};

/// Whether `error` is `sigstore-verify`'s failure to read a logged hash as SHA-256 — the last
/// step of its verification, so every earlier check passed.
pub(super) fn is_unsupported_hash(error: &sigstore_verify::Error) -> bool {
    use sigstore_verify::{Error as E, TransparencyLogError as T};
    matches!(error, E::TransparencyLog(T::MalformedEntry(detail)) if detail.starts_with("invalid hash in Rekor entry"))
}

/// The bundle's one log entry, when it is a `hashedrekord` 0.0.1 of a message signature with a
/// SHA-384 or SHA-512 hash: (algorithm, hex hash, body).
fn wide_hash_entry(bundle: &Bundle) -> Option<(&'static str, String, Value)> {
    let [entry] = bundle.verification_material.tlog_entries.as_slice() else { return None };
    if entry.kind_version != KindVersion::HashedRekordV001
        || !matches!(bundle.content, SignatureContent::MessageSignature(_))
    {
        return None;
    }
    let body: Value = serde_json::from_slice(entry.canonicalized_body.as_bytes()).ok()?;
    let algorithm = match body.pointer("/spec/data/hash/algorithm").and_then(Value::as_str)? {
        "sha384" => "sha384",
        "sha512" => "sha512",
        _ => return None,
    };
    let value = body.pointer("/spec/data/hash/value").and_then(Value::as_str)?.to_ascii_lowercase();
    Some((algorithm, value, body))
}

/// Check the consistency of a SHA-384/SHA-512 `hashedrekord` entry with the bundle, the artifact
/// and the verifier (`key` for key-based authorities; else the bundle's certificate). Returns the
/// entry's integrated time (verified by `sigstore-verify` before it stopped).
pub(super) fn check_entry(
    bundle: &Bundle,
    artifact: Option<Artifact<'_>>,
    key: Option<&DerPublicKey>,
) -> Result<Option<i64>, BundleError> {
    let Some((algorithm, logged_hash, body)) = wide_hash_entry(bundle) else {
        return Err(BundleError::Unsupported(
            "a Rekor entry records a hash other than SHA-256 and is not one hashedrekord 0.0.1 entry of a \
             message signature; only that case is supported"
                .to_owned(),
        ));
    };
    let Some(Artifact::Bytes(bytes)) = artifact else {
        return Err(BundleError::ArtifactRequired(format!(
            "the log entry records the artifact's {algorithm}: pass the artifact bytes, not its sha256"
        )));
    };
    let actual = match algorithm {
        "sha384" => crate::verify::dsse::hex(&sha2::Sha384::digest(bytes)),
        _ => crate::verify::dsse::hex(&sha2::Sha512::digest(bytes)),
    };
    if actual != logged_hash {
        return Err(BundleError::ArtifactMismatch(format!(
            "the log entry records {algorithm}:{logged_hash}, the artifact is {algorithm}:{actual}"
        )));
    }
    let SignatureContent::MessageSignature(message) = &bundle.content else {
        return Err(BundleError::Unsupported("not a message signature".to_owned()));
    };
    let logged_signature = body
        .pointer("/spec/signature/content")
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .ok_or_else(|| BundleError::TransparencyLog("the log entry has no readable signature".to_owned()))?;
    if logged_signature != message.signature.as_bytes() {
        return Err(BundleError::TransparencyLog(
            "the log entry records another signature than the bundle's (an entry of another signing)".to_owned(),
        ));
    }
    let logged_verifier = body
        .pointer("/spec/signature/publicKey/content")
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .and_then(|pem| String::from_utf8(pem).ok())
        .ok_or_else(|| BundleError::TransparencyLog("the log entry has no readable verifier".to_owned()))?;
    let integrated_time = bundle.verification_material.tlog_entries[0].integrated_time.map(|t| t.as_second());
    match (key, bundle.signing_certificate()) {
        (Some(key), _) => {
            let logged = DerPublicKey::from_pem(&logged_verifier).map_err(|e| {
                BundleError::TransparencyLog(format!("the log entry's verifier is not a public key: {e}"))
            })?;
            if logged.as_bytes() != key.as_bytes() {
                return Err(BundleError::TransparencyLog(
                    "the log entry names another key than the authority's".to_owned(),
                ));
            }
        }
        (None, Some(cert)) => {
            let logged = pem_der(&logged_verifier, "CERTIFICATE").ok_or_else(|| {
                BundleError::TransparencyLog("the log entry's verifier is not a certificate".to_owned())
            })?;
            if logged != cert.as_bytes() {
                return Err(BundleError::TransparencyLog(
                    "the log entry names another certificate than the bundle's".to_owned(),
                ));
            }
            within_validity(cert.as_bytes(), integrated_time)?;
        }
        (None, None) => return Err(BundleError::Material("the bundle has no signing certificate".to_owned())),
    }
    Ok(integrated_time)
}

pub(super) fn within_validity(cert_der: &[u8], integrated_time: Option<i64>) -> Result<(), BundleError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| BundleError::Certificate(format!("signing certificate is not valid DER X.509: {e}")))?;
    let Some(time) = integrated_time else {
        return Err(BundleError::TransparencyLog("the log entry has no integrated time".to_owned()));
    };
    let validity = cert.validity();
    if time < validity.not_before.timestamp() || time > validity.not_after.timestamp() {
        return Err(BundleError::TransparencyLog(format!(
            "the entry was logged at {time}, outside the certificate's validity"
        )));
    }
    Ok(())
}

/// The DER of the first PEM block labelled `label`.
pub(super) fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(b64).ok()
}
