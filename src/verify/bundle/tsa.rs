//! `transparencyLog: timestamp`: an RFC 3161 timestamp from a timestamp authority of the trusted
//! root stands in for the transparency log entry (GitHub's artifact attestations for private
//! repositories carry a timestamp from GitHub's TSA and no log entry).
//!
//! Before the bundle is verified, each timestamp is checked against the root's authorities here,
//! so that a refusal says which of the cases it is: no timestamp at all, a timestamp from an
//! authority the root does not list, or a timestamp over another signature. `sigstore-verify`
//! then checks everything again, and the certificate against every verified time.

use sigstore_verify::tsa::{Error as TsaError, verify_timestamp_for_authority};
use sigstore_verify::types::{Bundle, SignatureBytes, SignatureContent};

use super::BundleError;
use crate::verify::trust::TrustRoot;

/// Require at least one timestamp and that every timestamp verifies against an authority of the
/// trusted root.
pub(super) fn require_trusted_timestamp(bundle: &Bundle, trust: &TrustRoot) -> Result<(), BundleError> {
    let timestamps = &bundle.verification_material.timestamp_verification_data.rfc3161_timestamps;
    if timestamps.is_empty() {
        return Err(BundleError::NoVerifiedTimestamp(
            "`transparencyLog: timestamp` needs a signed RFC 3161 timestamp, and the bundle carries none \
             (or none that parses); sign with a timestamp authority, or require the log entry"
                .to_owned(),
        ));
    }
    if !trust.has_timestamp_authorities() {
        return Err(BundleError::TimestampAuthorityNotTrusted(
            "the trusted root lists no timestamp authority; give the root of the instance that timestamped \
             the bundle (`trustedRoot: github` for GitHub's artifact attestations)"
                .to_owned(),
        ));
    }
    let signature: &SignatureBytes = match &bundle.content {
        SignatureContent::MessageSignature(message) => &message.signature,
        SignatureContent::DsseEnvelope(envelope) => &envelope.signature.sig,
        _ => return Err(BundleError::Unsupported("the bundle has neither messageSignature nor dsseEnvelope".into())),
    };
    let authorities = trust.trusted_root().tsa_authorities();
    for token in timestamps {
        let mut over_other_signature = false;
        let mut outside = None;
        let mut verified = false;
        for authority in &authorities {
            match verify_timestamp_for_authority(&token.signed_timestamp, signature, authority) {
                Ok(_) => verified = true,
                Err(TsaError::HashMismatch { .. }) => over_other_signature = true,
                Err(TsaError::TimestampOutsideValidity { time }) => outside = Some(time),
                Err(_) => {}
            }
        }
        if verified {
            continue;
        }
        return Err(if over_other_signature {
            BundleError::Timestamp(
                "the RFC 3161 timestamp does not match the bundle's signature (it timestamps another one, or was altered)"
                    .to_owned(),
            )
        } else if let Some(time) = outside {
            BundleError::Timestamp(format!(
                "the RFC 3161 timestamp ({time}) is outside the validity window of the authority that signed it"
            ))
        } else {
            BundleError::TimestampAuthorityNotTrusted(
                "no timestamp authority of the trusted root signed the bundle's RFC 3161 timestamp; give the root \
                 of the instance that timestamped it (`trustedRoot: github` for GitHub's artifact attestations)"
                    .to_owned(),
            )
        });
    }
    Ok(())
}
