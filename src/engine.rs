//! The engine: one review → findings → one decision.
//!
//! extract images → match policies → check digests, allowed images and CEL rules → verify
//! signatures concurrently under the review's deadline → [`decide`]. The webhook, the CLI and
//! the tests all go through [`Engine::review`], so a decision in CI is the decision at admission.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::decision::{Decision, Finding, Verdict, decide};
use crate::image::ImageRef;
use crate::policy::{DigestRule, ImagePolicy, Mode, PolicySet, ResourcePolicy, SopsCiphertext, matcher};
use crate::review::Review;
use crate::verify::pull_secrets::PullContext;
use crate::verify::verdict::Unchecked;
use crate::verify::{Outcome, Verifier, VerifyRequest};
use crate::workload::{self, WorkloadImage};

/// What happens to an image that no policy matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Unmatched {
    /// Allow it (policies are opt-in).
    #[default]
    Allow,
    /// Deny it (every image must be covered by a policy).
    Deny,
}

/// Engine settings that are not policies.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Requests in this namespace are always allowed, so the gate never locks itself out.
    pub own_namespace: Option<String>,
    /// What to do with images no policy matches.
    pub unmatched: Unmatched,
}

/// The name findings of the unmatched-image default carry.
pub const DEFAULT_POLICY: &str = "(default: --unmatched-images deny)";

/// Evaluates reviews against the current policy set.
pub struct Engine {
    policies: watch::Receiver<Arc<PolicySet>>,
    verifier: Arc<dyn Verifier>,
    settings: Settings,
}

impl Engine {
    pub fn new(policies: watch::Receiver<Arc<PolicySet>>, verifier: Arc<dyn Verifier>, settings: Settings) -> Self {
        Self { policies, verifier, settings }
    }

    /// An engine over a fixed policy set (CLI and tests).
    pub fn fixed(set: PolicySet, verifier: Arc<dyn Verifier>, settings: Settings) -> Self {
        let (_tx, rx) = watch::channel(Arc::new(set));
        Self::new(rx, verifier, settings)
    }

    /// The policy set in force now.
    pub fn policies(&self) -> Arc<PolicySet> {
        Arc::clone(&self.policies.borrow())
    }

    /// Decide one review; checks that do not finish by `deadline` become errors.
    pub async fn review(&self, review: &Review, deadline: Instant) -> Decision {
        if self.settings.own_namespace.is_some() && review.namespace == self.settings.own_namespace {
            return Decision::allow();
        }
        let set = self.policies();
        let mut findings = resource_findings(&set.resources, review, deadline);
        findings.extend(sops_findings(&set.resources, review));
        findings.extend(self.image_findings(&set, review, deadline).await);
        decide(findings)
    }

    async fn image_findings(&self, set: &PolicySet, review: &Review, deadline: Instant) -> Vec<Finding> {
        let Some(object) = image_object(review) else {
            return Vec::new();
        };
        let images = new_images(review, object);
        let mut findings = Vec::new();
        let mut verifications = Vec::new();
        for image in &images {
            let subject = subject(image);
            let matched = matching(set, review, image);
            if matched.is_empty() {
                if self.settings.unmatched == Unmatched::Deny {
                    let why = match &image.image {
                        Ok(_) => "no image policy covers this image, and the server denies unmatched images".to_owned(),
                        Err(e) => format!("the image reference {:?} does not parse: {e}", image.raw),
                    };
                    findings.push(Finding::new(DEFAULT_POLICY, Mode::Enforce, subject, Verdict::Fail(why)));
                }
                continue;
            }
            for policy in matched {
                let reference = match &image.image {
                    Ok(r) => r,
                    Err(e) => {
                        let why = format!("the image reference {:?} does not parse: {e}", image.raw);
                        findings.push(Finding::new(&policy.name, policy.mode, &subject, Verdict::Fail(why)));
                        continue;
                    }
                };
                let static_verdict = static_checks(policy, reference);
                // One finding per policy and image: the verification's when one runs (it
                // passes only if the static checks did), else the static checks'.
                if policy.needs_verification() && static_verdict == Verdict::Pass {
                    verifications.push((policy, reference, subject.clone()));
                } else {
                    findings.push(Finding::new(&policy.name, policy.mode, &subject, static_verdict));
                }
            }
        }
        let verifier = &self.verifier;
        let pull = pull_context(review, object);
        let pull = pull.as_ref();
        // The same image under the same policy (several containers, init containers and image
        // volumes of one object) is verified once; every place it appears gets the verdict.
        // (Indexed, not searched: an object may carry thousands of containers.)
        let mut unique: Vec<(&ImagePolicy, &ImageRef, Vec<String>)> = Vec::new();
        let mut index: HashMap<(usize, &ImageRef), usize> = HashMap::new();
        for (policy, image, subject) in verifications {
            match index.entry((std::ptr::from_ref(policy).addr(), image)) {
                Entry::Occupied(at) => unique[*at.get()].2.push(subject),
                Entry::Vacant(slot) => {
                    slot.insert(unique.len());
                    unique.push((policy, image, vec![subject]));
                }
            }
        }
        let checks = unique.into_iter().map(|(policy, image, subjects)| async move {
            let request = VerifyRequest { image, policy, pull };
            let outcome = tokio::time::timeout_at(deadline, verifier.verify(request)).await.unwrap_or_else(|_| {
                Outcome::Error { reason: Unchecked::Timeout { slow: crate::verify::observe::slow_call() } }
            });
            // The message and the JSON class are rendered from the same typed verdict.
            let (verdict, failure) = match outcome {
                Outcome::Verified { .. } => (Verdict::Pass, None),
                Outcome::Failed { reason } => (Verdict::Fail(reason.to_string()), Some(reason.to_json())),
                Outcome::Error { reason } => (Verdict::Error(reason.to_string()), Some(reason.to_json())),
            };
            subjects
                .into_iter()
                .map(|subject| {
                    Finding::new(&policy.name, policy.mode, subject, verdict.clone()).with_failure(failure.clone())
                })
                .collect::<Vec<_>>()
        });
        findings.extend(join_all(checks).await.into_iter().flatten());
        findings
    }
}

/// The images of `object` that this request adds: all of them on CREATE; on UPDATE only those
/// not already in the old object, compared by canonical name (images already admitted are not
/// new code, so status, label or finalizer updates of running workloads are never blocked by a
/// newer policy). Every image the new object has that the old one had not is checked, whatever
/// else the update does (also when the object is being deleted).
fn new_images(review: &Review, object: &Value) -> Vec<WorkloadImage> {
    let mut images = workload::images(&review.kind.group, &review.kind.kind, object);
    if review.operation == "UPDATE" {
        let key = |i: &WorkloadImage| match &i.image {
            Ok(r) => r.to_string(),
            Err(_) => format!("unparsed:{}", i.raw),
        };
        let old: HashSet<String> = review
            .old_object
            .as_ref()
            .map(|o| workload::images(&review.kind.group, &review.kind.kind, o))
            .unwrap_or_default()
            .iter()
            .map(key)
            .collect();
        images.retain(|i| !old.contains(&key(i)));
    }
    images
}

/// The image policies that apply to `image` in this request (all that select the request, if
/// the reference does not parse).
fn matching<'s>(set: &'s PolicySet, review: &Review, image: &WorkloadImage) -> Vec<&'s ImagePolicy> {
    set.images
        .iter()
        .filter(|p| p.selector.selects(review.namespace.as_deref(), &review.kind.kind, &review.operation))
        .filter(|p| image.image.as_ref().map_or(true, |r| p.applies_to(r)))
        .collect()
}

/// The object whose images image policies check, if this request can add images at all.
fn image_object(review: &Review) -> Option<&Value> {
    if !matches!(review.operation.as_str(), "CREATE" | "UPDATE") {
        return None;
    }
    // Subresources cannot change images, except ephemeral containers added to a Pod.
    match review.sub_resource.as_deref() {
        None | Some("ephemeralcontainers") => {}
        Some(_) => return None,
    }
    // Objects being deleted are NOT exempt: an UPDATE that removes a finalizer adds no image and
    // so is never blocked (see `new_images`), but one that also swaps an image in is checked.
    review.object.as_ref()
}

/// The namespace, imagePullSecrets and service account of the workload's pod spec.
fn pull_context(review: &Review, object: &Value) -> Option<PullContext> {
    let spec = object.pointer(workload::pod_spec_pointer(&review.kind.group, &review.kind.kind)?)?;
    Some(PullContext::from_pod_spec(review.namespace.as_deref()?, spec))
}

/// How findings about an image name it: `image CANONICAL (FIELD PATH)`.
pub fn subject(image: &WorkloadImage) -> String {
    match &image.image {
        Ok(r) => format!("image {r} ({})", image.field_path()),
        Err(_) => format!("image {:?} ({})", image.raw, image.field_path()),
    }
}

/// The checks that need no registry: allowed images and the digest rule.
fn static_checks(policy: &ImagePolicy, image: &ImageRef) -> Verdict {
    if let Some(allowed) = &policy.allowed_images
        && !matcher::any_matches(allowed, &image.name())
    {
        let list: Vec<_> = allowed.iter().map(|g| g.as_str()).collect();
        return Verdict::Fail(format!("{} is not in allowedImages {list:?}", image.name()));
    }
    match (policy.digest, image.digest()) {
        (_, Some(_)) | (DigestRule::AllowTags, None) => Verdict::Pass,
        (DigestRule::Require, None) => Verdict::Fail(
            "the reference has no digest and the policy has `digest: require`; \
             reference the image by digest (image@sha256:…)"
                .to_owned(),
        ),
        (DigestRule::Pin, None) => Verdict::Fail(
            "the reference has no digest and the policy has `digest: pin`: the /mutate webhook pins tags \
             to digests before validation; register it (the Helm chart does) or reference the image by digest"
                .to_owned(),
        ),
    }
}

/// The name findings of the built-in SOPS check carry.
pub const SOPS_CHECK: &str = "(built-in: sops-ciphertext)";

/// The built-in check: an object created or updated with SOPS metadata or `ENC[AES256_GCM,…]`
/// values was applied without being decrypted; storing it would store ciphertext as if it were
/// the Secret. Switched off for the objects of a ResourcePolicy with `sopsCiphertext: allow`.
fn sops_findings(policies: &[ResourcePolicy], review: &Review) -> Vec<Finding> {
    if !matches!(review.operation.as_str(), "CREATE" | "UPDATE") {
        return Vec::new();
    }
    let Some(object) = review.object.as_ref() else {
        return Vec::new();
    };
    let allowed = policies.iter().any(|p| {
        p.sops_ciphertext == Some(SopsCiphertext::Allow)
            && p.selector.selects(review.namespace.as_deref(), &review.kind.kind, &review.operation)
    });
    if allowed {
        return Vec::new();
    }
    match crate::sops::detect::find_ciphertext(object) {
        None => Vec::new(),
        Some(where_) => vec![Finding::new(
            SOPS_CHECK,
            Mode::Enforce,
            review.describe(),
            Verdict::Fail(format!(
                "{where_}; decrypt it with `portcullis decrypt` in the reconciler before applying \
                 (or set sopsCiphertext: allow in a ResourcePolicy for these objects)"
            )),
        )],
    }
}

/// Every ResourcePolicy rule that applies to the request; a rule still running at `deadline`
/// (or past its cost budget) is an error.
fn resource_findings(policies: &[ResourcePolicy], review: &Review, deadline: Instant) -> Vec<Finding> {
    let null = Value::Null;
    let object = review.object.as_ref().unwrap_or(&null);
    let old_object = review.old_object.as_ref().unwrap_or(&null);
    let vars = [("object", object), ("oldObject", old_object), ("request", &review.request)];
    let subject = review.describe();
    let mut findings = Vec::new();
    // The objects are converted to CEL values once per review (they can be megabytes), not once
    // per rule; every policy of a set shares one CEL environment.
    let mut bindings = None;
    for policy in policies {
        if !policy.selector.selects(review.namespace.as_deref(), &review.kind.kind, &review.operation) {
            continue;
        }
        for rule in &policy.rules {
            if bindings.is_none() {
                bindings = Some(
                    rule.expression
                        .env()
                        .bind(&vars, crate::verify::observe::review_time())
                        .map(|b| b.with_deadline(deadline.into_std())),
                );
            }
            let evaluated = match &bindings {
                Some(Ok(bound)) => rule.expression.eval_bool_in(bound),
                Some(Err(e)) => Err(e.clone()),
                None => rule.expression.eval_bool(&vars),
            };
            let verdict = match evaluated {
                Ok(true) => Verdict::Pass,
                Ok(false) => Verdict::Fail(
                    rule.message.clone().unwrap_or_else(|| format!("rule `{}` is false", rule.expression.source())),
                ),
                Err(e) => Verdict::Error(e.to_string()),
            };
            findings.push(Finding::new(&policy.name, policy.mode, &subject, verdict));
        }
    }
    findings
}

mod mutate;
pub use mutate::{Mutation, patch};

#[cfg(test)]
mod tests;
