//! Hot reload: a policy directory with a broken file keeps serving the last good policies,
//! says so on /readyz and in a metric, and picks up the fix.

use crate::common;
use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use common::{fixture, review};
use portcullis::engine::{Engine, Settings};
use portcullis::policy::load::{self, Check, LoadStatus, PolicyDir, Published, Reloader};
use portcullis::review::Review;
use portcullis::server::{AppState, router};
use portcullis::telemetry::Metrics;
use portcullis::verify::Unsupported;
use portcullis::verify::cache::CachedVerifier;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use support::{Kind, Pusher, Signer, TestRegistry};
use tokio::sync::watch;

const PROD_DIGEST: &str = "\
apiVersion: portcullis.dev/v1alpha1
kind: ImagePolicy
metadata: {name: prod-digest}
spec:
  match: {namespaces: [prod]}
  images: ['**']
";

pub(crate) async fn get(app: &Router, uri: &str) -> String {
    use tower::ServiceExt;
    let request = axum::http::Request::get(uri).body(axum::body::Body::empty()).expect("request");
    let response = app.clone().oneshot(request).await.expect("answer");
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Wait (bounded) until the status satisfies `done`.
pub(crate) async fn wait_for(
    status: &mut watch::Receiver<LoadStatus>,
    done: impl Fn(&LoadStatus) -> bool,
) -> LoadStatus {
    tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| done(s)))
        .await
        .expect("the reloader reacted within 20 s")
        .expect("reloader alive")
        .clone()
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) {
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

/// A router over what a loader publishes (signatures cannot be checked: `Unsupported`).
fn app_over(published: &Published) -> Router {
    let engine = Engine::new(published.policies.clone(), Arc::new(Unsupported), Settings::default());
    router(AppState { engine: Arc::new(engine), metrics: Arc::new(Metrics::new()), status: published.status.clone() })
}

fn start(dir: PolicyDir) -> Published {
    load::start(dir, Duration::from_millis(50), std::future::pending()).expect("first load")
}

#[tokio::test]
async fn an_emptied_policy_file_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "prod.yaml", PROD_DIGEST);
    let published = start(PolicyDir::new(dir.path()));
    let (app, mut status) = (app_over(&published), published.status.clone());
    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], false);

    // Truncated in place (an editor or `>` redirection): no policies in it, which is not "allow all".
    std::fs::write(dir.path().join("prod.yaml"), "").expect("truncate");
    let s = wait_for(&mut status, |s| s.last_error.is_some()).await;
    let error = s.last_error.expect("error");
    assert!(error.contains("prod.yaml holds no policy document") && error.contains("delete the file"), "{error}");
    assert_eq!(s.policies, 1);
    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], false, "still enforcing");
    let ready = get(&app, "/readyz").await;
    assert!(ready.contains("degraded") && ready.contains("prod.yaml holds no policy document"), "{ready}");
    assert!(get(&app, "/metrics").await.contains("portcullis_policy_reload_failing 1"));
}

/// A signature policy caught by a check while being written, cut before `authorities:`, is a
/// valid digest-only policy that lets unsigned images in. It must not be served.
#[tokio::test]
async fn a_policy_file_cut_mid_write_is_not_loaded_until_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("release.pub"), Signer::new().public_pem()).expect("key");
    let signed = PROD_DIGEST.replace("spec:\n", "spec:\n  digest: allow-tags\n")
        + "  authorities:\n    - name: release\n      key: {publicKeyFile: release.pub}\n";
    let cut = &signed[..signed.find("  authorities:").expect("authorities")];
    write(dir.path(), "prod.yaml", &signed);
    // Checks are driven by hand here: the same `check` the reload loop runs at every tick.
    let (mut reloader, published) = Reloader::new(PolicyDir::new(dir.path())).expect("first load");
    let app = app_over(&published);
    let denied = review(&app, &fixture("pod-create.json")).await;
    assert_eq!(denied["allowed"], false, "signatures are required (and cannot be checked here)");

    std::fs::write(dir.path().join("prod.yaml"), cut).expect("half written");
    assert_eq!(reloader.check(), Check::Pending);
    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], false, "the cut file is not served");
    let ready = get(&app, "/readyz").await;
    assert!(ready.starts_with("ok: 1 policies loaded; a policy change seen"), "{ready}");
    assert!(get(&app, "/metrics").await.contains("portcullis_policy_change_pending 1"));

    std::fs::write(dir.path().join("prod.yaml"), &signed).expect("written whole");
    assert_eq!(reloader.check(), Check::Unchanged, "back to the served bytes: nothing to load");
    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], false);
    assert!(get(&app, "/metrics").await.contains("portcullis_policy_change_pending 0"));

    // A digest-only policy written on purpose (stable over two checks) does load.
    std::fs::write(dir.path().join("prod.yaml"), cut).expect("write");
    assert_eq!(reloader.check(), Check::Pending);
    assert_eq!(reloader.check(), Check::Reloaded { policies: 1 });
    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], true);
}

#[tokio::test]
async fn a_reload_to_zero_policies_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "prod.yaml", PROD_DIGEST);
    let published = start(PolicyDir::new(dir.path()));
    let (app, mut status) = (app_over(&published), published.status.clone());
    std::fs::remove_file(dir.path().join("prod.yaml")).expect("remove");
    let s = wait_for(&mut status, |s| s.last_error.is_some()).await;
    let error = s.last_error.expect("error");
    assert!(error.contains("no policies at all") && error.contains("--allow-empty-policies"), "{error}");
    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], false, "still enforcing");
    let ready = get(&app, "/readyz").await;
    assert!(ready.contains("degraded") && ready.contains("1 policies"), "{ready}");
    let metrics = get(&app, "/metrics").await;
    assert!(metrics.contains("portcullis_policy_reload_failing 1") && metrics.contains("portcullis_policies_loaded 1"));
}

#[tokio::test]
async fn allow_empty_policies_lets_the_set_go_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "prod.yaml", PROD_DIGEST);
    let published = start(PolicyDir::new(dir.path()).allow_empty(true));
    let (app, mut status) = (app_over(&published), published.status.clone());
    std::fs::remove_file(dir.path().join("prod.yaml")).expect("remove");
    let s = wait_for(&mut status, |s| s.reloads_ok >= 2).await;
    assert_eq!((s.policies, s.last_error), (0, None));
    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], true);
    assert!(get(&app, "/readyz").await.starts_with("ok: 0 policies loaded"));
}

/// A verifier over a real registry, behind the verification cache, as `serve` builds it.
fn cached_verifier(registry: &TestRegistry) -> (Arc<RegistryVerifier>, CachedVerifier) {
    let config = RegistryConfig { insecure: vec![registry.host.clone()], ..Default::default() };
    let verifier = Arc::new(RegistryVerifier::new(
        Registry::new(config).expect("registry"),
        TrustRoot::production().expect("root"),
    ));
    let cached = CachedVerifier::new(verifier.clone(), Duration::from_secs(300));
    (verifier, cached)
}

/// A policy in `dir` whose key lives in another directory (as a mounted Secret would).
fn external_key_policy(dir: &Path, host: &str, key: &Path) {
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: signed}}\nspec:\n  images: ['{host}/**']\n  authorities:\n    - name: release\n      key: {{publicKeyFile: {}}}\n      transparencyLog: skip\n",
        key.display()
    );
    write(dir, "signed.yaml", &text);
}

#[tokio::test]
async fn a_rotated_key_file_outside_the_directory_refuses_cached_signatures() {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let (digest, _) = push.image("team/app", "v1", "rotated").await;
    let old = Signer::new();
    push.sign_legacy("team/app", &digest, &old).await;
    let image = format!("{}/team/app@{digest}", registry.host);

    let (dir, keys) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let key = keys.path().join("release.pub");
    write(keys.path(), "release.pub", &old.public_pem());
    external_key_policy(dir.path(), &registry.host, &key);
    let published = start(PolicyDir::new(dir.path()));
    let mut status = published.status.clone();
    let (verifier, cached) = cached_verifier(&registry);
    let engine = Engine::new(published.policies.clone(), Arc::new(cached), Settings::default());
    let decide = async || {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        engine.review(&Review::for_image(&image, "default"), deadline).await
    };
    assert!(decide().await.allowed);
    let requests = verifier.registry().requests();
    assert!(decide().await.allowed);
    assert_eq!(verifier.registry().requests(), requests, "the second review is answered from the cache");
    // Nothing changed: the checks that run meanwhile load nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status.borrow().reloads_ok, 1, "an unchanged directory and key file are not reloaded");

    // The key is rotated (the old one revoked) outside the policy directory, which is unchanged.
    write(keys.path(), "release.pub", &Signer::new().public_pem());
    wait_for(&mut status, |s| s.reloads_ok >= 2).await;
    let d = decide().await;
    assert!(!d.allowed, "a signature by the revoked key was admitted from the cache: {d:?}");
    let message = d.message.unwrap_or_default();
    assert!(message.contains("authority \"release\"") && message.contains(&digest), "{message}");
}

#[tokio::test]
async fn a_deleted_key_file_keeps_the_loaded_key_until_a_reload_reports_it() {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let (digest, _) = push.image("team/app", "v1", "deleted").await;
    let release = Signer::new();
    push.sign_legacy("team/app", &digest, &release).await;
    let image = format!("{}/team/app@{digest}", registry.host);
    let (dir, keys) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let key = keys.path().join("release.pub");
    write(keys.path(), "release.pub", &release.public_pem());
    external_key_policy(dir.path(), &registry.host, &key);

    // Checked by hand, so the deletion is verified against before any reload runs.
    let (mut reloader, published) = Reloader::new(PolicyDir::new(dir.path())).expect("first load");
    std::fs::remove_file(&key).expect("delete the key");
    let (verifier, _) = cached_verifier(&registry);
    let engine = Engine::new(published.policies.clone(), verifier, Settings::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let d = engine.review(&Review::for_image(&image, "default"), deadline).await;
    assert!(d.allowed, "verification uses the key read at load, not the disk: {d:?}");

    assert_eq!(reloader.check(), Check::Pending);
    let Check::Failed(error) = reloader.check() else { panic!("a missing key file must not load") };
    assert!(error.contains("authority \"release\"") && error.contains("release.pub: cannot read it"), "{error}");
    let app = router(AppState {
        engine: Arc::new(engine),
        metrics: Arc::new(Metrics::new()),
        status: published.status.clone(),
    });
    let ready = get(&app, "/readyz").await;
    assert!(ready.contains("degraded") && ready.contains("release.pub"), "{ready}");
    assert_eq!(published.policies.borrow().len(), 1, "the last good set is kept");
}

#[tokio::test]
async fn a_missing_key_file_fails_the_first_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    external_key_policy(dir.path(), "registry.test", &dir.path().join("absent").join("release.pub"));
    let error =
        load::start(PolicyDir::new(dir.path()), Duration::from_secs(1), std::future::pending()).err().expect("fails");
    let message = error.to_string();
    assert!(
        message.contains("signed.yaml:1: policy \"signed\": authority \"release\": publicKeyFile")
            && message.contains("absent/release.pub: cannot read it"),
        "{message}"
    );
}
