//! The judgement: a pure function of the policy's requirements (resolved when the policies were
//! loaded), the evidence found for one digest, the time and the trust material, to a typed
//! verdict. No I/O happens here: [`super::image`] fetches the evidence and hands it over.
//!
//! Signatures first (steps 1 to 8 per authority and artifact in [`super::cosign`], step 10
//! counting distinct signers in [`super::signers`]), then every attestation requirement (steps
//! 1 to 9 in [`super::attest`]). The steps are numbered in [`super::verdict`].

use std::sync::Arc;

use super::attest::{Checker, check_requirement};
use super::cosign::{AuthorityResult, KeyMaterial, check_authority};
use super::discovery::Evidence;
use super::signers::{SignedBy, distinct_matching, requirement_met};
use super::trust::TrustRoot;
use super::verdict::{AuthorityUnmet, Denial, RequirementNotMet, Satisfied, Unchecked};
use crate::image::{Digest, ImageRef};
use crate::policy::{Authority, ImagePolicy, Require};

/// What an authority is checked with: its key (None for keyless) and trusted root.
#[derive(Debug, Clone)]
pub struct Material<'a> {
    pub authority: &'a Authority,
    pub key: Option<KeyMaterial>,
    pub trust: Arc<TrustRoot>,
}

/// The verdict for one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Every requirement is met, by these.
    Met(Vec<Satisfied>),
    /// Checked, and a requirement is not met.
    Denied(Denial),
    /// A requirement could not be checked (a condition could not be evaluated).
    Unchecked(Unchecked),
}

/// Judge the evidence for `digest` against the policy. `material` has one entry per
/// authority of the policy, in order.
pub fn judge(
    policy: &ImagePolicy,
    image: &ImageRef,
    digest: &Digest,
    evidence: &Evidence,
    material: &[Material<'_>],
    now: chrono::DateTime<chrono::Utc>,
) -> Judgement {
    let mut satisfied = Vec::new();
    if policy.require != Require::None {
        match signatures(policy, digest, evidence, material) {
            Ok(by) => satisfied = by,
            Err(denial) => return Judgement::Denied(denial),
        }
    }
    let checkers: Vec<Checker<'_>> = material
        .iter()
        .map(|m| Checker { authority: m.authority, key: m.key.as_ref(), trust: m.trust.as_ref() })
        .collect();
    let mut unmet = Vec::new();
    for requirement in &policy.attestations {
        match check_requirement(requirement, &checkers, image, digest, evidence, now) {
            Ok(by) => satisfied.push(by),
            Err(why) => unmet.push(*why),
        }
    }
    if unmet.is_empty() {
        Judgement::Met(satisfied)
    } else if unmet.iter().any(super::verdict::AttestationUnmet::could_not_check) {
        Judgement::Unchecked(Unchecked::Conditions(unmet))
    } else {
        Judgement::Denied(Denial::Attestations(unmet))
    }
}

/// Steps 1 to 8 per authority, then step 10: whether the authorities satisfied by distinct
/// signers meet `require`.
fn signatures(
    policy: &ImagePolicy,
    digest: &Digest,
    evidence: &Evidence,
    material: &[Material<'_>],
) -> Result<Vec<Satisfied>, Denial> {
    let mut by_authority: Vec<Vec<SignedBy>> = Vec::new();
    let mut unmet = Vec::new();
    for m in material {
        match check_authority(m.authority, m.key.as_ref(), digest, evidence, &m.trust) {
            AuthorityResult::Satisfied { signers } => by_authority.push(signers),
            AuthorityResult::Unsatisfied { tried } => {
                by_authority.push(Vec::new());
                unmet.push(AuthorityUnmet { authority: m.authority.name.clone(), tried });
            }
        }
    }
    let matching = distinct_matching(&by_authority);
    let satisfied: Vec<Satisfied> = material
        .iter()
        .zip(by_authority.iter().zip(&matching.chosen))
        .filter_map(|(m, (signers, chosen))| {
            let signed = &signers[(*chosen)?];
            Some(Satisfied::Authority {
                authority: m.authority.name.clone(),
                signer: signed.identity.clone(),
                location: signed.location.clone(),
            })
        })
        .collect();
    let total = policy.authorities.len();
    if requirement_met(policy.require, satisfied.len(), total) {
        return Ok(satisfied);
    }
    // Step 1: nothing found at all is its own class (never "wrong signature").
    if evidence.signatures.is_empty() && evidence.bundles.is_empty() {
        return Err(Denial::NoSignatures {
            digest: digest.clone(),
            require: policy.require,
            total,
            looked: evidence.looked.clone(),
        });
    }
    let mut identities: Vec<_> = by_authority.iter().flatten().map(|s| s.identity.clone()).collect();
    identities.sort();
    identities.dedup();
    Err(Denial::RequirementNotMet(Box::new(RequirementNotMet {
        digest: digest.clone(),
        require: policy.require,
        counted: matching.counted(),
        total,
        signers: matching.signers,
        satisfied: material
            .iter()
            .zip(&by_authority)
            .filter(|(_, signers)| !signers.is_empty())
            .map(|(m, _)| m.authority.name.clone())
            .collect(),
        identities,
        unmet,
    })))
}
