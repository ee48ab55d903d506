//! The latency budget, end to end through `/validate`: requests to one registry host are
//! bounded (`--registry-concurrency`; the wait counts against the review's deadline, and a
//! denial for time names the slow call), and `--last-known-good` admits a digest verified a
//! moment ago while its registry is unreachable, with a warning, never after a failure.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use portcullis::engine::{Engine, Settings};
use portcullis::policy::load::LoadStatus;
use portcullis::server::{AppState, router};
use portcullis::telemetry::Metrics;
use portcullis::verify::cache::CachedVerifier;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use serde_json::{Value, json};

use crate::common::post;
use crate::support::faults::{Fault, FaultProxy, Rule};
use crate::support::{Kind, Pusher, Signer, TestRegistry};

const KEY: &str = "    - name: release\n      key: {publicKeyFile: release.pub}\n      transparencyLog: skip\n";

struct Signed {
    registry: TestRegistry,
    dir: tempfile::TempDir,
    /// `host/team/app@sha256:…`, signed with `release.pub`.
    image: String,
    digest: String,
}

async fn signed() -> Signed {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let signer = Signer::new();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("release.pub"), signer.public_pem()).expect("key");
    let (digest, _) = push.image("team/app", "v1", "the signed build").await;
    push.sign_legacy("team/app", &digest, &signer).await;
    let image = format!("{}/team/app@{digest}", registry.host);
    Signed { registry, dir, image, digest }
}

/// A `/validate` router verifying against `host` (cache TTL 0: every review goes to the
/// registry), with `last_known_good` and `concurrency`.
fn app(
    host: &str,
    dir: &std::path::Path,
    last_known_good: Duration,
    concurrency: Option<usize>,
) -> (Router, Arc<Metrics>) {
    let set = crate::support::signed_policy(host, dir, KEY, "");
    let metrics = Arc::new(Metrics::new());
    let config = RegistryConfig { insecure: vec![host.to_owned()], concurrency, ..Default::default() };
    let registry = Registry::new(config).expect("registry").with_observer(metrics.clone());
    let verifier = RegistryVerifier::new(registry, TrustRoot::production().expect("root"));
    let cached = CachedVerifier::new(Arc::new(verifier), Duration::ZERO)
        .with_last_known_good(last_known_good)
        .with_observer(metrics.clone());
    let engine = Engine::fixed(set, Arc::new(cached), Settings::default());
    let (_tx, status) = tokio::sync::watch::channel(LoadStatus::default());
    (router(AppState { engine: Arc::new(engine), metrics: metrics.clone(), status }), metrics)
}

fn pod(images: &[&str]) -> Value {
    let containers: Vec<Value> =
        images.iter().enumerate().map(|(i, image)| json!({"name": format!("c{i}"), "image": image})).collect();
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "budget", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "p", "namespace": "default", "operation": "CREATE", "userInfo": {"username": "u"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                       "spec": {"containers": containers}}
        }
    })
}

/// `(allowed, message, warnings joined)` of one review.
async fn review(app: &Router, timeout: &str, images: &[&str]) -> (bool, String, String) {
    let (status, body) = post(app, &format!("/validate?timeout={timeout}"), pod(images).to_string()).await;
    assert_eq!(status, 200, "{body}");
    let response = &body["response"];
    let warnings: Vec<&str> =
        response["warnings"].as_array().map(|w| w.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    (
        response["allowed"].as_bool().expect("allowed"),
        response["status"]["message"].as_str().unwrap_or_default().to_owned(),
        warnings.join(" | "),
    )
}

#[tokio::test]
async fn last_known_good_admits_a_verified_digest_while_its_registry_is_down_within_the_window_only() {
    let s = signed().await;
    let window = Duration::from_secs(3);
    let (app, metrics) = app(&s.registry.host, s.dir.path(), window, None);
    let (allowed, message, warnings) = review(&app, "10s", &[&s.image]).await;
    assert!(allowed && warnings.is_empty(), "{message} {warnings}");
    let verified_at = std::time::Instant::now();
    drop(s.registry); // the registry is down from now on

    let (allowed, message, warnings) = review(&app, "10s", &[&s.image]).await;
    assert!(allowed, "inside the window: admitted ({message})");
    assert!(warnings.contains("last known good") && warnings.contains("--last-known-good"), "{warnings}");
    assert!(warnings.contains(&s.digest[..20]), "the warning names the image: {warnings}");
    let text = metrics.render(&LoadStatus::default());
    assert!(text.contains("portcullis_last_known_good_admissions_total 1"), "{text}");

    tokio::time::sleep((verified_at + window + Duration::from_millis(200)).duration_since(std::time::Instant::now()))
        .await;
    let (allowed, message, _) = review(&app, "10s", &[&s.image]).await;
    assert!(!allowed, "past the window: denied");
    assert!(message.contains("registry"), "{message}");
}

#[tokio::test]
async fn without_last_known_good_an_unreachable_registry_denies() {
    let s = signed().await;
    let (app, _) = app(&s.registry.host, s.dir.path(), Duration::ZERO, None);
    assert!(review(&app, "10s", &[&s.image]).await.0);
    drop(s.registry);
    let (allowed, message, warnings) = review(&app, "10s", &[&s.image]).await;
    assert!(!allowed && !warnings.contains("last known good"), "{message} {warnings}");
}

#[tokio::test]
async fn a_digest_whose_last_verification_failed_is_never_admitted_on_last_known_good() {
    let s = signed().await;
    let (app, _) = app(&s.registry.host, s.dir.path(), Duration::from_secs(600), None);
    assert!(review(&app, "10s", &[&s.image]).await.0, "verified first");
    // The signature is replaced by another key's: the next verification is a real failure.
    let push = Pusher::new(&s.registry.host);
    let other = Signer::new();
    let layer = other.signature_layer(Signer::payload(&format!("{}/team/app", s.registry.host), &s.digest));
    push.artifact("team/app", &format!("{}.sig", s.digest.replace(':', "-")), &[layer]).await;
    let (allowed, message, _) = review(&app, "10s", &[&s.image]).await;
    assert!(!allowed, "the wrong signature is a failure: {message}");
    drop(s.registry);
    let (allowed, message, warnings) = review(&app, "10s", &[&s.image]).await;
    assert!(!allowed, "after a failure, an unreachable registry never admits: {message} {warnings}");
    assert!(!warnings.contains("last known good"), "{warnings}");
}

#[tokio::test]
async fn a_full_registry_host_makes_reviews_wait_and_the_denial_names_the_slow_call() {
    let s = signed().await;
    // A second image whose manifest requests hang; the first image's are served.
    let push = Pusher::new(&s.registry.host);
    let (hung, _) = push.image("team/hung", "v1", "a build whose registry hangs").await;
    let rule: Rule = Arc::new(|_, path| path.starts_with("/v2/team/hung/").then_some(Fault::Hang));
    let proxy = FaultProxy::start(&s.registry.host, rule).await;
    let (app, metrics) = app(&proxy.host, s.dir.path(), Duration::ZERO, Some(1));
    let signed_image = s.image.replace(&s.registry.host, &proxy.host);
    assert!(review(&app, "10s", &[&signed_image]).await.0, "a free host verifies");

    let hung_image = format!("{}/team/hung@{hung}", proxy.host);
    let started = tokio::time::Instant::now();
    let later = async {
        // Starts once the hung review holds the host's one slot.
        tokio::time::sleep(Duration::from_millis(200)).await;
        review(&app, "2s", &[&signed_image]).await
    };
    let hung_only = [hung_image.as_str()];
    // The hung review's deadline is later than the other's: the slot stays taken past it.
    let (first, second) = tokio::join!(review(&app, "4s", &hung_only), later);
    assert!(started.elapsed() < Duration::from_secs(5), "the deadline is kept: {:?}", started.elapsed());
    // The hung review holds the host's one slot: its denial names the request that hung …
    assert!(!first.0, "{first:?}");
    assert!(first.1.contains("did not finish before the review deadline"), "{}", first.1);
    assert!(first.1.contains(&format!("http://{}/v2/team/hung/manifests/", proxy.host)), "{}", first.1);
    assert!(first.1.contains("had not ended after") || first.1.contains("got no answer within"), "{}", first.1);
    // … and the other waited for the slot until its deadline, and says so.
    assert!(!second.0, "{second:?} / first: {first:?}");
    assert!(
        second.1.contains(&proxy.host)
            && second.1.contains("1 request slots")
            && second.1.contains("--registry-concurrency"),
        "{}",
        second.1
    );
    let text = metrics.render(&LoadStatus::default());
    let waits = format!("portcullis_registry_queue_wait_seconds_count{{host=\"{}\"}} ", proxy.host);
    let count: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(waits.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no wait recorded: {text}"));
    assert!(count >= 1.0, "{text}");
}
