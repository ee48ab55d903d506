//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use portcullis::engine::{Engine, Settings};
use portcullis::policy::load::{LoadStatus, PolicyDir};
use portcullis::server::{AppState, router};
use portcullis::telemetry::Metrics;
use portcullis::verify::Unsupported;
use serde_json::Value;
use tokio::sync::watch;

/// The crate root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture AdmissionReview from `tests/fixtures/admission`.
pub fn fixture(name: &str) -> Value {
    let path = root().join("tests/fixtures/admission").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A router over the policies in `dir`, with engine settings.
pub fn app_for(dir: &Path, settings: Settings) -> Router {
    let (set, _) = PolicyDir::new(dir).load().expect("policies load");
    let status = LoadStatus { policies: set.len(), reloads_ok: 1, ..Default::default() };
    let (_tx, status_rx) = watch::channel(status);
    let engine = Engine::fixed(set, Arc::new(Unsupported), settings);
    router(AppState { engine: Arc::new(engine), metrics: Arc::new(Metrics::new()), status: status_rx })
}

/// A router over the example policies in `policies/`.
pub fn example_app() -> Router {
    app_for(&root().join("policies"), Settings::default())
}

/// POST a body to `/validate`; returns the status and the body (JSON if it parses, else a string).
pub async fn post(app: &Router, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    use tower::ServiceExt;
    let request = Request::post(uri).header("content-type", "application/json").body(body.into()).expect("request");
    let response = app.clone().oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// POST a review and return its `response`, checking the envelope the API server checks.
pub async fn review(app: &Router, review: &Value) -> Value {
    let (status, body) = post(app, "/validate?timeout=10s", review.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    let response = body["response"].clone();
    assert_eq!(response["uid"], review["request"]["uid"], "uid is echoed");
    assert!(
        response.get("patch").is_none() && response.get("patchType").is_none(),
        "a validating webhook sends no patch"
    );
    response
}

/// Set the namespace of a review (request and object).
pub fn in_namespace(mut review: Value, ns: &str) -> Value {
    review["request"]["namespace"] = Value::from(ns);
    for key in ["object", "oldObject"] {
        if review["request"][key].is_object() {
            review["request"][key]["metadata"]["namespace"] = Value::from(ns);
        }
    }
    review
}
