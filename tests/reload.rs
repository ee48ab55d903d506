//! Hot reload: a policy directory with a broken file keeps serving the last good policies,
//! says so on /readyz and in a metric, and picks up the fix.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use common::{fixture, review};
use portcullis::engine::{Engine, Settings};
use portcullis::policy::load::{self, LoadStatus, PolicyDir};
use portcullis::server::{AppState, router};
use portcullis::telemetry::Metrics;
use portcullis::verify::Unsupported;
use tokio::sync::watch;

const PROD_DIGEST: &str = "\
apiVersion: portcullis.dev/v1alpha1
kind: ImagePolicy
metadata: {name: prod-digest}
spec:
  match: {namespaces: [prod]}
  images: ['**']
";

async fn get(app: &Router, uri: &str) -> String {
    use tower::ServiceExt;
    let request = axum::http::Request::get(uri).body(axum::body::Body::empty()).expect("request");
    let response = app.clone().oneshot(request).await.expect("answer");
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Wait (bounded) until the status satisfies `done`.
async fn wait_for(status: &mut watch::Receiver<LoadStatus>, done: impl Fn(&LoadStatus) -> bool) -> LoadStatus {
    tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| done(s)))
        .await
        .expect("the reloader reacted within 20 s")
        .expect("reloader alive")
        .clone()
}

fn write(dir: &Path, name: &str, text: &str) {
    // Write then rename, as ConfigMap updates and editors do: the reloader never sees half a file.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "prod.yaml", PROD_DIGEST);
    let (_stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let published = load::start(PolicyDir::new(dir.path()), Duration::from_millis(50), async {
        let _ = stop_rx.await;
    })
    .expect("first load");
    let mut status = published.status.clone();
    let engine = Engine::new(published.policies, Arc::new(Unsupported), Settings::default());
    let app =
        router(AppState { engine: Arc::new(engine), metrics: Arc::new(Metrics::new()), status: published.status });

    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], false);
    assert!(get(&app, "/readyz").await.starts_with("ok: 1 policies loaded"));

    // A second, broken file: the reload fails, the old set stays in force.
    write(
        dir.path(),
        "broken.yaml",
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: b}\nspec:\n  imagez: []\n",
    );
    let s = wait_for(&mut status, |s| s.last_error.is_some()).await;
    let error = s.last_error.expect("error");
    assert!(error.contains("broken.yaml:5:") && error.contains("unknown field `imagez`"), "{error}");
    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], false, "still enforcing");
    let ready = get(&app, "/readyz").await;
    assert!(ready.contains("degraded") && ready.contains("broken.yaml"), "{ready}");
    let metrics = get(&app, "/metrics").await;
    assert!(metrics.contains("portcullis_policy_reload_failing 1"), "{metrics}");

    // Fix it: a valid policy that allows the pod's namespace by switching the first to warn.
    std::fs::remove_file(dir.path().join("broken.yaml")).expect("remove");
    write(dir.path(), "prod.yaml", &PROD_DIGEST.replace("spec:\n", "spec:\n  mode: warn\n"));
    wait_for(&mut status, |s| s.last_error.is_none() && s.reloads_ok >= 2).await;
    let response = review(&app, &fixture("pod-create.json")).await;
    assert_eq!(response["allowed"], true, "the fixed set is in force");
    assert!(response["warnings"].as_array().is_some_and(|w| !w.is_empty()));
    assert!(get(&app, "/metrics").await.contains("portcullis_policy_reload_failing 0"));
}

#[tokio::test]
async fn the_first_load_must_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "bad.yaml", "apiVersion: portcullis.dev/v1alpha1\nkind: Nope\n");
    let error =
        load::start(PolicyDir::new(dir.path()), Duration::from_secs(1), std::future::pending()).err().expect("fails");
    assert!(error.to_string().contains("bad.yaml:1: kind \"Nope\" is not a policy kind"), "{error}");
    let missing = PolicyDir::new(dir.path().join("absent")).load().expect_err("missing");
    assert!(missing.to_string().contains("does not exist"), "{missing}");
}

#[tokio::test]
async fn configmap_style_symlinks_and_hidden_entries() {
    // A ConfigMap volume: files are symlinks into a hidden, atomically swapped ..data dir.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("..2026_11_22_10_00_00.000000001");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("prod.yaml"), PROD_DIGEST).expect("write");
    std::os::unix::fs::symlink(&data, dir.path().join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/prod.yaml", dir.path().join("prod.yaml")).expect("symlink");
    let (set, _) = PolicyDir::new(dir.path()).load().expect("loads");
    assert_eq!(set.len(), 1, "the hidden directories are not read twice");
}
