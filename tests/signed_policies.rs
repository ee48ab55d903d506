//! Signed policy sets: `policy sign` writes a detached signature over the directory's canonical
//! content; `verify|serve --require-signed-policies` load only a set whose signature verifies,
//! and a server whose directory changes without a good signature keeps the last good set.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use portcullis::engine::{Engine, Settings};
use portcullis::policy::load::{self, PolicyDir};
use portcullis::policy::signed::Requirement;
use portcullis::server::{AppState, router};
use portcullis::telemetry::Metrics;
use portcullis::verify::Unsupported;

use crate::common::{self, fixture, review};
use crate::reload::{get, wait_for, write};
use crate::support::Signer;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const PROD_DIGEST: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: prod-digest}\nspec:\n  match: {namespaces: [prod]}\n  images: ['**']\n";
const IMAGE: &str = "ghcr.io/acme/app@sha256:0000000000000000000000000000000000000000000000000000000000000001";

/// A policy directory with one policy and a key file, and the test key pair's paths.
struct SignedDir {
    tmp: tempfile::TempDir,
}

impl SignedDir {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("policies");
        std::fs::create_dir_all(dir.join("keys")).expect("mkdir");
        std::fs::write(dir.join("prod.yaml"), PROD_DIGEST).expect("write");
        std::fs::write(dir.join("keys/release.pub"), Signer::new().public_pem()).expect("write");
        let root = common::root();
        std::fs::copy(root.join("policies/tests/keys/release.key"), tmp.path().join("signing.key")).expect("key");
        std::fs::copy(root.join("policies/keys/release.pub"), tmp.path().join("signing.pub")).expect("pub");
        Self { tmp }
    }

    fn dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("policies")
    }

    fn path(&self, name: &str) -> String {
        self.tmp.path().join(name).to_str().expect("utf8").to_owned()
    }

    fn sign(&self) {
        let out = Command::new(BIN)
            .args(["policy", "sign", "--key", &self.path("signing.key"), &self.path("policies")])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// `portcullis verify` of an image in `prod` under the signed directory: (exit code, stderr).
    fn verify(&self, key: &str) -> (Option<i32>, String) {
        let out = Command::new(BIN)
            .args(["verify", "--policies", &self.path("policies"), "--require-signed-policies", key])
            .args(["--namespace", "prod", IMAGE])
            .output()
            .expect("run");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_signed_set_loads_and_one_changed_byte_is_refused() {
    let d = SignedDir::new();
    // Unsigned: refused, saying how to sign.
    let (code, err) = d.verify(&d.path("signing.pub"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not signed") && err.contains("portcullis policy sign"), "{err}");
    d.sign();
    let (code, err) = d.verify(&d.path("signing.pub"));
    assert_eq!(code, Some(0), "a signed set loads: {err}");
    let text = std::fs::read_to_string(d.dir().join("prod.yaml")).expect("read");
    std::fs::write(d.dir().join("prod.yaml"), text.replace("prod]", "prd]")).expect("write");
    let (code, err) = d.verify(&d.path("signing.pub"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("does not match its signature") && err.contains("prod.yaml changed"), "{err}");
}

#[test]
fn a_file_added_or_removed_is_refused() {
    let d = SignedDir::new();
    d.sign();
    std::fs::write(d.dir().join("extra.yaml"), PROD_DIGEST.replace("prod-digest", "extra")).expect("write");
    let (code, err) = d.verify(&d.path("signing.pub"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("extra.yaml added"), "{err}");
    std::fs::remove_file(d.dir().join("extra.yaml")).expect("rm");
    assert_eq!(d.verify(&d.path("signing.pub")).0, Some(0));
    // A key file removed (the policy does not name it, so the set would still load unsigned).
    std::fs::remove_file(d.dir().join("keys/release.pub")).expect("rm");
    let (code, err) = d.verify(&d.path("signing.pub"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("keys/release.pub removed"), "{err}");
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let d = SignedDir::new();
    d.sign();
    std::fs::write(d.tmp.path().join("other.pub"), Signer::new().public_pem()).expect("write");
    let (code, err) = d.verify(&d.path("other.pub"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("does not match its signature"), "{err}");
    // A private key given as the verification key is refused with the reason.
    let (code, err) = d.verify(&d.path("signing.key"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("PRIVATE key"), "{err}");
}

#[test]
fn the_signature_is_a_cosign_blob_signature_over_the_manifest() {
    let d = SignedDir::new();
    d.sign();
    let manifest = std::fs::read_to_string(d.dir().join("policyset.manifest")).expect("manifest");
    assert!(manifest.starts_with("portcullis-policy-set v1\n"), "{manifest}");
    assert!(manifest.contains("  keys/release.pub\n") && manifest.contains("  prod.yaml\n"), "{manifest}");
    // What `cosign verify-blob --key` checks: ECDSA over SHA-256 of the blob, base64 DER.
    use base64::Engine as _;
    let b64 = std::fs::read_to_string(d.dir().join("policyset.sig")).expect("sig");
    let der = base64::engine::general_purpose::STANDARD.decode(b64.trim()).expect("base64");
    std::fs::write(d.tmp.path().join("sig.der"), der).expect("write");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify", &d.path("signing.pub"), "-signature", &d.path("sig.der")])
        .arg(d.dir().join("policyset.manifest"))
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn serve_refuses_to_start_on_a_bad_signature() {
    let d = SignedDir::new();
    d.sign();
    std::fs::write(d.dir().join("prod.yaml"), PROD_DIGEST.replace("prod]", "dev]")).expect("write");
    let mut child = Command::new(BIN)
        .args(["serve", "--policies", &d.path("policies"), "--listen", "127.0.0.1:0"])
        .args(["--require-signed-policies", &d.path("signing.pub")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    // A server that starts anyway is stopped, and the test fails (rather than waiting forever).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started on a policy set whose signature does not verify");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match its signature") && stderr.contains("prod.yaml changed"), "{stderr}");
}

#[tokio::test]
async fn a_reload_with_a_bad_signature_keeps_the_last_good_set() {
    let d = SignedDir::new();
    d.sign();
    let key = Requirement::from_file(&d.tmp.path().join("signing.pub")).expect("key");
    let dir = PolicyDir::new(d.dir()).require_signature(Some(key));
    let published = load::start(dir, Duration::from_millis(50), std::future::pending()).expect("first load");
    let mut status = published.status.clone();
    let engine = Engine::new(published.policies.clone(), Arc::new(Unsupported), Settings::default());
    let app =
        router(AppState { engine: Arc::new(engine), metrics: Arc::new(Metrics::new()), status: published.status });
    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], false, "prod needs digests");

    // An unreviewed edit that would let tags into prod: not signed, not loaded.
    write(&d.dir(), "prod.yaml", &PROD_DIGEST.replace("prod]", "nowhere]"));
    let s = wait_for(&mut status, |s| s.last_error.is_some()).await;
    let error = s.last_error.expect("error");
    assert!(error.contains("does not match its signature") && error.contains("prod.yaml changed"), "{error}");
    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], false, "the signed set stays in force");
    let ready = get(&app, "/readyz").await;
    assert!(ready.contains("degraded") && ready.contains("does not match its signature"), "{ready}");
    assert!(get(&app, "/metrics").await.contains("portcullis_policy_reload_failing 1"));

    // Reviewed and signed: loads.
    d.sign();
    wait_for(&mut status, |s| s.last_error.is_none() && s.reloads_ok >= 2).await;
    assert_eq!(review(&app, &fixture("pod-create.json")).await["allowed"], true, "the newly signed set");
    assert!(get(&app, "/metrics").await.contains("portcullis_policy_reload_failing 0"));
}
