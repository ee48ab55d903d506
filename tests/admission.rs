//! The router driven with real AdmissionReview JSON for every workload kind, against the
//! example policies in `policies/`.

use crate::common;
mod gate;

use axum::http::StatusCode;
use common::{example_app, fixture, in_namespace, post, review};
use serde_json::{Value, json};

const DIGEST: &str = "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270";

fn message(response: &Value) -> String {
    response["status"]["message"].as_str().unwrap_or_default().to_owned()
}

/// Every image of every workload kind is found, at its own JSON path.
#[tokio::test]
async fn every_workload_kind_is_checked_at_its_paths() {
    let app = example_app();
    let kinds = [
        ("pod-create.json", "spec"),
        ("deployment-create.json", "spec.template.spec"),
        ("replicaset-create.json", "spec.template.spec"),
        ("statefulset-create.json", "spec.template.spec"),
        ("daemonset-create.json", "spec.template.spec"),
        ("job-create.json", "spec.template.spec"),
        ("replicationcontroller-create.json", "spec.template.spec"),
        ("cronjob-create.json", "spec.jobTemplate.spec.template.spec"),
    ];
    for (file, prefix) in kinds {
        let response = review(&app, &fixture(file)).await;
        assert_eq!(response["allowed"], false, "{file}: tags in prod are denied");
        assert_eq!(response["status"]["code"], 403);
        let m = message(&response);
        assert!(m.contains("policy \"prod-require-digest\""), "{file}: {m}");
        for (path, image) in [
            ("initContainers[0]", "docker.io/library/busybox:1.36"),
            ("containers[0]", "ghcr.io/acme/web:v1.4.2"),
            ("containers[1]", "ghcr.io/acme/proxy:v2"),
        ] {
            let expected = format!("image {image} ({prefix}.{path}.image)");
            assert!(m.contains(&expected), "{file}: missing {expected:?} in {m}");
        }
        assert!(m.contains("digest: require"), "{file}: the reason is given: {m}");
    }
}

fn pin_images(mut review: Value, pointer: &str) -> Value {
    let spec = review["request"]["object"].pointer_mut(pointer).expect("pod spec");
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().expect("containers") {
            let image = c["image"].as_str().expect("image").to_owned();
            c["image"] = Value::from(format!("{image}@{DIGEST}"));
        }
    }
    review
}

#[tokio::test]
async fn pinned_images_from_allowed_registries_are_admitted() {
    let app = example_app();
    let pod = pin_images(fixture("pod-create.json"), "/spec");
    let response = review(&app, &pod).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("warnings").is_none());
    let cron = pin_images(fixture("cronjob-create.json"), "/spec/jobTemplate/spec/template/spec");
    assert_eq!(review(&app, &cron).await["allowed"], true);
}

#[tokio::test]
async fn warn_mode_allows_with_a_warning() {
    let app = example_app();
    let response = review(&app, &in_namespace(fixture("deployment-create.json"), "staging")).await;
    assert_eq!(response["allowed"], true);
    let warnings = response["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.as_str().expect("str").contains("staging-digest-warning")));
}

#[tokio::test]
async fn audit_mode_annotates() {
    let app = example_app();
    let mut deployment = in_namespace(fixture("deployment-create.json"), "dev");
    deployment["request"]["object"]["spec"]["template"]["spec"]["containers"][1]["image"] =
        json!("ghcr.io/acme/proxy:latest");
    let response = review(&app, &deployment).await;
    assert_eq!(response["allowed"], true, "{response}");
    let note = response["auditAnnotations"]["audit-latest-tag"].as_str().expect("annotation");
    assert!(note.contains("a container runs a :latest tag"), "{note}");
}

#[tokio::test]
async fn registries_outside_the_allow_list_are_denied_everywhere() {
    let app = example_app();
    let mut pod = in_namespace(fixture("pod-create.json"), "dev");
    pod["request"]["object"]["spec"]["containers"][1]["image"] = json!("docker.io/evil/miner:latest");
    let response = review(&app, &pod).await;
    assert_eq!(response["allowed"], false);
    let m = message(&response);
    assert!(m.contains("allowed-registries") && m.contains("docker.io/evil/miner is not in allowedImages"), "{m}");
    assert!(m.contains("spec.containers[1].image"), "{m}");
    let kube_system = in_namespace(pod, "kube-system");
    assert_eq!(review(&app, &kube_system).await["allowed"], true, "excluded namespace");
}

#[tokio::test]
async fn updates_check_only_new_images() {
    let app = example_app();
    assert_eq!(review(&app, &fixture("deployment-update-replicas.json")).await["allowed"], true);
    let response = review(&app, &fixture("deployment-update-image.json")).await;
    assert_eq!(response["allowed"], false);
    let m = message(&response);
    assert!(m.contains("ghcr.io/acme/web:v1.5.0"), "{m}");
    assert!(!m.contains("busybox"), "unchanged images are not re-checked: {m}");
}

#[tokio::test]
async fn deletes_and_subresources() {
    let app = example_app();
    assert_eq!(review(&app, &fixture("pod-delete.json")).await["allowed"], true);
    assert_eq!(review(&app, &fixture("pod-status.json")).await["allowed"], true);
    assert_eq!(review(&app, &fixture("deployment-scale.json")).await["allowed"], true);
    let response = review(&app, &fixture("pod-ephemeralcontainers.json")).await;
    assert_eq!(response["allowed"], false, "an ephemeral debug container is a new image");
    let m = message(&response);
    assert!(m.contains("docker.io/nicolaka/netshoot:v0.13 (spec.ephemeralContainers[0].image)"), "{m}");
}

#[tokio::test]
async fn resource_rules() {
    let app = example_app();
    let response = review(&app, &fixture("secret-create.json")).await;
    assert_eq!(response["allowed"], false);
    let m = message(&response);
    assert!(m.contains("prod-secrets-from-reconciler") && m.contains("Secret prod/db-credentials"), "{m}");
    assert!(m.contains("written by the GitOps reconciler only"), "{m}");
    assert_eq!(review(&app, &fixture("secret-create-reconciler.json")).await["allowed"], true);
    assert_eq!(review(&app, &in_namespace(fixture("secret-create.json"), "dev")).await["allowed"], true);
}

#[tokio::test]
async fn unknown_kinds_go_to_resource_rules_only() {
    let app = example_app();
    assert_eq!(review(&app, &fixture("configmap-create.json")).await["allowed"], true);
    // A custom resource with a pod template is not a known workload: image policies skip it.
    assert_eq!(review(&app, &fixture("rollout-create.json")).await["allowed"], true);
}

#[tokio::test]
async fn image_references_that_do_not_parse_are_denied_with_the_reason() {
    let app = example_app();
    let mut pod = fixture("pod-create.json");
    pod["request"]["object"]["spec"]["containers"][0]["image"] = json!("ghcr.io/Acme/Web:v1");
    let response = review(&app, &pod).await;
    assert_eq!(response["allowed"], false);
    let m = message(&response);
    assert!(m.contains("\"ghcr.io/Acme/Web:v1\" does not parse"), "{m}");
    assert!(m.contains("lowercase"), "{m}");
}

/// A bad body gets 400 with a clear error naming `want`, and the webhook keeps serving.
async fn bad_input_gets_a_clear_error(body: String, want: &str) {
    let app = example_app();
    let (status, answer) = post(&app, "/validate", body.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:.60}");
    let text = answer.as_str().expect("plain-text error");
    assert!(text.contains(want), "{body:.60} → {text}");
    assert_eq!(review(&app, &fixture("configmap-create.json")).await["allowed"], true, "still serving");
}

/// The Pod review fixture with `edit` applied.
fn edited_review(edit: impl FnOnce(&mut Value)) -> String {
    let mut review = fixture("pod-create.json");
    edit(&mut review);
    review.to_string()
}

macro_rules! bad_input {
    ($($name:ident: $body:expr => $want:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            bad_input_gets_a_clear_error($body, $want).await;
        }
    )*};
}

bad_input! {
    bad_input_not_json: "{not json".to_owned() => "not JSON";
    bad_input_empty_body: String::new() => "not JSON";
    bad_input_not_an_object: "[1,2]".to_owned() => "not an AdmissionReview object";
    bad_input_another_api_version: edited_review(|r| r["apiVersion"] = json!("admission.k8s.io/v1beta1"))
        => "speaks admission.k8s.io/v1";
    bad_input_another_kind: edited_review(|r| r["kind"] = json!("Pod")) => "is not AdmissionReview";
    bad_input_no_uid: edited_review(|r| {
        r["request"].as_object_mut().expect("request").remove("uid");
    }) => "no uid";
    bad_input_no_request: edited_review(|r| {
        r.as_object_mut().expect("review").remove("request");
    }) => "has no request";
    bad_input_unknown_operation: edited_review(|r| r["request"]["operation"] = json!("EXPLODE")) => "malformed";
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = example_app();
    let mut review_json = fixture("configmap-create.json");
    review_json["request"]["object"]["data"]["blob"] = json!("x".repeat(7 * 1024 * 1024));
    let (status, answer) = post(&app, "/validate", review_json.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.as_str().expect("text").contains("6 MiB limit"), "{answer}");
    // Just under the limit is fine.
    review_json["request"]["object"]["data"]["blob"] = json!("x".repeat(5 * 1024 * 1024));
    let (status, _) = post(&app, "/validate", review_json.to_string()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unparseable_timeouts_fall_back_to_the_default() {
    let app = example_app();
    let (status, body) = post(&app, "/validate?timeout=soon", fixture("configmap-create.json").to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true);
}

#[tokio::test]
async fn health_readiness_metrics_and_unknown_routes() {
    use tower::ServiceExt;
    let app = example_app();
    review(&app, &fixture("pod-create.json")).await;
    let get = |uri: &str| axum::http::Request::get(uri).body(axum::body::Body::empty()).expect("request");
    for (uri, want_status, want_text) in [
        ("/healthz", StatusCode::OK, "ok"),
        ("/readyz", StatusCode::OK, "11 policies loaded"),
        (
            "/metrics",
            StatusCode::OK,
            "portcullis_admission_reviews_total{decision=\"denied\",kind=\"Pod\",operation=\"CREATE\"} 1",
        ),
        ("/nope", StatusCode::NOT_FOUND, "POST /validate"),
    ] {
        let response = app.clone().oneshot(get(uri)).await.expect("answer");
        assert_eq!(response.status(), want_status, "{uri}");
        let body = http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(want_text), "{uri}: {text}");
    }
    let response = app.clone().oneshot(get("/validate")).await.expect("answer");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// The built-in check: an object that still carries SOPS ciphertext was applied without being
/// decrypted, and is refused in every namespace unless a ResourcePolicy allows it.
#[tokio::test]
async fn sops_ciphertext_is_refused() {
    let app = example_app();
    let enc = "ENC[AES256_GCM,data:c3VwZXJzZWNyZXQ=,iv:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]";
    let mut secret = in_namespace(fixture("secret-create.json"), "dev");
    secret["request"]["object"]["stringData"] = json!({"password": enc});
    let response = review(&app, &secret).await;
    assert_eq!(response["allowed"], false);
    let m = message(&response);
    assert!(
        m.contains("(built-in: sops-ciphertext)")
            && m.contains("stringData.password")
            && m.contains("portcullis decrypt"),
        "{m}"
    );

    // base64 `data` holding ciphertext, and a whole SOPS document applied as is.
    use base64::Engine as _;
    let mut secret = in_namespace(fixture("secret-create.json"), "dev");
    secret["request"]["object"]["data"] = json!({"password": base64::engine::general_purpose::STANDARD.encode(enc)});
    assert_eq!(review(&app, &secret).await["allowed"], false);
    let mut config = fixture("configmap-create.json");
    config["request"]["object"]["sops"] =
        json!({"mac": enc, "lastmodified": "2026-01-01T00:00:00Z", "version": "3.11.0"});
    assert_eq!(review(&app, &config).await["allowed"], false);

    // A namespace whose objects may carry ciphertext on purpose.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("allow.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: ResourcePolicy\nmetadata: {name: encrypted-backups}\nspec:\n  match: {namespaces: [backups]}\n  sopsCiphertext: allow\n",
    )
    .expect("policy");
    let app = common::app_for(dir.path(), Default::default());
    let mut secret = in_namespace(fixture("secret-create.json"), "backups");
    secret["request"]["object"]["stringData"] = json!({"password": enc});
    assert_eq!(review(&app, &secret).await["allowed"], true);
    assert_eq!(review(&app, &in_namespace(secret, "dev")).await["allowed"], false);
}
