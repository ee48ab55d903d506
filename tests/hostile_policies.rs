//! Hostile policies: a ResourcePolicy rule whose evaluation explodes is stopped by its cost budget
//! and the review's deadline, and decided by the policy's mode (enforce: denied, warn: allowed
//! with a warning), while an ordinary rule of the same set still decides.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, fixture, in_namespace, post};

const EXPLODING: &str = "lists.range(1000).all(a, lists.range(1000).all(b, lists.range(1000).all(c, c >= 0)))";

fn app(mode: &str) -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ResourcePolicy\nmetadata: {{name: exploding}}\nspec:\n  \
         mode: {mode}\n  match: {{namespaces: [dev], kinds: [ConfigMap]}}\n  rules:\n  - expression: \"{EXPLODING}\"\n  \
         - expression: \"object.metadata.name != 'forbidden'\"\n    message: the forbidden name\n"
    );
    std::fs::write(dir.path().join("exploding.yaml"), policy).expect("policy");
    let app = common::app_for(dir.path(), Default::default());
    (dir, app)
}

/// POST the review with a 2 s timeout; the response and how long it took.
async fn decide(app: &axum::Router) -> (Value, Duration) {
    let review = in_namespace(fixture("configmap-create.json"), "dev");
    let started = Instant::now();
    let (_, body) = post(app, "/validate?timeout=2s", review.to_string()).await;
    (body["response"].clone(), started.elapsed())
}

#[tokio::test]
async fn an_exploding_rule_is_denied_in_enforce_within_the_deadline() {
    let (_dir, app) = app("enforce");
    let (response, took) = decide(&app).await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("exploding") && (message.contains("budget") || message.contains("deadline")), "{message}");
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
}

#[tokio::test]
async fn an_exploding_rule_is_a_warning_in_warn_mode() {
    let (_dir, app) = app("warn");
    let (response, took) = decide(&app).await;
    assert_eq!(response["allowed"], true, "{response}");
    let warnings = response["warnings"].to_string();
    assert!(
        warnings.contains("exploding") && (warnings.contains("budget") || warnings.contains("deadline")),
        "{warnings}"
    );
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
}

#[tokio::test]
async fn an_ordinary_rule_beside_it_still_decides() {
    let (_dir, app) = app("warn");
    let mut review = in_namespace(fixture("configmap-create.json"), "dev");
    review["request"]["object"]["metadata"]["name"] = "forbidden".into();
    // Time enough for the budget, not the deadline, to stop the exploding rule.
    let (_, body) = post(&app, "/validate?timeout=30s", review.to_string()).await;
    let warnings = body["response"]["warnings"].to_string();
    assert!(warnings.contains("evaluation budget") && warnings.contains("the forbidden name"), "{body}");
}
