//! Attestations: in-toto statements in DSSE envelopes, from legacy `.att` layers or Sigstore
//! bundle referrers. A requirement is met by ONE statement that is signed by one of the allowed
//! authorities, is about this exact digest, has the required predicateType (read from the signed
//! statement, never from an unsigned annotation) and satisfies every condition.
//!
//! Every check answers with a typed [`Failure`]; the steps are numbered as in [`super::verdict`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::bundle::{Content, Signer, bundle_from_legacy, verify_bundle, verify_raw_signature};
use super::cosign::{COSIGN_SIGN_PREDICATE, KeyMaterial, statement_about};
use super::discovery::{ANN_BUNDLE, ANN_CERTIFICATE, ANN_CHAIN, ANN_TIMESTAMP, Evidence};
use super::dsse::{Statement, pae};
use super::trust::TrustRoot;
use super::verdict::{AttestationFound, AttestationUnmet, Carrier, Failure, Satisfied, Tried};
use crate::image::{Digest, ImageRef};
use crate::policy::{Attestation, Authority, AuthorityKind, TransparencyLog};

/// One verified statement and who signed it.
struct Signed {
    statement: Statement,
    json: Value,
    signer: String,
}

/// An authority with its key material and trusted root, ready to check envelopes.
pub struct Checker<'a> {
    pub authority: &'a Authority,
    pub key: Option<&'a KeyMaterial>,
    pub trust: &'a TrustRoot,
}

/// Check one attestation requirement against everything found for `digest`.
pub fn check_requirement(
    requirement: &Attestation,
    checkers: &[Checker<'_>],
    image: &ImageRef,
    digest: &Digest,
    evidence: &Evidence,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Satisfied, Box<AttestationUnmet>> {
    let mut tried = Vec::new();
    let allowed: Vec<&Checker<'_>> = checkers
        .iter()
        .filter(|c| requirement.authorities.is_empty() || requirement.authorities.contains(&c.authority.name))
        .collect();
    let candidates = evidence
        .attestations
        .iter()
        .map(|l| (&l.location, Envelope::Legacy(l)))
        .chain(evidence.bundles.iter().map(|b| (&b.location, Envelope::Bundle(&b.json))));
    for (location, envelope) in candidates {
        for checker in &allowed {
            let mut fail = |failure| {
                let authority = Some(checker.authority.name.clone());
                tried.push(Tried { location: Some(location.clone()), authority, failure });
            };
            // Steps 2 to 8.
            let signed = match verify_envelope(checker, &envelope, digest) {
                Ok(s) => s,
                Err(failure) => {
                    fail(failure);
                    continue;
                }
            };
            // Step 9: the required predicateType (read from the signed statement).
            if !predicate_matches(&requirement.predicate_type, &signed.statement.predicate_type) {
                if signed.statement.predicate_type != COSIGN_SIGN_PREDICATE {
                    fail(Failure::PredicateTypeMismatch {
                        expected: requirement.predicate_type.clone(),
                        found: signed.statement.predicate_type.clone(),
                    });
                }
                break;
            }
            // Step 9: every condition.
            match conditions_hold(requirement, &signed, image, digest, now) {
                Ok(()) => {
                    return Ok(Satisfied::Attestation {
                        name: requirement.name.clone(),
                        predicate_type: requirement.predicate_type.clone(),
                        signer: signed.signer,
                        location: location.clone(),
                    });
                }
                Err(failure) => {
                    fail(failure);
                    break;
                }
            }
        }
    }
    let found = if tried.is_empty() {
        AttestationFound::Nothing { looked: evidence.looked.clone() }
    } else {
        AttestationFound::Tried(tried)
    };
    Err(Box::new(AttestationUnmet {
        name: requirement.name.clone(),
        predicate_type: requirement.predicate_type.clone(),
        digest: digest.clone(),
        found,
    }))
}

enum Envelope<'a> {
    Legacy(&'a super::discovery::LegacyLayer),
    Bundle(&'a [u8]),
}

/// Verify the envelope's signature with the authority, then read the statement and check that
/// it is about `digest`.
fn verify_envelope(checker: &Checker<'_>, envelope: &Envelope<'_>, digest: &Digest) -> Result<Signed, Failure> {
    let authority = checker.authority;
    // Step 4: the authority's material.
    let pem = match (&authority.kind, checker.key) {
        (AuthorityKind::Key(_), Some(Ok(pem))) => Some(pem.as_str()),
        (AuthorityKind::Key(_), Some(Err(failure))) => return Err(failure.clone()),
        (AuthorityKind::Key(_), None) | (AuthorityKind::Keyless(_) | AuthorityKind::KeylessAny(_), _) => None,
    };
    let signer = super::cosign::signer(authority, pem)?;
    let keyless = signer.is_keyless();
    let (payload_type, payload, signer_name) = match envelope {
        Envelope::Legacy(layer) => {
            if let (Signer::Key { pem }, TransparencyLog::Skip) = (&signer, authority.transparency_log) {
                let (payload_type, payload) = verify_key_only_envelope(pem, &layer.blob)?;
                (payload_type, payload, "key".to_owned())
            } else {
                if keyless && layer.annotation(ANN_CERTIFICATE).is_none() {
                    return Err(Failure::NoCertificate { carrier: Carrier::Attestation });
                }
                // Step 5: a log entry.
                if layer.annotation(ANN_BUNDLE).is_none() && authority.transparency_log != TransparencyLog::Timestamp {
                    return Err(Failure::NoLogEntry { carrier: Carrier::Attestation });
                }
                let bundle = bundle_from_legacy(
                    &layer.blob,
                    "",
                    layer.annotation(ANN_CERTIFICATE),
                    layer.annotation(ANN_CHAIN),
                    layer.annotation(ANN_BUNDLE),
                    layer.annotation(ANN_TIMESTAMP),
                )
                .map_err(|e| Failure::from_bundle(e, keyless))?;
                dsse_content(verify_bundle(&bundle, None, &signer, authority.transparency_log, checker.trust), keyless)?
            }
        }
        Envelope::Bundle(json) => {
            dsse_content(verify_bundle(json, None, &signer, authority.transparency_log, checker.trust), keyless)?
        }
    };
    // Step 3: an in-toto statement about this digest.
    let statement = Statement::from_payload(&payload_type, &payload).map_err(|e| Failure::malformed(e.to_string()))?;
    statement_about(&statement, digest)?;
    let json: Value =
        serde_json::from_slice(&payload).map_err(|e| Failure::malformed(format!("the statement is not JSON: {e}")))?;
    Ok(Signed { statement, json, signer: signer_name })
}

fn dsse_content(
    verified: Result<super::bundle::Verified, super::bundle::BundleError>,
    keyless: bool,
) -> Result<(String, Vec<u8>, String), Failure> {
    let verified = verified.map_err(|e| Failure::from_bundle(e, keyless))?;
    match verified.content {
        Content::Dsse { payload_type, payload } => Ok((payload_type, payload, verified.signer)),
        Content::MessageSignature => Err(Failure::unsupported("a message signature, not an attestation (DSSE)")),
    }
}

/// A legacy DSSE envelope checked with a key alone (`transparencyLog: skip`): steps 2 and 7.
fn verify_key_only_envelope(pem: &str, blob: &[u8]) -> Result<(String, Vec<u8>), Failure> {
    let envelope: Value =
        serde_json::from_slice(blob).map_err(|e| Failure::malformed(format!("the DSSE envelope is not JSON: {e}")))?;
    let payload_type = envelope
        .get("payloadType")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::malformed("the envelope has no payloadType"))?;
    let payload = envelope
        .get("payload")
        .and_then(Value::as_str)
        .and_then(|p| B64.decode(p).ok())
        .ok_or_else(|| Failure::malformed("the envelope payload is not base64"))?;
    let signatures = envelope
        .get("signatures")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::malformed("the envelope has no signatures"))?;
    let data = pae(payload_type, &payload);
    let mut last = Failure::malformed("the envelope has no signatures");
    for signature in signatures {
        let Some(sig) = signature.get("sig").and_then(Value::as_str).and_then(|s| B64.decode(s).ok()) else {
            last = Failure::malformed("a signature is not base64");
            continue;
        };
        match verify_raw_signature(pem, &data, &sig) {
            Ok(()) => return Ok((payload_type.to_owned(), payload)),
            Err(e) => last = Failure::from_bundle(e, false),
        }
    }
    Err(last)
}

/// Step 9: every condition of the requirement, on this statement: a false one is
/// [`Failure::ConditionFailed`], one that cannot be evaluated [`Failure::ConditionError`].
fn conditions_hold(
    requirement: &Attestation,
    signed: &Signed,
    image: &ImageRef,
    digest: &Digest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Failure> {
    let predicate = signed.json.get("predicate").cloned().unwrap_or(Value::Null);
    let image_var = json!({
        "registry": image.registry(),
        "repository": image.repository(),
        "digest": digest.to_string(),
        "reference": image.to_string(),
    });
    let sbom = crate::policy::sbom::variable(&signed.statement.predicate_type, &predicate)
        .map_err(|e| Failure::ConditionError { message: format!("the SBOM cannot be read: {e}") })?;
    let vars = [("predicate", &predicate), ("statement", &signed.json), ("image", &image_var), ("sbom", &sbom)];
    // Bind the (possibly large) documents once for all the conditions.
    let Some(first) = requirement.conditions.first() else {
        return Ok(());
    };
    let bindings =
        first.expression.env().bind(&vars, now).map_err(|e| Failure::ConditionError { message: e.to_string() })?;
    for condition in &requirement.conditions {
        match condition.expression.eval_bool_in(&bindings) {
            Ok(true) => {}
            Ok(false) => {
                let message = condition
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("condition `{}` is false", condition.expression.source()));
                return Err(Failure::ConditionFailed { message });
            }
            Err(e) => return Err(Failure::ConditionError { message: e.to_string() }),
        }
    }
    Ok(())
}

/// Whether a signed predicateType is the required one. SBOM formats are families whose
/// statements may carry the spec version (`https://cyclonedx.org/bom/v1.5`,
/// `https://spdx.dev/Document/v2.3`): those match their family URI. Everything else must be
/// equal (SLSA v0.2 and v1 are different documents).
pub fn predicate_matches(required: &str, found: &str) -> bool {
    const FAMILIES: [&str; 2] = ["https://cyclonedx.org/bom", "https://spdx.dev/Document"];
    if required == found {
        return true;
    }
    FAMILIES.contains(&required)
        && found
            .strip_prefix(required)
            .and_then(|rest| rest.strip_prefix("/v"))
            .is_some_and(|version| !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

#[cfg(test)]
mod tests {
    use super::predicate_matches;

    #[test]
    fn predicate_types() {
        assert!(predicate_matches("https://cyclonedx.org/bom", "https://cyclonedx.org/bom"));
        assert!(predicate_matches("https://cyclonedx.org/bom", "https://cyclonedx.org/bom/v1.5"));
        assert!(predicate_matches("https://spdx.dev/Document", "https://spdx.dev/Document/v2.3"));
        assert!(!predicate_matches("https://cyclonedx.org/bom", "https://cyclonedx.org/bomb"));
        assert!(!predicate_matches("https://cyclonedx.org/bom", "https://cyclonedx.org/bom/v1.5/../x"));
        assert!(!predicate_matches("https://cyclonedx.org/bom/v1.5", "https://cyclonedx.org/bom"));
        assert!(!predicate_matches("https://slsa.dev/provenance/v0.2", "https://slsa.dev/provenance/v1"));
        assert!(!predicate_matches("https://spdx.dev/Document", "https://cyclonedx.org/bom"));
    }
}
