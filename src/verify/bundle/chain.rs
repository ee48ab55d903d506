//! Root certificates inside a bundle's certificate chain.
//!
//! Roots come from the trusted root only. Bundles v0.1/v0.2 written by npm (provenance) and
//! slsa-github-generator in 2023 carry the whole Fulcio chain — leaf, intermediate, root — as
//! sigstore-go accepts. Exactly that is accepted here: for v0.1/v0.2, a chain whose certificates
//! after the leaf are, byte for byte and in order, the tail of one certificate authority's own
//! chain in the trusted root, ending with its self-signed root. The copied CA certificates
//! are then dropped and the chain is built from the trusted root alone, as for any bundle.
//! Any other self-signed certificate (another root, a root out of place, any root in a v0.3
//! bundle, which the conformance suite requires to be refused) fails the bundle.

use sigstore_verify::types::bundle::VerificationMaterialContent as M;
use sigstore_verify::types::{Bundle, MediaType};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::BundleError;
use crate::verify::trust::TrustRoot;

/// Refuse a self-signed certificate in the chain, except the trusted CA chain copied into a
/// v0.1/v0.2 bundle, which is removed.
pub(super) fn check_root_in_chain(bundle: &mut Bundle, trust: &TrustRoot) -> Result<(), BundleError> {
    let older = matches!(bundle.media_type, MediaType::Bundle0_1 | MediaType::Bundle0_2);
    let M::X509CertificateChain { certificates } = &mut bundle.verification_material.content else {
        return Ok(());
    };
    let mut root_subject = None;
    for cert in certificates.iter() {
        let (_, parsed) = X509Certificate::from_der(cert.raw_bytes.as_bytes())
            .map_err(|e| BundleError::Certificate(format!("bundle certificate is not valid DER X.509: {e}")))?;
        if parsed.subject().as_raw() == parsed.issuer().as_raw() {
            root_subject = Some(parsed.subject().to_string());
            break;
        }
    }
    let Some(subject) = root_subject else { return Ok(()) };
    if !older {
        return Err(BundleError::RootInChain { subject, why: "a v0.3 bundle may not carry a root certificate" });
    }
    let copied: Vec<&[u8]> = certificates.iter().skip(1).map(|c| c.raw_bytes.as_bytes()).collect();
    let is_trusted_tail = trust.trusted_root().certificate_authorities.iter().any(|ca| {
        let chain: Vec<&[u8]> = ca.cert_chain.certificates.iter().map(|c| c.raw_bytes.as_bytes()).collect();
        !copied.is_empty() && chain.ends_with(&copied)
    });
    if !is_trusted_tail {
        return Err(BundleError::RootInChain {
            subject,
            why: "it is not the end of a certificate authority's own chain in the trusted root",
        });
    }
    certificates.truncate(1);
    Ok(())
}
