//! Checking cosign signatures of one image digest against one policy's authorities.
//!
//! A signature is a legacy `.sig` layer (simple-signing payload) or a Sigstore bundle v0.3
//! referrer (DSSE statement with predicateType `https://sigstore.dev/cosign/sign/v1`). An
//! authority is satisfied by ONE signature that meets all of its conditions (key or identity,
//! transparency log, digest); authorities combine as the policy's `require` says, counting
//! distinct signers (see [`super::signers`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::bundle::{Artifact, Content, Signer, bundle_from_legacy, verify_bundle, verify_raw_signature};
use super::discovery::{ANN_BUNDLE, ANN_CERTIFICATE, ANN_CHAIN, ANN_SIGNATURE, ANN_TIMESTAMP, Evidence, LegacyLayer};
use super::dsse::Statement;
use super::signers::{SignedBy, SignerIdentity};
use super::trust::TrustRoot;
use crate::image::Digest;
use crate::policy::{Authority, AuthorityKind, TransparencyLog};

/// The predicate type of cosign v3 signature statements.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The `critical.type` of simple-signing payloads.
const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// Key material resolved for an authority (PEM), or why it could not be.
pub type KeyMaterial = Result<String, String>;

/// How one authority fared against the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityResult {
    /// Satisfied by every one of these signers (each distinct signer once, at the first
    /// location where it satisfied the authority), so that `require` can count distinct signers.
    Satisfied { signers: Vec<SignedBy> },
    /// Not satisfied; why, per location tried.
    Unsatisfied { tried: Vec<(String, String)> },
}

/// Check every signature found for `digest` against one authority. Every signature that meets
/// all of the authority's conditions is returned (once per identity and signing key): a
/// signature satisfies an authority on its own, never pieced together from several.
pub fn check_authority(
    authority: &Authority,
    key: Option<&KeyMaterial>,
    digest: &Digest,
    evidence: &Evidence,
    trust: &TrustRoot,
) -> AuthorityResult {
    let mut tried = Vec::new();
    if let (AuthorityKind::Key(_), Some(Err(why))) = (&authority.kind, key) {
        return AuthorityResult::Unsatisfied { tried: vec![("key".to_owned(), why.clone())] };
    }
    let pem = key.and_then(|k| k.as_ref().ok()).map(String::as_str);
    let mut signers: Vec<SignedBy> = Vec::new();
    let mut found = |location: &str, result: Result<(SignerIdentity, [u8; 32]), String>| match result {
        Ok((identity, key)) if signers.iter().any(|s| s.identity == identity && s.signing_key == key) => {}
        Ok((identity, signing_key)) => {
            signers.push(SignedBy { identity, signing_key, location: location.to_owned() });
        }
        Err(why) => tried.push((location.to_owned(), why)),
    };
    for layer in &evidence.signatures {
        found(&layer.location, check_legacy(authority, pem, digest, layer, trust));
    }
    for bundle in &evidence.bundles {
        found(&bundle.location, check_bundle(authority, pem, digest, &bundle.json, trust));
    }
    if signers.is_empty() { AuthorityResult::Unsatisfied { tried } } else { AuthorityResult::Satisfied { signers } }
}

fn signer<'a>(authority: &'a Authority, pem: Option<&'a str>) -> Result<Signer<'a>, String> {
    match (&authority.kind, pem) {
        (AuthorityKind::Key(_), Some(pem)) => Ok(Signer::Key { pem }),
        (AuthorityKind::Key(_), None) => Err("the authority's key is not available".to_owned()),
        (AuthorityKind::Keyless(identity), _) => Ok(Signer::Keyless(identity)),
        (AuthorityKind::KeylessAny(identities), _) => Ok(Signer::KeylessAny(identities)),
    }
}

/// A legacy `.sig` layer: payload for D, signature by the authority.
fn check_legacy(
    authority: &Authority,
    pem: Option<&str>,
    digest: &Digest,
    layer: &LegacyLayer,
    trust: &TrustRoot,
) -> Result<(SignerIdentity, [u8; 32]), String> {
    let payload: Value =
        serde_json::from_slice(&layer.blob).map_err(|e| format!("the simple-signing payload is not JSON: {e}"))?;
    let signed_digest = payload.pointer("/critical/image/docker-manifest-digest").and_then(Value::as_str);
    if signed_digest != Some(digest.to_string().as_str()) {
        return Err(format!("the payload signs digest {}, not {digest}", signed_digest.unwrap_or("(none)")));
    }
    let kind = payload.pointer("/critical/type").and_then(Value::as_str).unwrap_or_default();
    if kind != SIMPLE_SIGNING_TYPE {
        return Err(format!("the payload type is {kind:?}, not {SIMPLE_SIGNING_TYPE:?}"));
    }
    let signature_b64 = layer.annotation(ANN_SIGNATURE).ok_or("the layer has no signature annotation")?;
    let certificate = layer.annotation(ANN_CERTIFICATE);
    let rekor = layer.annotation(ANN_BUNDLE);
    let signer = signer(authority, pem)?;
    match (&signer, authority.transparency_log) {
        (Signer::Key { pem }, TransparencyLog::Skip) => {
            let signature =
                B64.decode(signature_b64.trim()).map_err(|_| "the signature annotation is not base64".to_owned())?;
            verify_raw_signature(pem, &layer.blob, &signature).map_err(|e| e.to_string())?;
            return super::bundle::parse_public_key(pem)
                .map(|key| (super::bundle::key_identity(&key), super::bundle::spki_sha256(key.as_bytes())))
                .map_err(|e| e.to_string());
        }
        (Signer::Key { .. }, TransparencyLog::Required) if rekor.is_none() => {
            return Err("the signature has no transparency log entry (no Rekor bundle annotation) and the \
                        authority requires one; sign with the log, or set transparencyLog: skip"
                .to_owned());
        }
        (signer, _) if signer.is_keyless() && certificate.is_none() => {
            return Err("the signature carries no certificate: it is not a keyless signature".to_owned());
        }
        (signer, tlog) if signer.is_keyless() && rekor.is_none() && tlog != TransparencyLog::Timestamp => {
            return Err("the keyless signature has no transparency log entry (no Rekor bundle annotation); \
                        keyless signatures are only trusted with a logged signing time"
                .to_owned());
        }
        _ => {}
    }
    let bundle = bundle_from_legacy(
        &layer.blob,
        signature_b64,
        certificate,
        layer.annotation(ANN_CHAIN),
        rekor,
        layer.annotation(ANN_TIMESTAMP),
    )
    .map_err(|e| e.to_string())?;
    let verified =
        verify_bundle(&bundle, Some(Artifact::Bytes(&layer.blob)), &signer, authority.transparency_log, trust)
            .map_err(|e| e.to_string())?;
    Ok((verified.identity, verified.signing_key))
}

/// A bundle referrer: a signature statement about D, signed by the authority.
fn check_bundle(
    authority: &Authority,
    pem: Option<&str>,
    digest: &Digest,
    json: &[u8],
    trust: &TrustRoot,
) -> Result<(SignerIdentity, [u8; 32]), String> {
    let signer = signer(authority, pem)?;
    let verified = verify_bundle(json, None, &signer, authority.transparency_log, trust).map_err(|e| e.to_string())?;
    let Content::Dsse { payload_type, payload } = &verified.content else {
        return Err("the bundle holds a message signature, not a cosign image signature statement".to_owned());
    };
    let statement = Statement::from_payload(payload_type, payload).map_err(|e| e.to_string())?;
    if statement.predicate_type != COSIGN_SIGN_PREDICATE {
        return Err(format!(
            "the bundle is an attestation ({}), not a signature ({COSIGN_SIGN_PREDICATE})",
            statement.predicate_type
        ));
    }
    let want = digest_bytes(digest).ok_or("only sha256 image digests are supported")?;
    if !statement.has_sha256(&want) {
        return Err(format!("the signed statement is about another digest, not {digest}"));
    }
    Ok((verified.identity, verified.signing_key))
}

/// The 32 hash bytes of a sha256 digest.
pub fn digest_bytes(digest: &Digest) -> Option<[u8; 32]> {
    if digest.algorithm() != "sha256" {
        return None;
    }
    super::dsse::decode_sha256(digest.hex())
}
