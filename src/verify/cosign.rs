//! Checking cosign signatures of one image digest against one policy's authorities.
//!
//! A signature is a legacy `.sig` layer (simple-signing payload) or a Sigstore bundle v0.3
//! referrer (DSSE statement with predicateType `https://sigstore.dev/cosign/sign/v1`). An
//! authority is satisfied by ONE signature that meets all of its conditions (key or identity,
//! transparency log, digest); authorities combine as the policy's `require` says, counting
//! distinct signers (see [`super::signers`]).
//!
//! Every check answers with a typed [`Failure`]; the steps are numbered as in [`super::verdict`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::bundle::{Artifact, Content, Signer, bundle_from_legacy, verify_bundle, verify_raw_signature};
use super::discovery::{
    ANN_BUNDLE, ANN_CERTIFICATE, ANN_CHAIN, ANN_SIGNATURE, ANN_TIMESTAMP, Evidence, LegacyLayer, Location,
};
use super::dsse::Statement;
use super::signers::{SignedBy, SignerIdentity};
use super::trust::TrustRoot;
use super::verdict::{Carrier, Failure, Tried};
use crate::image::Digest;
use crate::policy::{Authority, AuthorityKind, TransparencyLog};

/// The predicate type of cosign v3 signature statements.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The `critical.type` of simple-signing payloads.
const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// Key material resolved for an authority (PEM), or why it could not be
/// ([`Failure::KeyUnavailable`]).
pub type KeyMaterial = Result<String, Failure>;

/// How one authority fared against the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityResult {
    /// Satisfied by every one of these signers (each distinct signer once, at the first
    /// location where it satisfied the authority), so that `require` can count distinct signers.
    Satisfied { signers: Vec<SignedBy> },
    /// Not satisfied; why, per location tried (empty: nothing to check).
    Unsatisfied { tried: Vec<Tried> },
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
    // Step 4: a key authority without its key checks nothing.
    if let (AuthorityKind::Key(_), Some(Err(failure))) = (&authority.kind, key) {
        let tried = Tried { location: None, authority: None, failure: failure.clone() };
        return AuthorityResult::Unsatisfied { tried: vec![tried] };
    }
    let pem = key.and_then(|k| k.as_ref().ok()).map(String::as_str);
    let mut signers: Vec<SignedBy> = Vec::new();
    let mut found = |location: &Location, result: Result<(SignerIdentity, [u8; 32]), Failure>| match result {
        Ok((identity, key)) if signers.iter().any(|s| s.identity == identity && s.signing_key == key) => {}
        Ok((identity, signing_key)) => {
            signers.push(SignedBy { identity, signing_key, location: location.clone() });
        }
        Err(failure) => tried.push(Tried { location: Some(location.clone()), authority: None, failure }),
    };
    for layer in &evidence.signatures {
        found(&layer.location, check_legacy(authority, pem, digest, layer, trust));
    }
    for bundle in &evidence.bundles {
        found(&bundle.location, check_bundle(authority, pem, digest, &bundle.json, trust));
    }
    if signers.is_empty() { AuthorityResult::Unsatisfied { tried } } else { AuthorityResult::Satisfied { signers } }
}

/// Step 4: who must have signed, for this authority.
pub(crate) fn signer<'a>(authority: &'a Authority, pem: Option<&'a str>) -> Result<Signer<'a>, Failure> {
    match (&authority.kind, pem) {
        (AuthorityKind::Key(_), Some(pem)) => Ok(Signer::Key { pem }),
        (AuthorityKind::Key(_), None) => {
            Err(Failure::KeyUnavailable { why: "the authority's key is not available".to_owned() })
        }
        (AuthorityKind::Keyless(identity), _) => Ok(Signer::Keyless(identity)),
        (AuthorityKind::KeylessAny(identities), _) => Ok(Signer::KeylessAny(identities)),
    }
}

/// A legacy `.sig` layer: payload for D, signature by the authority.
pub(crate) fn check_legacy(
    authority: &Authority,
    pem: Option<&str>,
    digest: &Digest,
    layer: &LegacyLayer,
    trust: &TrustRoot,
) -> Result<(SignerIdentity, [u8; 32]), Failure> {
    // Step 2: a simple-signing payload.
    let payload: Value = serde_json::from_slice(&layer.blob)
        .map_err(|e| Failure::malformed(format!("the simple-signing payload is not JSON: {e}")))?;
    // Step 3: about this digest, of the simple-signing type.
    let signed_digest = payload.pointer("/critical/image/docker-manifest-digest").and_then(Value::as_str);
    if signed_digest != Some(digest.to_string().as_str()) {
        return Err(Failure::DigestMismatch {
            expected: digest.to_string(),
            found: signed_digest.map(str::to_owned),
            statement: false,
        });
    }
    let kind = payload.pointer("/critical/type").and_then(Value::as_str).unwrap_or_default();
    if kind != SIMPLE_SIGNING_TYPE {
        return Err(Failure::PayloadTypeMismatch { expected: SIMPLE_SIGNING_TYPE.to_owned(), found: kind.to_owned() });
    }
    let signature_b64 =
        layer.annotation(ANN_SIGNATURE).ok_or_else(|| Failure::malformed("the layer has no signature annotation"))?;
    let certificate = layer.annotation(ANN_CERTIFICATE);
    let rekor = layer.annotation(ANN_BUNDLE);
    // Step 4: the material the authority needs; step 5: its log entry.
    let signer = signer(authority, pem)?;
    let keyless = signer.is_keyless();
    match (&signer, authority.transparency_log) {
        (Signer::Key { pem }, TransparencyLog::Skip) => {
            // Step 7, by the key alone.
            let signature = B64
                .decode(signature_b64.trim())
                .map_err(|_| Failure::malformed("the signature annotation is not base64"))?;
            verify_raw_signature(pem, &layer.blob, &signature).map_err(|e| Failure::from_bundle(e, false))?;
            return super::bundle::parse_public_key(pem)
                .map(|key| (super::bundle::key_identity(&key), super::bundle::spki_sha256(key.as_bytes())))
                .map_err(|e| Failure::from_bundle(e, false));
        }
        (Signer::Key { .. }, TransparencyLog::Required) if rekor.is_none() => {
            return Err(Failure::NoLogEntry { carrier: Carrier::KeySignature });
        }
        (_, _) if keyless && certificate.is_none() => {
            return Err(Failure::NoCertificate { carrier: Carrier::KeylessSignature });
        }
        (_, tlog) if keyless && rekor.is_none() && tlog != TransparencyLog::Timestamp => {
            return Err(Failure::NoLogEntry { carrier: Carrier::KeylessSignature });
        }
        _ => {}
    }
    // Steps 5 to 8, on the bundle the annotations make.
    let bundle = bundle_from_legacy(
        &layer.blob,
        signature_b64,
        certificate,
        layer.annotation(ANN_CHAIN),
        rekor,
        layer.annotation(ANN_TIMESTAMP),
    )
    .map_err(|e| Failure::from_bundle(e, keyless))?;
    let verified =
        verify_bundle(&bundle, Some(Artifact::Bytes(&layer.blob)), &signer, authority.transparency_log, trust)
            .map_err(|e| Failure::from_bundle(e, keyless))?;
    Ok((verified.identity, verified.signing_key))
}

/// A bundle referrer: a signature statement about D, signed by the authority.
pub(crate) fn check_bundle(
    authority: &Authority,
    pem: Option<&str>,
    digest: &Digest,
    json: &[u8],
    trust: &TrustRoot,
) -> Result<(SignerIdentity, [u8; 32]), Failure> {
    // Step 4, then steps 2 and 5 to 8 in the bundle verification.
    let signer = signer(authority, pem)?;
    let keyless = signer.is_keyless();
    let verified = verify_bundle(json, None, &signer, authority.transparency_log, trust)
        .map_err(|e| Failure::from_bundle(e, keyless))?;
    // Step 3: a cosign signature statement about D.
    let Content::Dsse { payload_type, payload } = &verified.content else {
        return Err(Failure::unsupported(
            "the bundle holds a message signature, not a cosign image signature statement",
        ));
    };
    let statement = Statement::from_payload(payload_type, payload).map_err(|e| Failure::malformed(e.to_string()))?;
    if statement.predicate_type != COSIGN_SIGN_PREDICATE {
        return Err(Failure::PredicateTypeMismatch {
            expected: COSIGN_SIGN_PREDICATE.to_owned(),
            found: statement.predicate_type.clone(),
        });
    }
    statement_about(&statement, digest)?;
    Ok((verified.identity, verified.signing_key))
}

/// Step 3: the statement has `digest` among its subjects.
pub(crate) fn statement_about(statement: &Statement, digest: &Digest) -> Result<(), Failure> {
    let want = digest_bytes(digest).ok_or_else(|| Failure::unsupported("only sha256 image digests are supported"))?;
    if statement.has_sha256(&want) {
        return Ok(());
    }
    Err(Failure::DigestMismatch {
        expected: digest.to_string(),
        found: statement.first_sha256().map(|d| format!("sha256:{}", super::dsse::hex(&d))),
        statement: true,
    })
}

/// The 32 hash bytes of a sha256 digest.
pub fn digest_bytes(digest: &Digest) -> Option<[u8; 32]> {
    if digest.algorithm() != "sha256" {
        return None;
    }
    super::dsse::decode_sha256(digest.hex())
}
