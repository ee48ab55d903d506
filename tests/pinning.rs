//! `digest: pin`: `/mutate` rewrites tags to the digest they point at (resolved in a real
//! registry), `/validate` then verifies exactly that digest.

use crate::support;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use portcullis::engine::{Engine, Settings};
use portcullis::policy::cel::CelEnv;
use portcullis::policy::load::LoadStatus;
use portcullis::policy::load::load_text;
use portcullis::server::{AppState, router};
use portcullis::telemetry::Metrics;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use serde_json::{Value, json};
use support::{Kind, Pusher, Signer, TestRegistry};
use tower::ServiceExt;

async fn post(app: &Router, path: &str, body: &Value) -> Value {
    let request = Request::post(path).header("content-type", "application/json").body(Body::from(body.to_string()));
    let response = app.clone().oneshot(request.expect("request")).await.expect("answer");
    assert_eq!(response.status(), 200);
    serde_json::from_slice(&response.into_body().collect().await.expect("body").to_bytes()).expect("json")
}

fn review(images: &[&str]) -> Value {
    let containers: Vec<_> =
        images.iter().enumerate().map(|(i, image)| json!({"name": format!("c{i}"), "image": image})).collect();
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "pin-1", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": "web", "namespace": "prod", "operation": "CREATE", "userInfo": {"username": "dev"},
        "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "prod"},
                   "spec": {"template": {"spec": {"containers": containers}}}}}})
}

#[tokio::test]
async fn tags_are_pinned_then_verified() {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let (digest, _) = push.image("team/app", "v1", "pinned build").await;
    let signer = Signer::new();
    push.sign_legacy("team/app", &digest, &signer).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("release.pub"), signer.public_pem()).expect("key");
    let host = registry.host.clone();
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: pinned}}\nspec:\n  images: ['{host}/team/**']\n  digest: pin\n  authorities:\n    - name: release\n      key: {{publicKeyFile: release.pub}}\n      transparencyLog: skip\n"
    );
    let set = load_text(&text, "p.yaml", dir.path(), &CelEnv::new()).expect("policy");
    let config = RegistryConfig { insecure: vec![host.clone()], ..Default::default() };
    let verifier =
        RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"));
    let engine = Engine::fixed(set, Arc::new(verifier), Settings::default());
    let (_tx, status) = tokio::sync::watch::channel(LoadStatus::default());
    let app = router(AppState { engine: Arc::new(engine), metrics: Arc::new(Metrics::new()), status });

    let tagged = format!("{host}/team/app:v1");
    let body = review(&[&tagged, "docker.io/library/busybox:1.36"]);
    // Unpinned, validation refuses and says why.
    let answer = post(&app, "/validate", &body).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert!(answer["response"]["status"]["message"].as_str().expect("m").contains("the /mutate webhook pins tags"));

    // /mutate pins the tag (and only the image a pin policy applies to).
    let answer = post(&app, "/mutate", &body).await;
    let response = &answer["response"];
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["patchType"], "JSONPatch");
    use base64::Engine as _;
    let patch_bytes =
        base64::engine::general_purpose::STANDARD.decode(response["patch"].as_str().expect("patch")).expect("b64");
    let patch: Value = serde_json::from_slice(&patch_bytes).expect("patch json");
    let pinned = format!("{host}/team/app:v1@{digest}");
    assert_eq!(patch, json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": pinned}]));

    // The API server applies the patch; validation then verifies that exact digest.
    let mut object = body["request"]["object"].clone();
    json_patch::patch(&mut object, &serde_json::from_value::<json_patch::Patch>(patch).expect("patch")).expect("apply");
    let mut patched = body.clone();
    patched["request"]["object"] = object;
    let answer = post(&app, "/validate", &patched).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");

    // A tag that does not exist cannot be pinned: denied (enforce), no patch.
    let missing = review(&[&format!("{host}/team/app:v404")]);
    let answer = post(&app, "/mutate", &missing).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert!(answer["response"].get("patch").is_none());
    let message = answer["response"]["status"]["message"].as_str().expect("m");
    assert!(message.contains("cannot pin the tag to a digest") && message.contains("404"), "{message}");
}

/// A Pod whose container runs `container` and that mounts `volume` as an OCI image volume.
fn pod_with_image_volume(container: &str, volume: &str) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "vol-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "name": "inference", "namespace": "prod", "operation": "CREATE", "userInfo": {"username": "dev"},
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "inference", "namespace": "prod"},
                   "spec": {"containers": [{"name": "server", "image": container,
                                            "volumeMounts": [{"name": "model", "mountPath": "/models"}]}],
                            "volumes": [{"name": "model", "image": {"reference": volume}}]}}}})
}

/// An image volume is verified, pinned and denied like a container image, against the real
/// registry; and an upper-case spelling of the registry host still finds the policy.
#[tokio::test]
async fn an_image_volume_is_verified_and_pinned_like_a_container() {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let (signed, _) = push.image("team/models", "v1", "signed model").await;
    let (unsigned, _) = push.image("team/evil", "v1", "unsigned payload").await;
    let signer = Signer::new();
    push.sign_legacy("team/models", &signed, &signer).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("release.pub"), signer.public_pem()).expect("key");
    let host = registry.host.clone();
    let port = host.rsplit_once(':').expect("port").1.to_owned();
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: models}}\nspec:\n  images: ['{host}/team/**', 'localhost:{port}/team/**']\n  digest: pin\n  authorities:\n    - name: release\n      key: {{publicKeyFile: release.pub}}\n      transparencyLog: skip\n"
    );
    let set = load_text(&text, "p.yaml", dir.path(), &CelEnv::new()).expect("policy");
    let config = RegistryConfig { insecure: vec![host.clone(), format!("localhost:{port}")], ..Default::default() };
    let verifier =
        RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"));
    let engine = Engine::fixed(set, Arc::new(verifier), Settings::default());
    let (_tx, status) = tokio::sync::watch::channel(LoadStatus::default());
    let app = router(AppState { engine: Arc::new(engine), metrics: Arc::new(Metrics::new()), status });
    let good = format!("{host}/team/models@{signed}");

    // An unsigned image mounted as a volume is denied, with the volume's path.
    let body = pod_with_image_volume(&good, &format!("{host}/team/evil@{unsigned}"));
    let answer = post(&app, "/validate", &body).await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().expect("m");
    assert!(message.contains("(spec.volumes[0].image.reference)") && message.contains("team/evil"), "{message}");
    assert!(!message.contains("spec.containers[0]"), "the signed container passes: {message}");

    // Signed, it is admitted.
    assert_eq!(post(&app, "/validate", &pod_with_image_volume(&good, &good)).await["response"]["allowed"], true);

    // /mutate pins a tagged image volume at its own path; validation then verifies that digest.
    let tagged = pod_with_image_volume(&good, &format!("{host}/team/models:v1"));
    let answer = post(&app, "/mutate", &tagged).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    use base64::Engine as _;
    let patch_bytes = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().expect("patch"))
        .expect("b64");
    let patch: Value = serde_json::from_slice(&patch_bytes).expect("patch json");
    let pinned = format!("{host}/team/models:v1@{signed}");
    assert_eq!(patch, json!([{"op": "replace", "path": "/spec/volumes/0/image/reference", "value": pinned}]));

    // The registry host spelt in upper case still finds the policy: unsigned is denied...
    let upper = format!("LOCALHOST:{port}/team/evil@{unsigned}");
    let answer = post(&app, "/validate", &pod_with_image_volume(&good, &upper)).await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().expect("m");
    assert!(message.contains(&format!("policy \"models\": image localhost:{port}/team/evil@")), "{message}");
    // ...and signed is verified through the canonical host.
    let upper_signed = format!("LOCALHOST:{port}/team/models@{signed}");
    let answer = post(&app, "/validate", &pod_with_image_volume(&good, &upper_signed)).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

/// An app over `policy` with the caching verifier the server uses, its caches and registry
/// client reporting to the app's metrics; also the registry-counting inner verifier.
fn cached_app(
    host: &str,
    policy: &str,
    dir: &std::path::Path,
    tag_ttl: std::time::Duration,
) -> (Router, Arc<RegistryVerifier>) {
    use portcullis::verify::cache::CachedVerifier;
    let set = load_text(policy, "p.yaml", dir, &CelEnv::new()).expect("policy");
    let config = RegistryConfig { insecure: vec![host.to_owned()], ..Default::default() };
    let metrics = Arc::new(Metrics::new());
    let inner = Arc::new(RegistryVerifier::new(
        Registry::new(config).expect("registry").with_observer(metrics.clone()),
        TrustRoot::production().expect("root"),
    ));
    let cached = CachedVerifier::new(inner.clone(), std::time::Duration::from_secs(300))
        .with_tag_ttl(tag_ttl)
        .with_observer(metrics.clone());
    let engine = Engine::fixed(set, Arc::new(cached), Settings::default());
    let (_tx, status) = tokio::sync::watch::channel(LoadStatus { policies: 1, ..Default::default() });
    (router(AppState { engine: Arc::new(engine), metrics, status }), inner)
}

fn tag_policy(host: &str) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: tags}}\nspec:\n  images: ['{host}/team/**']\n  digest: allow-tags\n  authorities:\n    - name: release\n      key: {{publicKeyFile: release.pub}}\n      transparencyLog: skip\n"
    )
}

/// A burst of reviews of a NEW tag, 8 containers each, costs the registry what ONE review costs:
/// one resolution and one verification (per-review dedupe, tag cache, single flight).
#[tokio::test]
async fn a_burst_of_reviews_of_a_new_tag_costs_one_verification() {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let signer = Signer::new();
    for repo in ["team/first", "team/burst"] {
        let (digest, _) = push.image(repo, "v1", repo).await;
        push.sign_legacy(repo, &digest, &signer).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("release.pub"), signer.public_pem()).expect("key");
    let host = registry.host.clone();
    let (app, inner) = cached_app(&host, &tag_policy(&host), dir.path(), std::time::Duration::from_secs(30));

    // One review, one container: what one verification of a tag costs.
    let first = format!("{host}/team/first:v1");
    assert_eq!(post(&app, "/validate", &review(&[&first])).await["response"]["allowed"], true);
    let one = inner.registry().requests();
    assert!(one > 0);

    // 20 concurrent reviews of a new tag, 8 containers each.
    let burst = format!("{host}/team/burst:v1");
    let body = review(&[burst.as_str(); 8]);
    let answers = futures_util::future::join_all((0..20).map(|_| post(&app, "/validate", &body))).await;
    assert!(answers.iter().all(|a| a["response"]["allowed"] == true), "{answers:?}");
    let burst_cost = inner.registry().requests() - one;
    assert_eq!(burst_cost, one, "a burst of 20 × 8 of a new tag costs one verification's requests");

    // Warm: no registry request at all.
    let before = inner.registry().requests();
    post(&app, "/validate", &body).await;
    assert_eq!(inner.registry().requests(), before, "a warm tag costs no registry request");
}

/// Within the tag TTL a moved tag still resolves to the digest verified before (the documented
/// trade-off); after it, the new digest is resolved and verified (here: unsigned, denied).
#[tokio::test]
async fn a_moved_tag_is_seen_after_the_tag_ttl() {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let signer = Signer::new();
    let (signed, _) = push.image("team/app", "v1", "signed").await;
    push.sign_legacy("team/app", &signed, &signer).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("release.pub"), signer.public_pem()).expect("key");
    let host = registry.host.clone();
    let ttl = std::time::Duration::from_millis(1500);
    let (app, _) = cached_app(&host, &tag_policy(&host), dir.path(), ttl);
    let body = review(&[&format!("{host}/team/app:v1")]);
    assert_eq!(post(&app, "/validate", &body).await["response"]["allowed"], true);

    // The tag is moved to an unsigned build.
    let (unsigned, _) = push.image("team/app", "v1", "moved, unsigned").await;
    assert_ne!(unsigned, signed);
    assert_eq!(post(&app, "/validate", &body).await["response"]["allowed"], true, "within the TTL");
    tokio::time::sleep(ttl + std::time::Duration::from_millis(200)).await;
    let answer = post(&app, "/validate", &body).await;
    assert_eq!(answer["response"]["allowed"], false, "after the TTL the moved tag is verified: {answer}");
    assert!(answer["response"]["status"]["message"].as_str().expect("m").contains(&unsigned), "{answer}");
}

/// Metrics, the review log line and registry retries, on the same app.
#[path = "pinning/observability.rs"]
mod observability;

/// `/mutate` when the registry is down.
#[path = "pinning/registry_down.rs"]
mod registry_down;
