//! `digest: pin`: the mutating side. Tags of images that a `pin` policy applies to are resolved
//! to the digest they point at now, and the reference is rewritten to `name:tag@digest`, so the
//! kubelet runs exactly what was verified at validation. A tag that cannot be resolved is a
//! check that could not be made (denied in `enforce`).

use std::collections::HashMap;

use serde_json::Value;
use tokio::time::Instant;

use super::{Engine, image_object, matching, new_images, pull_context, subject};
use crate::decision::{Decision, Finding, Verdict, decide};
use crate::policy::DigestRule;
use crate::review::Review;
use crate::verify::observe::slow_call;
use crate::verify::verdict::Unchecked;

/// The answer to a `/mutate` review: the decision, and JSON pointers to rewrite.
#[derive(Debug, Clone, Default)]
pub struct Mutation {
    pub decision: Decision,
    /// (JSON pointer of an `image` field, the pinned reference).
    pub pins: Vec<(String, String)>,
}

impl Engine {
    /// Pin the tags that `digest: pin` policies apply to.
    pub async fn mutate(&self, review: &Review, deadline: Instant) -> Mutation {
        if self.settings.own_namespace.is_some() && review.namespace == self.settings.own_namespace {
            return Mutation { decision: Decision::allow(), pins: Vec::new() };
        }
        let Some(object) = image_object(review) else {
            return Mutation { decision: Decision::allow(), pins: Vec::new() };
        };
        let set = self.policies();
        let pull = pull_context(review, object);
        let mut findings = Vec::new();
        let mut pins = Vec::new();
        let mut resolved: HashMap<String, Result<String, Unchecked>> = HashMap::new();
        for image in new_images(review, object) {
            let Ok(reference) = &image.image else { continue };
            if reference.digest().is_some() {
                continue;
            }
            let pinning: Vec<_> =
                matching(&set, review, &image).into_iter().filter(|p| p.digest == DigestRule::Pin).collect();
            if pinning.is_empty() {
                continue;
            }
            let key = reference.to_string();
            if !resolved.contains_key(&key) {
                let outcome =
                    match tokio::time::timeout_at(deadline, self.verifier.resolve(reference, pull.as_ref())).await {
                        Ok(Ok(digest)) => Ok(reference.with_digest(digest).to_string()),
                        Ok(Err(e)) => Err(e),
                        Err(_) => {
                            let slow = slow_call().map_or_else(
                                || "resolving the tag".to_owned(),
                                |call| format!("resolving the tag: {call}"),
                            );
                            Err(Unchecked::Timeout { slow: Some(slow) })
                        }
                    };
                resolved.insert(key.clone(), outcome);
            }
            let subject = subject(&image);
            match &resolved[&key] {
                Ok(pinned) => {
                    pins.push((image.pointer.clone(), pinned.clone()));
                    for policy in pinning {
                        findings.push(Finding::new(&policy.name, policy.mode, &subject, Verdict::Pass));
                    }
                }
                Err(reason) => {
                    // The message and the JSON class come from the same typed reason, as for
                    // verification (a registry error keeps its status).
                    let verdict = Verdict::Error(format!("cannot pin the tag to a digest: {reason}"));
                    for policy in pinning {
                        let finding = Finding::new(&policy.name, policy.mode, &subject, verdict.clone());
                        findings.push(finding.with_failure(Some(reason.to_json())));
                    }
                }
            }
        }
        let decision = decide(findings);
        if !decision.allowed {
            pins.clear();
        }
        Mutation { decision, pins }
    }
}

/// The JSON Patch (RFC 6902) for the pins.
pub fn patch(pins: &[(String, String)]) -> Value {
    Value::Array(
        pins.iter()
            .map(|(pointer, image)| serde_json::json!({"op": "replace", "path": pointer, "value": image}))
            .collect(),
    )
}
