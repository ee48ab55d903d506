//! RFC 3161 timestamps that `sigstore-tsa` cannot parse.
//!
//! `sigstore-tsa` decodes `TSTInfo.genTime` with the `der` crate, which refuses fractional
//! seconds (`20261122194125.729Z`), although RFC 3161 §2.4.2 allows them and TSAs such as
//! `@sigstore/mock` emit them. Such a token makes the whole bundle fail, even when a verified
//! Rekor SET already proves the signing time.
//!
//! A token that cannot be parsed authenticates nothing, and anyone can delete a token from a
//! bundle: so dropping it grants nothing a forger could not get by deleting it. The rest of the
//! bundle must then verify on its own, including a verified signing time for the certificate.
//! Tokens that parse are never dropped: a token that parses but does not verify (wrong TSA,
//! wrong time, wrong message) still fails the bundle.

use sigstore_verify::tsa::{Error as TsaError, verify_timestamp_for_authority};
use sigstore_verify::types::{Bundle, SignatureBytes, SignatureContent};

use super::super::trust::TrustRoot;

/// Remove the timestamps no trusted authority can even parse; return how many were removed.
pub(super) fn drop_unparseable(bundle: &mut Bundle, trust: &TrustRoot) -> usize {
    let signature: SignatureBytes = match &bundle.content {
        SignatureContent::MessageSignature(message) => message.signature.clone(),
        SignatureContent::DsseEnvelope(envelope) => envelope.signature.sig.clone(),
        _ => return 0,
    };
    let authorities = trust.trusted_root().tsa_authorities();
    if authorities.is_empty() {
        return 0;
    }
    let timestamps = &mut bundle.verification_material.timestamp_verification_data.rfc3161_timestamps;
    let before = timestamps.len();
    timestamps.retain(|ts| {
        let unparseable = authorities.iter().all(|authority| {
            matches!(
                verify_timestamp_for_authority(&ts.signed_timestamp, &signature, authority),
                Err(TsaError::Parse(_))
            )
        });
        if unparseable {
            tracing::warn!("ignoring an RFC 3161 timestamp that cannot be parsed; the bundle must verify without it");
        }
        !unparseable
    });
    before - timestamps.len()
}
