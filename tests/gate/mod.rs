//! How would someone get past the gate? One test per way around it that was found, each named
//! after what it would let through, through the router with real AdmissionReview JSON.

use portcullis::engine::{Settings, Unmatched};
use portcullis::policy::load::PolicyDir;
use serde_json::{Value, json};

use crate::common::{app_for, example_app, fixture, in_namespace, review};

const DIGEST: &str = "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270";

fn message(response: &Value) -> String {
    response["status"]["message"].as_str().unwrap_or_default().to_owned()
}

/// A policy directory with one file.
fn policies(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), text).expect("write policy");
    dir
}

fn require_digest(images: &str) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: pinned-only}}\nspec:\n  \
         images: {images}\n  digest: require\n"
    )
}

/// A Pod in `prod` running one container image.
fn pod_with(image: &str) -> Value {
    let mut pod = fixture("pod-create.json");
    let spec = &mut pod["request"]["object"]["spec"];
    spec.as_object_mut().expect("spec").remove("initContainers");
    spec["containers"] = json!([{"name": "app", "image": image}]);
    pod
}

#[tokio::test]
async fn an_image_volume_is_checked_like_a_container() {
    let app = example_app();
    let pod = fixture("pod-image-volume-create.json");
    let response = review(&app, &pod).await;
    assert_eq!(response["allowed"], false, "a tagged image volume in prod: {response}");
    let m = message(&response);
    assert!(
        m.contains("policy \"prod-require-digest\": image ghcr.io/acme/models:v3 (spec.volumes[1].image.reference)"),
        "{m}"
    );
    assert!(!m.contains("inference"), "the pinned container passes: {m}");

    // Pinned, it is admitted.
    let mut pinned = pod.clone();
    pinned["request"]["object"]["spec"]["volumes"][1]["image"]["reference"] =
        json!(format!("ghcr.io/acme/models:v3@{DIGEST}"));
    assert_eq!(review(&app, &pinned).await["allowed"], true);

    // allowedImages applies to it too.
    let mut evil = in_namespace(pod.clone(), "dev");
    evil["request"]["object"]["spec"]["volumes"][1]["image"]["reference"] = json!("docker.io/evil/models:v1");
    let response = review(&app, &evil).await;
    assert_eq!(response["allowed"], false);
    let m = message(&response);
    assert!(m.contains("docker.io/evil/models is not in allowedImages") && m.contains("spec.volumes[1]"), "{m}");

    // --unmatched-images deny covers it: no policy at all, only the default.
    let empty = tempfile::tempdir().expect("tempdir");
    let deny = app_for(empty.path(), Settings { unmatched: Unmatched::Deny, ..Settings::default() });
    let m = message(&review(&deny, &pinned).await);
    assert!(m.contains("spec.volumes[1].image.reference") && m.contains("no image policy covers"), "{m}");

    // A malformed image volume is denied, not skipped.
    let mut broken = pod;
    broken["request"]["object"]["spec"]["volumes"][1]["image"] = json!({"pullPolicy": "Always"});
    let response = review(&app, &broken).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).contains("spec.volumes[1].image.reference"), "{response}");
}

#[tokio::test]
async fn an_image_volume_in_every_workload_kind_is_checked() {
    let app = example_app();
    for (file, pointer) in [
        ("deployment-create.json", "/spec/template/spec"),
        ("cronjob-create.json", "/spec/jobTemplate/spec/template/spec"),
        ("statefulset-create.json", "/spec/template/spec"),
    ] {
        let mut object = fixture(file);
        let spec = object["request"]["object"].pointer_mut(pointer).expect("pod spec");
        spec["volumes"] = json!([{"name": "m", "image": {"reference": "ghcr.io/acme/models:v9"}}]);
        let m = message(&review(&app, &object).await);
        let path = format!("{}.volumes[0].image.reference", pointer.trim_start_matches('/').replace('/', "."));
        assert!(m.contains(&format!("image ghcr.io/acme/models:v9 ({path})")), "{file}: {m}");
    }
}

#[tokio::test]
async fn an_upper_case_registry_host_matches_the_policy() {
    let dir = policies(&require_digest(r#"["ghcr.io/acme/**", "localhost:5000/**"]"#));
    let app = app_for(dir.path(), Settings::default());
    for (spelling, canonical) in [
        ("GHCR.IO/acme/app:v1", "ghcr.io/acme/app:v1"),
        ("Ghcr.io/acme/app:v1", "ghcr.io/acme/app:v1"),
        ("ghcr.io:443/acme/app:v1", "ghcr.io/acme/app:v1"),
        ("GHCR.io:443/acme/app", "ghcr.io/acme/app:latest"),
        ("LOCALHOST:5000/app:v1", "localhost:5000/app:v1"),
        ("LOCALHOST:5000/app", "localhost:5000/app:latest"),
    ] {
        let response = review(&app, &pod_with(spelling)).await;
        assert_eq!(response["allowed"], false, "{spelling} escaped the policy");
        let m = message(&response);
        assert!(m.contains(&format!("policy \"pinned-only\": image {canonical} ")), "{spelling}: {m}");
    }
    // The same policy written with odd spellings is the same policy.
    let dir = policies(&require_digest(r#"["GHCR.IO:443/acme/**"]"#));
    let app = app_for(dir.path(), Settings::default());
    assert_eq!(review(&app, &pod_with("ghcr.io/acme/app:v1")).await["allowed"], false);
    assert_eq!(review(&app, &pod_with(&format!("ghcr.io/acme/app@{DIGEST}"))).await["allowed"], true);
}

#[tokio::test]
async fn a_host_the_runtime_would_reach_under_another_spelling_is_refused() {
    let dir = policies(&require_digest(r#"["127.0.0.1:5000/**"]"#));
    let app = app_for(dir.path(), Settings::default());
    for (spelling, why) in [
        ("127.1:5000/app", "four decimal octets"),
        ("0x7f.0.0.1:5000/app", "four decimal octets"),
        ("2130706433:5000/app", "four decimal octets"),
        ("0177.0.0.1:5000/app", "four decimal octets"),
        ("ghcr.io./acme/app", "trailing dot"),
        ("gh\u{0441}r.io/acme/app", "punycode"),
    ] {
        let response = review(&app, &pod_with(&format!("{spelling}@{DIGEST}"))).await;
        assert_eq!(response["allowed"], false, "{spelling} was admitted");
        let m = message(&response);
        assert!(m.contains("does not parse") && m.contains(why), "{spelling}: {m}");
    }
}

#[tokio::test]
async fn docker_io_nginx_in_a_policy_protects_nginx() {
    for glob in ["docker.io/nginx", "nginx", "index.docker.io/nginx", "docker.io/library/nginx", "DOCKER.IO/nginx"] {
        let dir = policies(&require_digest(&format!("['{glob}']")));
        let app = app_for(dir.path(), Settings::default());
        for image in ["nginx:latest", "nginx", "docker.io/library/nginx:1.27", "index.docker.io/nginx:1"] {
            let response = review(&app, &pod_with(image)).await;
            assert_eq!(response["allowed"], false, "policy {glob:?} let {image:?} through");
        }
        assert_eq!(review(&app, &pod_with("docker.io/acme/nginx:1")).await["allowed"], true, "{glob}");
    }
}

#[test]
fn a_glob_that_can_never_match_is_a_load_error() {
    let cases = [
        ("images: ['ghcr.io/acme/app:*']", "use ghcr.io/acme/app — images are matched without tag or digest"),
        ("images: ['ghcr.io/acme/app:v1']", "use ghcr.io/acme/app — images are matched without tag or digest"),
        (&format!("images: ['ghcr.io/acme/app@{DIGEST}']"), "tag or digest"),
        ("images: ['ghcr.io/Acme/App']", "use ghcr.io/acme/app"),
        ("images: ['']", "empty"),
        ("images: ['**']\n  excludeImages: ['ghcr.io/acme/app:v1']", "excludeImages"),
        ("images: ['**']\n  allowedImages: ['ghcr.io/acme/*:latest']", "allowedImages"),
    ];
    for (spec, want) in cases {
        let text = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: never}}\nspec:\n  \
             digest: allow-tags\n  {spec}\n"
        );
        let dir = policies(&text);
        let err = PolicyDir::new(dir.path()).load().expect_err(spec).to_string();
        assert!(err.contains("p.yaml:1: policy \"never\"") && err.contains(want), "{spec}: {err}");
    }
}

#[test]
fn github_claims_without_a_ref_are_a_load_error() {
    let authority = |github: &str| {
        format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: gh}}\nspec:\n  \
             images: ['ghcr.io/acme/**']\n  authorities:\n    - name: ci\n      keyless:\n        \
             github: {github}\n"
        )
    };
    let dir = policies(&authority("{repository: acme/app, workflow: .github/workflows/release.yml}"));
    let err = PolicyDir::new(dir.path()).load().expect_err("no ref").to_string();
    assert!(err.contains("github needs ref") && err.contains(r#"ref: "**" accepts every ref"#), "{err}");
    for ok in ["{repository: acme/app, ref: '**'}", "{repository: acme/app, ref: 'refs/tags/v*'}"] {
        let dir = policies(&authority(ok));
        PolicyDir::new(dir.path()).load().unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[tokio::test]
async fn an_object_being_deleted_cannot_swap_an_image_in() {
    let app = example_app();
    let mut update = fixture("deployment-update-replicas.json");
    update["request"]["object"]["metadata"]["deletionTimestamp"] = json!("2026-11-29T10:00:00Z");
    // Removing a finalizer of an object being deleted adds no image: never blocked.
    update["request"]["object"]["metadata"]["finalizers"] = json!([]);
    assert_eq!(review(&app, &update).await["allowed"], true);
    // The same update swapping an unpinned image in is checked.
    update["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("ghcr.io/acme/web:backdoor");
    let response = review(&app, &update).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(message(&response).contains("ghcr.io/acme/web:backdoor"), "{response}");
}

#[tokio::test]
async fn an_update_respelling_an_admitted_image_is_not_new() {
    let app = example_app();
    let mut update = fixture("deployment-update-replicas.json");
    let old = update["request"]["oldObject"]["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .expect("image")
        .to_owned();
    // Written another way, the same canonical image is not new code.
    let respelt = old.replacen("ghcr.io", "GHCR.IO:443", 1);
    assert_ne!(respelt, old);
    update["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] = json!(respelt);
    assert_eq!(review(&app, &update).await["allowed"], true, "{old} → {respelt}");
}

/// Hostile input from whoever can reach the webhook: answered with a clear 400, or decided,
/// never a crash or a pass by accident.
#[tokio::test]
async fn hostile_reviews_are_refused_or_decided() {
    use axum::http::StatusCode;

    use crate::common::post;
    let app = example_app();
    // JSON nested deeper than the parser's limit: 400, the server keeps serving.
    let deep = format!(
        r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"x","x":{}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (status, body) = post(&app, "/validate", deep).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // 10,000 containers: every one is looked at (the last one unpinned in prod is named).
    let mut many = fixture("pod-create.json");
    let containers: Vec<Value> =
        (0..10_000).map(|i| json!({"name": format!("c{i}"), "image": format!("ghcr.io/acme/app@{DIGEST}")})).collect();
    many["request"]["object"]["spec"]["containers"] = Value::Array(containers);
    many["request"]["object"]["spec"]["containers"][9_999]["image"] = json!("ghcr.io/acme/app:unpinned");
    let response = review(&app, &many).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).contains("spec.containers[9999].image"), "{response}");
    // A 100 kB image string and control characters: refused as references, not crashed on.
    for image in ["a".repeat(100_000), "ghcr.io/acme/app\u{0000}:v1".to_owned(), "ghcr.io/acme/\u{202e}ppa".to_owned()]
    {
        let response = review(&app, &pod_with(&image)).await;
        assert_eq!(response["allowed"], false, "{:.40}", image);
        assert!(message(&response).contains("does not parse"), "{response:.300}");
    }
    // Still serving.
    assert_eq!(review(&app, &fixture("configmap-create.json")).await["allowed"], true);
}

/// POST a review given as raw JSON text; its `response`.
async fn review_text(app: &axum::Router, text: String) -> Value {
    let (status, body) = crate::common::post(app, "/validate", text).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body:.300}");
    body["response"].clone()
}

/// Duplicate keys are read as the API server reads them (the last one wins, as in Go's
/// encoding/json): the image decided is the one the API server would store and the kubelet pull.
#[tokio::test]
async fn a_duplicated_image_key_is_decided_on_the_value_the_api_server_keeps() {
    let app = example_app();
    let pinned = format!("ghcr.io/acme/app@{DIGEST}");
    let text = serde_json::to_string(&pod_with(&pinned)).expect("json");
    let field = format!("\"image\":\"{pinned}\"");
    assert!(text.contains(&field), "{text:.300}");
    // Pinned first, a tag last: the tag is what runs, and prod requires digests.
    let tag_last = text.replace(&field, &format!("{field},\"image\":\"ghcr.io/acme/app:unpinned\""));
    let response = review_text(&app, tag_last).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(message(&response).contains("ghcr.io/acme/app:unpinned"), "{response}");
    // A tag first, pinned last: the pinned image is what runs.
    let pinned_last = text.replace(&field, &format!("\"image\":\"ghcr.io/acme/app:unpinned\",{field}"));
    assert_eq!(review_text(&app, pinned_last).await["allowed"], true);
}

/// Unicode and control characters in names, and an UPDATE whose oldObject is megabytes:
/// decided from the new object, never a crash.
#[tokio::test]
async fn unicode_names_and_a_huge_old_object_are_decided() {
    let app = example_app();
    let mut odd = pod_with("ghcr.io/acme/app:unpinned");
    odd["request"]["object"]["metadata"]["name"] = json!("na\u{ef}ve-\u{202e}-\u{0007}-\u{1f600}");
    odd["request"]["name"] = json!("na\u{ef}ve-\u{202e}-\u{0007}-\u{1f600}");
    odd["request"]["object"]["spec"]["containers"][0]["name"] = json!("\u{0000}app\u{feff}");
    let response = review(&app, &odd).await;
    assert_eq!(response["allowed"], false, "still decided on its image: {response}");
    assert!(message(&response).contains("ghcr.io/acme/app:unpinned"), "{response}");

    let mut update = pod_with(&format!("ghcr.io/acme/app@{DIGEST}"));
    update["request"]["operation"] = json!("UPDATE");
    let mut old = update["request"]["object"].clone();
    old["metadata"]["annotations"] = json!({ "big": "x".repeat(4 << 20) });
    old["spec"]["containers"][0]["image"] = json!("ghcr.io/acme/app:old");
    update["request"]["oldObject"] = old;
    assert_eq!(review(&app, &update).await["allowed"], true, "the new object is pinned");
    update["request"]["object"]["spec"]["containers"][0]["image"] = json!("ghcr.io/acme/app:unpinned");
    let response = review(&app, &update).await;
    assert_eq!(response["allowed"], false, "{response:.300}");
}
