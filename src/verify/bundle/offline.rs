//! Key-signed bundles without any log entry or timestamp, under `transparencyLog: skip`.
//!
//! `sigstore-verify` (rightly) refuses a bundle that carries no evidence at all; a policy that
//! says `skip` for a key asks for exactly that: the signature by the key, and nothing else.
//! Everything that is present is still checked: the signature, the message digest, and the
//! in-toto subject against the artifact.

use sigstore_verify::crypto::{KeyAlgorithm, verify_signature_prehashed};
use sigstore_verify::types::{Bundle, DerPublicKey, HashAlgorithm, SignatureContent};

use super::legacy::raw_signature;
use super::{Artifact, BundleError};
use crate::verify::dsse::Statement;

/// Whether the bundle carries no log entry and no RFC 3161 timestamp.
pub(super) fn has_no_evidence(bundle: &Bundle) -> bool {
    let material = &bundle.verification_material;
    material.tlog_entries.is_empty() && material.timestamp_verification_data.rfc3161_timestamps.is_empty()
}

/// Verify the bundle's signature with `key` alone.
pub(super) fn verify_with_key_only(
    bundle: &Bundle,
    key: &DerPublicKey,
    artifact: Option<Artifact<'_>>,
) -> Result<(), BundleError> {
    let bad = |e: sigstore_verify::crypto::Error| BundleError::Signature(e.to_string());
    match &bundle.content {
        SignatureContent::DsseEnvelope(envelope) => {
            raw_signature(key, &envelope.pae(), envelope.signature.sig.as_bytes())?;
            if let Some(artifact) = artifact {
                let digest = sha256_of(artifact);
                let statement = Statement::from_payload(&envelope.payload_type, envelope.payload.as_bytes())
                    .map_err(|e| BundleError::Unsupported(e.to_string()))?;
                if !statement.has_sha256(&digest) {
                    return Err(BundleError::ArtifactMismatch(format!(
                        "no in-toto subject has sha256:{}",
                        crate::verify::dsse::hex(&digest)
                    )));
                }
            }
            Ok(())
        }
        SignatureContent::MessageSignature(message) => {
            let Some(artifact) = artifact else {
                return Err(BundleError::ArtifactRequired(
                    "a messageSignature bundle signs an artifact: pass the artifact to verify".to_owned(),
                ));
            };
            let digest = sha256_of(artifact);
            if let Some(declared) = &message.message_digest
                && (declared.algorithm != HashAlgorithm::Sha2256 || declared.digest.as_bytes() != digest)
            {
                return Err(BundleError::ArtifactMismatch(
                    "the bundle's message digest is not the artifact's sha256".to_owned(),
                ));
            }
            if let Artifact::Bytes(bytes) = artifact {
                return raw_signature(key, bytes, message.signature.as_bytes());
            }
            let scheme =
                KeyAlgorithm::from_spki(key).map_err(|e| BundleError::Key(e.to_string()))?.default_signing_scheme();
            match (artifact, scheme.hash_algorithm()) {
                (Artifact::Bytes(bytes), _) => raw_signature(key, bytes, message.signature.as_bytes()),
                (Artifact::Sha256(d), Some(HashAlgorithm::Sha2256)) => {
                    verify_signature_prehashed(key, &d, &message.signature, scheme).map_err(bad)
                }
                (Artifact::Sha256(_), _) => Err(BundleError::ArtifactRequired(format!(
                    "a {} signature cannot be checked from a sha256 digest: pass the artifact bytes",
                    scheme.name()
                ))),
            }
        }
        _ => Err(BundleError::Unsupported("the bundle has neither messageSignature nor dsseEnvelope".to_owned())),
    }
}

fn sha256_of(artifact: Artifact<'_>) -> [u8; 32] {
    match artifact {
        Artifact::Bytes(bytes) => *sigstore_verify::crypto::sha256(bytes).as_bytes(),
        Artifact::Sha256(digest) => digest,
    }
}
