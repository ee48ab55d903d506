//! Sigstore bundle verification (v0.1, v0.2, v0.3; message signatures and DSSE envelopes), by
//! key or by Fulcio certificate identity, against a [`TrustRoot`].
//!
//! The cryptography is `sigstore-verify`'s: certificate chain and validity at every verified
//! time, SCT, transparency log (SET, inclusion proof, signed checkpoint), RFC 3161 timestamps,
//! the signature itself, and the consistency of each log entry with the bundle and artifact.
//! Around it, this module parses defensively, maps every failure to a [`BundleError`] that says
//! what to do, and matches the certificate against the policy's [`Identity`] (see
//! [`super::identity`]), including the typed GitHub claims `sigstore-verify` does not know.

use serde_json::Value;
use sigstore_verify::types::{ArtifactDigest, Bundle, DerPublicKey, SignatureContent};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, VerificationResult};

use super::dsse::{Statement, hex};
use super::identity::Claims;
use super::signers::SignerIdentity;
use super::trust::TrustRoot;
use crate::policy::{Identity, TransparencyLog};

mod chain;
mod hashes;
mod intoto;
mod legacy;
mod offline;
mod timestamps;
mod tsa;
pub use legacy::{bundle_from_legacy, verify_raw_signature};

/// The largest bundle accepted, in bytes.
pub const MAX_BUNDLE_BYTES: usize = 8 * 1024 * 1024;

/// Media types of the bundle versions this build verifies.
pub const SUPPORTED_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
];

/// Why a bundle without a log entry is refused where one is required.
pub const NO_LOG_ENTRY: &str = "transparency log check failed: the bundle has no transparency log entry; sign with \
     upload to Rekor, or, for a key-based authority that deliberately signs offline, set `transparencyLog: skip`, or, \
     for an instance without a log that timestamps instead (GitHub's artifact attestations), `transparencyLog: timestamp`";

/// Why a bundle did not verify. Every variant is a failed check, never a crash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("malformed Sigstore bundle: {0}; pass the .sigstore.json bundle that cosign or sigstore produced")]
    Malformed(String),
    #[error(
        "unsupported Sigstore bundle version {0:?}; supported: v0.1, v0.2, v0.3 \
         (re-create the bundle with a current cosign / sigstore client)"
    )]
    UnsupportedVersion(String),
    #[error("unsupported Sigstore bundle: {0}")]
    Unsupported(String),
    #[error(
        "unsupported Rekor entry kind {kind} {version}: portcullis verifies hashedrekord 0.0.1/0.0.2, dsse \
         0.0.1, intoto 0.0.2, and intoto 0.0.1 as the one entry of a DSSE envelope{hint}"
    )]
    UnsupportedEntry { kind: String, version: String, hint: &'static str },
    #[error("bad signature: {0}; the artifact or bundle was changed, or it was signed by another key")]
    Signature(String),
    #[error("public key rejected: {0}; give a PEM SubjectPublicKeyInfo (ECDSA P-256/P-384/P-521, Ed25519 or RSA)")]
    Key(String),
    #[error("signing certificate rejected: {0}; is the trusted root the one of the Sigstore instance that signed?")]
    Certificate(String),
    #[error("signing certificate rejected: {0}; was it signed while the certificate was valid?")]
    CertificateNotValidAt(String),
    #[error("certificate identity mismatch: expected {expected}, but the certificate carries {found}")]
    IdentityMismatch { expected: String, found: String },
    #[error("{NO_LOG_ENTRY}")]
    NoLogEntry,
    #[error("transparency log check failed: {0}")]
    TransparencyLog(String),
    #[error("timestamp check failed: {0}")]
    Timestamp(String),
    #[error("no verified timestamp: {0}")]
    NoVerifiedTimestamp(String),
    #[error("timestamp authority not trusted: {0}")]
    TimestampAuthorityNotTrusted(String),
    #[error(
        "the bundle's certificate chain contains the root certificate {subject:?}, and {why}: roots come from \
         the trusted root; rebuild the bundle without it, or verify against the root that holds it"
    )]
    RootInChain { subject: String, why: &'static str },
    #[error("artifact does not match the bundle: {0}; check that you verify the artifact that was signed")]
    ArtifactMismatch(String),
    #[error("{0}")]
    ArtifactRequired(String),
    #[error("verification material does not fit: {0}")]
    Material(String),
    #[error("trusted root unusable: {0}")]
    TrustRoot(String),
}

/// What was signed.
#[derive(Debug, Clone, Copy)]
pub enum Artifact<'a> {
    Bytes(&'a [u8]),
    Sha256([u8; 32]),
}

/// Who must have signed.
#[derive(Debug, Clone, Copy)]
pub enum Signer<'a> {
    /// A PEM public key (SPKI: ECDSA P-256/P-384/P-521, Ed25519, RSA — what cosign supports).
    Key { pem: &'a str },
    /// A Fulcio certificate identity from the policy.
    Keyless(&'a Identity),
    /// Several identities (`keyless.identities`), any one of which may have signed.
    KeylessAny(&'a [Identity]),
}

impl Signer<'_> {
    /// Whether a Fulcio certificate is expected.
    pub fn is_keyless(&self) -> bool {
        !matches!(self, Self::Key { .. })
    }
}

/// A bundle that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// What was signed.
    pub content: Content,
    /// "key sha256:ab12…" or "SAN (issuer URL)".
    pub signer: String,
    /// Who signed, as `require` counts signers (the key, or the certificate's issuer + SAN).
    pub identity: SignerIdentity,
    /// SHA-256 of the SPKI of the key that made the signature (for keyless, the certificate's).
    pub signing_key: [u8; 32],
    /// Verified signing time (Rekor integrated time, else the earliest RFC 3161 time), unix seconds.
    pub signed_at: Option<i64>,
}

/// The signed content of a verified bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// messageSignature: the artifact's digest was checked against the bundle.
    MessageSignature,
    /// dsseEnvelope: the verified payload (caller checks subjects / predicateType).
    Dsse { payload_type: String, payload: Vec<u8> },
}

/// Verify a Sigstore bundle.
///
/// - `artifact` is required for messageSignature bundles. For DSSE bundles, when given, an
///   in-toto subject must carry its sha256; when absent, the envelope is verified and the caller
///   must check the subjects of [`Content::Dsse`].
/// - `tlog`: `Required` needs a verified log entry (SET, or inclusion proof with signed
///   checkpoint) and, for keyless, a verified time (SET integrated time or RFC 3161 timestamp).
///   `Skip` is refused for keyless signers. `Timestamp` needs no log entry (one present must
///   still be consistent with the bundle, and its SET verify) but at least one RFC 3161 timestamp,
///   every one verified by a timestamp authority of `trust`, and the certificate valid at each;
///   SCTs are checked when `trust` lists a CT log (GitHub's instance has none).
pub fn verify_bundle(
    bundle_json: &[u8],
    artifact: Option<Artifact<'_>>,
    signer: &Signer<'_>,
    tlog: TransparencyLog,
    trust: &TrustRoot,
) -> Result<Verified, BundleError> {
    let (mut bundle, intoto_v001) = parse_bundle(bundle_json)?;
    chain::check_root_in_chain(&mut bundle, trust)?;
    timestamps::drop_unparseable(&mut bundle, trust);
    if tlog == TransparencyLog::Timestamp {
        tsa::require_trusted_timestamp(&bundle, trust)?;
    }
    if tlog == TransparencyLog::Required && bundle.verification_material.tlog_entries.is_empty() {
        return Err(BundleError::NoLogEntry);
    }
    let target = sigstore_artifact(&bundle, artifact)?;
    let verifier = trust.verifier();
    let (result, signer, identity, signing_key) = match signer {
        Signer::Key { pem } => {
            let key = parse_public_key(pem)?;
            let described = describe_key(&key);
            let identity = key_identity(&key);
            let signing_key = spki_sha256(key.as_bytes());
            if tlog == TransparencyLog::Skip && offline::has_no_evidence(&bundle) {
                require_public_key_material(&bundle)?;
                offline::verify_with_key_only(&bundle, &key, artifact)?;
                let content = content(&bundle);
                return Ok(Verified { content, signer: described, identity, signing_key, signed_at: None });
            }
            logged_key_supported(&key)?;
            let mut policy = PublicKeyVerificationPolicy::new(key.clone());
            if tlog != TransparencyLog::Required {
                policy = policy.skip_tlog_unsafe();
            }
            let result = match verifier.verify(target, &bundle, &policy) {
                Ok(result) => signed_at(&result),
                Err(e) if hashes::is_unsupported_hash(&e) => hashes::check_entry(&bundle, artifact, Some(&key))?,
                Err(e) if intoto_v001 && intoto::is_body_unreadable(&e) => intoto::check_entry(&bundle, Some(&key))?,
                Err(e) => return Err(map_error(e)),
            };
            (result, described, identity, signing_key)
        }
        Signer::Keyless(_) | Signer::KeylessAny(_) => {
            let identities = match signer {
                Signer::Keyless(identity) => std::slice::from_ref(*identity),
                Signer::KeylessAny(identities) => identities,
                Signer::Key { .. } => &[],
            };
            if tlog == TransparencyLog::Skip {
                return Err(BundleError::TransparencyLog(
                    "`transparencyLog: skip` is only allowed for key-based authorities: a keyless \
                     certificate lives 10 minutes and is only trustworthy with a logged signing time"
                        .to_owned(),
                ));
            }
            let Some(cert) = bundle.signing_certificate() else {
                return Err(BundleError::Material(
                    "the bundle has no signing certificate but a keyless identity was required; \
                     verify it with the public key (--key / key:) instead"
                        .to_owned(),
                ));
            };
            certificate_key_supported(cert.as_bytes())?;
            // Identity is matched below, by the policy's rules (globs, regexps, GitHub claims).
            let mut policy = VerificationPolicy::any_identity();
            if tlog == TransparencyLog::Timestamp {
                // The verified RFC 3161 timestamps (checked above) stand in for the log entry.
                policy = policy.skip_tlog_unsafe();
                if !trust.has_ct_logs() {
                    policy = policy.skip_sct();
                }
            }
            let result = match verifier.verify(target, &bundle, &policy) {
                Ok(result) => signed_at(&result),
                Err(e) if hashes::is_unsupported_hash(&e) => hashes::check_entry(&bundle, artifact, None)?,
                Err(e) if intoto_v001 && intoto::is_body_unreadable(&e) => intoto::check_entry(&bundle, None)?,
                Err(e) => return Err(map_error(e)),
            };
            // The chain, validity and signature are verified: the claims are now trustworthy.
            let found = super::identity::check_any_identity(cert.as_bytes(), identities)?;
            let claims = Claims::from_der(cert.as_bytes())?;
            let who = SignerIdentity::Certificate {
                issuer: claims.issuer.unwrap_or_default(),
                subject: claims.subject.unwrap_or_default(),
            };
            (result, found, who, certificate_key(cert.as_bytes())?)
        }
    };
    Ok(Verified { content: content(&bundle), signer, identity, signing_key, signed_at: result })
}

/// Parse bundle JSON, telling unsupported versions apart from malformed documents.
/// Also says whether its one log entry is an `intoto` 0.0.1 entry, relabelled (see [`intoto`]).
fn parse_bundle(bundle_json: &[u8]) -> Result<(Bundle, bool), BundleError> {
    if bundle_json.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::Malformed(format!("bundle is larger than {MAX_BUNDLE_BYTES} bytes")));
    }
    let text = std::str::from_utf8(bundle_json).map_err(|e| BundleError::Malformed(format!("not UTF-8: {e}")))?;
    let mut value: Value = serde_json::from_str(text).map_err(|e| BundleError::Malformed(format!("not JSON: {e}")))?;
    let media_type = value.get("mediaType").and_then(Value::as_str).unwrap_or_default();
    if !SUPPORTED_MEDIA_TYPES.contains(&media_type) {
        return Err(BundleError::UnsupportedVersion(media_type.to_owned()));
    }
    let intoto_v001 = intoto::relabel(&mut value);
    unsupported_entries(&value)?;
    let bundle = if intoto_v001 { Bundle::from_json(&value.to_string()) } else { Bundle::from_json(text) };
    Ok((bundle.map_err(|e| BundleError::Malformed(e.to_string()))?, intoto_v001))
}

/// The Rekor entry kinds `sigstore-verify` reads; any other is named, not "malformed".
fn unsupported_entries(bundle: &Value) -> Result<(), BundleError> {
    const SUPPORTED: [(&str, &str); 4] =
        [("hashedrekord", "0.0.1"), ("hashedrekord", "0.0.2"), ("dsse", "0.0.1"), ("intoto", "0.0.2")];
    let entries = bundle.pointer("/verificationMaterial/tlogEntries").and_then(Value::as_array);
    for entry in entries.into_iter().flatten() {
        let field = |name: &str| entry.pointer(&format!("/kindVersion/{name}")).and_then(Value::as_str);
        let (Some(kind), Some(version)) = (field("kind"), field("version")) else { continue };
        if !SUPPORTED.contains(&(kind, version)) {
            let hint = if (kind, version) == ("intoto", "0.0.1") {
                " (this bundle has several log entries or no DSSE envelope)"
            } else {
                ""
            };
            return Err(BundleError::UnsupportedEntry { kind: kind.to_owned(), version: version.to_owned(), hint });
        }
    }
    Ok(())
}

/// A key-signed bundle carries a public-key hint, not a certificate.
fn require_public_key_material(bundle: &Bundle) -> Result<(), BundleError> {
    if bundle.signing_certificate().is_some() {
        return Err(BundleError::Material(
            "the bundle holds a signing certificate but a public key was given; verify it by keyless identity"
                .to_owned(),
        ));
    }
    Ok(())
}

/// The artifact in `sigstore-verify`'s terms. A DSSE bundle without artifact is bound to its own
/// first sha256 subject, leaving the subject check to the caller.
fn sigstore_artifact<'a>(
    bundle: &Bundle,
    artifact: Option<Artifact<'a>>,
) -> Result<sigstore_verify::types::Artifact<'a>, BundleError> {
    use sigstore_verify::types::Artifact as A;
    match (artifact, &bundle.content) {
        (Some(Artifact::Bytes(bytes)), _) => Ok(A::Blob(bytes)),
        (Some(Artifact::Sha256(digest)), _) => Ok(A::Digest(sha256_digest(digest))),
        (None, SignatureContent::DsseEnvelope(envelope)) => {
            let statement = Statement::from_payload(&envelope.payload_type, envelope.payload.as_bytes())
                .map_err(|e| BundleError::Unsupported(e.to_string()))?;
            let digest = statement.first_sha256().ok_or_else(|| {
                BundleError::ArtifactRequired(
                    "the in-toto statement has no sha256 subject; pass the artifact to verify against".to_owned(),
                )
            })?;
            Ok(A::Digest(sha256_digest(digest)))
        }
        (None, _) => Err(BundleError::ArtifactRequired(
            "a messageSignature bundle signs an artifact: pass the artifact (file or sha256 digest) to verify"
                .to_owned(),
        )),
    }
}

fn sha256_digest(digest: [u8; 32]) -> ArtifactDigest {
    ArtifactDigest::sha256(sigstore_verify::types::Sha256Hash::new(digest))
}

/// A PEM SubjectPublicKeyInfo.
pub(crate) fn parse_public_key(pem: &str) -> Result<DerPublicKey, BundleError> {
    let key = DerPublicKey::from_pem(pem).map_err(|e| BundleError::Key(e.to_string()))?;
    super::keys::key_type(key.as_bytes()).map_err(|e| BundleError::Key(e.to_string()))?;
    Ok(key)
}

/// Whether `sigstore-verify` can check signatures by this key (it has no ECDSA P-521).
fn logged_key_supported(key: &DerPublicKey) -> Result<(), BundleError> {
    match super::keys::key_type(key.as_bytes()) {
        Ok(super::keys::KeyType::EcdsaP521) => Err(BundleError::Key(
            "ECDSA P-521 keys are verified by the key alone (`transparencyLog: skip`); signatures by them \
             with a transparency log entry are not supported yet"
                .to_owned(),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(BundleError::Key(e.to_string())),
    }
}

/// Whether `sigstore-verify` can read this signing certificate's key: it has no ECDSA P-521 and
/// would call the certificate malformed. Named instead (a DER error is left to the verifier).
fn certificate_key_supported(cert_der: &[u8]) -> Result<(), BundleError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else { return Ok(()) };
    match super::keys::key_type(cert.tbs_certificate.subject_pki.raw) {
        Ok(super::keys::KeyType::EcdsaP521) => Err(BundleError::Unsupported(
            "keyless signatures by ECDSA P-521 certificates are not supported yet (P-256, P-384 and RSA are); \
             the signature was not checked"
                .to_owned(),
        )),
        _ => Ok(()),
    }
}

/// "key sha256:<first 12 hex digits of the SPKI digest>…".
pub(crate) fn describe_key(key: &DerPublicKey) -> String {
    let digest = sigstore_verify::crypto::sha256(key.as_bytes());
    let full = hex(digest.as_bytes());
    format!("key sha256:{}…", &full[..12])
}

/// The signer identity of a key: SHA-256 of its SPKI DER.
pub(crate) fn key_identity(key: &DerPublicKey) -> SignerIdentity {
    SignerIdentity::Key { spki_sha256: spki_sha256(key.as_bytes()) }
}

pub(crate) fn spki_sha256(spki_der: &[u8]) -> [u8; 32] {
    *sigstore_verify::crypto::sha256(spki_der).as_bytes()
}

/// SHA-256 of the SPKI of a certificate's key.
fn certificate_key(cert_der: &[u8]) -> Result<[u8; 32], BundleError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| BundleError::Certificate(format!("signing certificate is not valid DER X.509: {e}")))?;
    Ok(spki_sha256(cert.tbs_certificate.subject_pki.raw))
}

fn content(bundle: &Bundle) -> Content {
    match &bundle.content {
        SignatureContent::DsseEnvelope(envelope) => {
            Content::Dsse { payload_type: envelope.payload_type.clone(), payload: envelope.payload.as_bytes().to_vec() }
        }
        _ => Content::MessageSignature,
    }
}

fn signed_at(result: &VerificationResult) -> Option<i64> {
    result.integrated_time().or_else(|| result.verified_timestamps().iter().min().copied()).map(|t| t.as_second())
}

/// Map a `sigstore-verify` error to its failure class.
fn map_error(error: sigstore_verify::Error) -> BundleError {
    use sigstore_verify::Error as E;
    let text = error.to_string();
    match error {
        E::IdentityMismatch { .. } | E::IssuerMismatch { .. } => {
            BundleError::IdentityMismatch { expected: "the policy identity".to_owned(), found: text }
        }
        E::SignatureInvalid(_) | E::Crypto(_) => BundleError::Signature(text),
        E::UnsupportedArtifact(_) => BundleError::ArtifactRequired(format!("{text}; pass the artifact bytes")),
        E::ArtifactMismatch(_) | E::ArtifactRead(_) => BundleError::ArtifactMismatch(text),
        E::Certificate(
            sigstore_verify::CertificateError::NotYetValid { .. } | sigstore_verify::CertificateError::Expired { .. },
        ) => BundleError::CertificateNotValidAt(text),
        E::Certificate(_) => BundleError::Certificate(text),
        E::TransparencyLog(_) => BundleError::TransparencyLog(text),
        E::Timestamp(sigstore_verify::TimestampError::NoVerifiedTimestamp(detail)) => {
            BundleError::NoVerifiedTimestamp(detail)
        }
        E::Timestamp(_) => BundleError::Timestamp(text),
        E::InvalidBundle(_) | E::Bundle(_) | E::Types(_) => BundleError::Malformed(text),
        E::UnsupportedBundle(_) => BundleError::Unsupported(text),
        E::InvalidTrustRoot(_) | E::TrustRoot(_) | E::TrustedCertificate(_) => BundleError::TrustRoot(text),
        _ => BundleError::Malformed(text),
    }
}

#[cfg(test)]
mod mock_tests;
#[cfg(test)]
mod real_tests;
#[cfg(test)]
mod tests;
