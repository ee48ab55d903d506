//! `portcullis verify`, the CI command, against a real registry: exit 0 allowed, 1 denied,
//! 2 could not decide.

use crate::support;

use std::process::Command;

use support::{Kind, Pusher, Signer, TestRegistry};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn verify(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).arg("verify").args(args).output().expect("run portcullis verify");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_messages() {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let (digest, _) = push.image("team/app", "v1", "ci build").await;
    let release = Signer::new();
    push.sign_legacy("team/app", &digest, &release).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("release.pub");
    std::fs::write(&key, release.public_pem()).expect("key");
    let other = dir.path().join("other.pub");
    std::fs::write(&other, Signer::new().public_pem()).expect("key");
    let image = format!("{}/team/app:v1", registry.host);
    let host = registry.host.as_str();
    let key = key.to_str().expect("utf8");

    let (code, out, err) = verify(&[&image, "--key", key, "--insecure-ignore-tlog", "--insecure-registry", host]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("allowed: {image}")), "{out}");

    let (code, out, _) = verify(&[
        &image,
        "--key",
        other.to_str().expect("utf8"),
        "--insecure-ignore-tlog",
        "--insecure-registry",
        host,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL") && out.contains(&digest) && out.contains("denied"), "{out}");

    let missing = format!("{}/team/missing:v1", registry.host);
    let (code, out, _) = verify(&[&missing, "--key", key, "--insecure-ignore-tlog", "--insecure-registry", host]);
    assert_eq!(code, Some(2), "a registry error is not a denial: {out}");
    assert!(out.contains("ERR") && out.contains("404") && out.contains("could not decide"), "{out}");

    // A key file that cannot be read stops the command before anything is fetched (exit 2).
    let absent = dir.path().join("absent.pub");
    let absent = absent.to_str().expect("utf8");
    let (code, out, err) = verify(&[&image, "--key", absent, "--insecure-ignore-tlog", "--insecure-registry", host]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.is_empty() && err.contains("--key") && err.contains("absent.pub: cannot read it"), "{out}{err}");

    // The cluster's policies: the same engine decides.
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(dir.path().join("release.pub"), policies.join("release.pub")).expect("copy");
    std::fs::write(
        policies.join("signed.yaml"),
        format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: ci-signed}}\nspec:\n  match: {{namespaces: [prod]}}\n  images: ['{host}/**']\n  digest: require\n  authorities:\n    - name: release\n      key: {{publicKeyFile: release.pub}}\n      transparencyLog: skip\n"
        ),
    )
    .expect("policy");
    let pinned = format!("{}/team/app@{digest}", registry.host);
    let dir_arg = policies.to_str().expect("utf8");
    let (code, out, err) = verify(&[&pinned, "--policy", dir_arg, "--namespace", "prod", "--insecure-registry", host]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.matches("ok   policy \"ci-signed\"").count(), 1, "one line per policy and image: {out}");
    // `--policies`, as `serve` spells it, is the same flag.
    let (code, out, err) =
        verify(&[&pinned, "--policies", dir_arg, "--namespace", "prod", "--insecure-registry", host]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("allowed"), "{out}");
    let (code, out, _) = verify(&[&image, "--policy", dir_arg, "--namespace", "prod", "--insecure-registry", host]);
    assert_eq!(code, Some(1), "digest: require denies the tag: {out}");
    assert!(out.contains("ci-signed") && out.contains("no digest"), "{out}");
    // A namespace no policy covers: allowed, as the server allows unmatched images by default,
    // and said so (nothing was verified); denied with the server's other default.
    let (code, out, _) = verify(&[&pinned, "--policy", dir_arg, "--namespace", "dev", "--insecure-registry", host]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no image policy matches; allowed (--unmatched-images allow"), "{out}");
    let (code, out, _) = verify(&[
        &pinned,
        "--policy",
        dir_arg,
        "--namespace",
        "dev",
        "--unmatched-images",
        "deny",
        "--insecure-registry",
        host,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no image policy covers this image"), "{out}");

    // Manifests: the same answers for the objects that run the image.
    let manifests = dir.path().join("app.yaml");
    std::fs::write(
        &manifests,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: pinned, namespace: prod}}\nspec:\n  template:\n    spec:\n      containers: [{{name: a, image: '{pinned}'}}]\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {{name: tagged, namespace: prod}}\nspec:\n  template:\n    spec:\n      containers: [{{name: a, image: '{image}'}}]\n"
        ),
    )
    .expect("manifests");
    let file_arg = manifests.to_str().expect("utf8");
    let (code, out, err) =
        verify(&["-f", file_arg, "--policies", dir_arg, "--insecure-registry", host, "-o", "github"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("allowed: Deployment prod/pinned") && out.contains("denied: Job prod/tagged"), "{out}");
    assert!(out.contains(&format!("::error file={file_arg},line=9,")), "{out}");

    // Attestations: a signed CycloneDX SBOM is there, an SPDX one is not.
    let sbom = support::statement(&digest, "https://cyclonedx.org/bom", serde_json::json!({"components": []}), true);
    push.attest_legacy("team/app", &digest, vec![(release.envelope(&sbom), "https://cyclonedx.org/bom".into())]).await;
    let base = [image.as_str(), "--key", key, "--insecure-ignore-tlog", "--insecure-registry", host];
    let (code, out, err) = verify(&[&base[..], &["--attestation", "cyclonedx"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = verify(&[&base[..], &["--attestation", "cyclonedx", "--attestation", "spdx"]].concat());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("attestation \"spdx\" (https://spdx.dev/Document) not satisfied"), "{out}");
    let (code, _, err) = verify(&[&base[..], &["--attestation", "nonsense"]].concat());
    assert_eq!(code, Some(2));
    assert!(err.contains("neither a known short name nor a URI"), "{err}");

    // Nothing to verify against (no flags, and no ./policies where it runs).
    let empty = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN).args(["verify", &image]).current_dir(empty.path()).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("pass --key, --certificate-identity[-regexp] or --policies DIR"), "{err}");
}

/// Run the daemonless image build (build/oci-image.py) on the test binary: (manifest digest or
/// pushed reference, stderr).
fn build_image(out: &std::path::Path, push: Option<&str>) -> (String, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("debs");
    let mut command = Command::new("python3");
    command
        .arg(root.join("build/oci-image.py"))
        .args(["--binary", BIN, "--out", out.to_str().expect("utf8"), "--deb-cache", cache.to_str().expect("utf8")])
        .args(["--revision", "0000000000000000000000000000000000000000", "--source", "https://example.com/portcullis"]);
    if let Some(reference) = push {
        command.args(["--push", reference, "--plain-http"]);
    }
    let done = command.output().expect("run python3 build/oci-image.py");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&done.stdout).trim().to_owned(), String::from_utf8_lossy(&done.stderr).into_owned());
    assert!(done.status.success(), "image build failed: {stderr}");
    (stdout, stderr)
}

/// `chroot` into `rootfs` as the image's user and run the binary, with the image's environment.
fn chroot(rootfs: &std::path::Path, env: &[(String, String)], args: &[&str]) -> Command {
    let mut command = Command::new("/usr/sbin/chroot");
    command
        .arg("--userspec=65532:65532")
        .arg(rootfs)
        .arg("/usr/local/bin/portcullis")
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_is_built_pushed_runs_in_chroot_and_verifies_itself() {
    use std::io::{BufRead as _, BufReader};
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test runs the image with chroot, which needs root (the test command runs as root)"
    );
    let registry = TestRegistry::start(Kind::Distribution).await;
    let host = registry.host.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = "portcullis-dev/portcullis";

    // Build and push; a second build of the same inputs is the same image.
    let (pushed, log) = build_image(&dir.path().join("oci"), Some(&format!("{host}/{repo}:test")));
    eprintln!("{log}{pushed}");
    let digest = pushed.strip_prefix(&format!("{host}/{repo}@")).expect("REPOSITORY@DIGEST printed").to_owned();
    let (again, _) = build_image(&dir.path().join("oci-again"), None);
    assert_eq!(again, digest, "the build is reproducible");

    // Pull: the manifest by tag is the one printed, the config is the one documented.
    let push = Pusher::new(&host);
    let manifest = push.get_manifest(repo, "test").await.expect("pushed manifest");
    assert_eq!(support::sha256(&manifest), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    let http = reqwest::Client::new();
    let blob = |digest: String| {
        let (http, host) = (http.clone(), host.clone());
        async move {
            let r = http.get(format!("http://{host}/v2/{repo}/blobs/{digest}")).send().await.expect("blob");
            assert!(r.status().is_success(), "{digest}: {}", r.status());
            r.bytes().await.expect("bytes").to_vec()
        }
    };
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().expect("config").to_owned()).await)
            .expect("config json");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/usr/local/bin/portcullis"]));
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert!(labels["org.opencontainers.image.base.name"].as_str().expect("base").contains("libc6="));
    let env: Vec<(String, String)> = config["config"]["Env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e.as_str()?.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();

    // Unpack each layer into its own directory and into the full rootfs.
    let rootfs = dir.path().join("rootfs");
    let binary_only = dir.path().join("binary-only");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "runtime + binary");
    for (i, layer) in layers.iter().enumerate() {
        let file = dir.path().join(format!("layer{i}.tar.gz"));
        std::fs::write(&file, blob(layer["digest"].as_str().expect("digest").to_owned()).await).expect("write");
        let targets = if i == 1 { vec![&rootfs, &binary_only] } else { vec![&rootfs] };
        for target in targets {
            std::fs::create_dir_all(target).expect("mkdir");
            let status = Command::new("tar").arg("-xzf").arg(&file).arg("-C").arg(target).status().expect("tar");
            assert!(status.success());
        }
    }
    assert!(!rootfs.join("bin/sh").exists() && !rootfs.join("usr/bin").exists(), "no shell, no tools in the image");

    // The binary runs from the image's files alone, as user 65532 ...
    let out = chroot(&rootfs, &env, &["--version"]).output().expect("chroot");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("portcullis {}", env!("CARGO_PKG_VERSION")));
    // ... and not without the runtime layer (what the chroot run proves is the image's content).
    let out = chroot(&binary_only, &env, &["--version"]).output().expect("chroot");
    assert!(!out.status.success(), "the binary cannot run without libc from the runtime layer");

    // `serve` in the image answers /healthz.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    std::fs::create_dir_all(rootfs.join("tmp/policies")).expect("mkdir");
    std::fs::set_permissions(rootfs.join("tmp/policies"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let listen = format!("127.0.0.1:{port}");
    let mut child = chroot(
        &rootfs,
        &env,
        &["serve", "--listen", &listen, "--policies", "/tmp/policies", "--write-ca", "/tmp/ca.crt"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("chroot serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut logs = Vec::new();
    while !logs.iter().any(|l: &String| l.contains("portcullis is serving")) {
        assert!(std::time::Instant::now() < deadline, "serve did not start in the image: {logs:#?}");
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            logs.push(line);
        }
    }
    let ca = std::fs::read(rootfs.join("tmp/ca.crt")).expect("CA written inside the image");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
        .build()
        .expect("client");
    let health = client.get(format!("https://localhost:{port}/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "ok\n");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    assert!(status.success(), "{status:?}");

    // Dogfooding: sign the pushed image, and `portcullis verify` admits it under the shipped
    // policies/portcullis-self.yaml (its image name pointed at the test registry, its key
    // replaced by the test signer's: the rest of the policy is as shipped).
    let signer = Signer::new();
    push.sign_legacy(repo, &digest, &signer).await;
    let shipped =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/portcullis-self.yaml"))
            .expect("shipped policy");
    assert!(shipped.contains("ghcr.io/portcullis-dev/portcullis") && shipped.contains("keys/portcullis-release.pub"));
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(policies.join("keys")).expect("mkdir");
    std::fs::write(
        policies.join("portcullis-self.yaml"),
        shipped.replace("ghcr.io/portcullis-dev/portcullis", &format!("{host}/{repo}")),
    )
    .expect("policy");
    let key = policies.join("keys/portcullis-release.pub");
    std::fs::write(&key, signer.public_pem()).expect("key");
    let policy_arg = policies.to_str().expect("utf8");
    let pinned = format!("{host}/{repo}@{digest}");
    let (code, out, err) =
        verify(&[&pinned, "--policy", policy_arg, "--namespace", "portcullis", "--insecure-registry", &host]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("allowed") && out.contains("portcullis-self"), "{out}");
    eprintln!("{out}");
    // How one would get past it: by tag (digest: require), or signed by another key.
    let tagged = format!("{host}/{repo}:test");
    let (code, out, _) =
        verify(&[&tagged, "--policy", policy_arg, "--namespace", "portcullis", "--insecure-registry", &host]);
    assert_eq!(code, Some(1), "{out}");
    std::fs::write(&key, Signer::new().public_pem()).expect("key");
    let (code, out, _) =
        verify(&[&pinned, "--policy", policy_arg, "--namespace", "portcullis", "--insecure-registry", &host]);
    assert_eq!(code, Some(1), "a signature by another key is not the release key's: {out}");
    assert!(out.contains("portcullis-self"), "{out}");
}

fn verify_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).arg("verify").args(args).envs(env.iter().copied()).output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--max-platforms` (PORTCULLIS_MAX_PLATFORMS) bounds `platforms: every-platform`: an index
/// with more platforms is denied, saying so; never partly checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_platforms_flag() {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let release = Signer::new();
    let (amd64, amd64_raw) = push.image("team/multi", "amd64", "amd64").await;
    let (arm64, arm64_raw) = push.image("team/multi", "arm64", "arm64").await;
    let platforms =
        [(amd64.clone(), amd64_raw.len(), "linux", "amd64"), (arm64.clone(), arm64_raw.len(), "linux", "arm64")];
    let index = push.index("team/multi", "v1", &platforms).await;
    for digest in [&index, &amd64, &arm64] {
        push.sign_legacy("team/multi", digest, &release).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("release.pub"), release.public_pem()).expect("key");
    let host = registry.host.as_str();
    std::fs::write(
        dir.path().join("every.yaml"),
        format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: every}}\nspec:\n  images: ['{host}/**']\n  digest: allow-tags\n  platforms: every-platform\n  authorities:\n    - name: release\n      key: {{publicKeyFile: release.pub}}\n      transparencyLog: skip\n"
        ),
    )
    .expect("policy");
    let image = format!("{host}/team/multi:v1");
    let policy = dir.path().to_str().expect("utf8");
    let base = [image.as_str(), "--policy", policy, "--insecure-registry", host];

    let (code, out, err) = verify(&base);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = verify(&[&base[..], &["--max-platforms", "1"]].concat());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("2 platform manifests, more than the 1 checked") && out.contains("--max-platforms"), "{out}");
    let (code, out, _) = verify_env(&base, &[("PORTCULLIS_MAX_PLATFORMS", "1")]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out, err) = verify(&[&base[..], &["--max-platforms", "2"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = verify(&[&base[..], &["--max-platforms", "0"]].concat());
    assert_eq!(code, Some(2), "{err}");
}

fn verify_attestation(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).arg("verify-attestation").args(args).output().expect("run portcullis");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `verify-attestation`: an image that is attested but NOT signed (`cosign attest` only) verifies
/// from CI, on a legacy `.att` tag and as a cosign OCI 1.1 referrer; `verify --attestation` still
/// also demands an image signature.
async fn verify_attestation_command(kind: Kind) {
    use serde_json::json;
    use support::{COSIGN_ATT, CosignReferrer, DSSE, statement};
    const CYCLONEDX: &str = "https://cyclonedx.org/bom";
    let registry = TestRegistry::start(kind).await;
    let host = registry.host.as_str();
    let push = Pusher::new(host);
    let release = Signer::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("release.pub");
    std::fs::write(&key, release.public_pem()).expect("key");
    let other = dir.path().join("other.pub");
    std::fs::write(&other, Signer::new().public_pem()).expect("key");
    let (key, other) = (key.to_str().expect("utf8"), other.to_str().expect("utf8"));
    let sbom = json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [{"name": "openssl", "version": "3.0.13"}]});

    // Attested on the legacy .att tag, not signed.
    let (digest, _) = push.image("team/attested", "v1", "attested").await;
    let envelope = release.envelope(&statement(&digest, CYCLONEDX, sbom.clone(), false));
    push.attest_legacy("team/attested", &digest, vec![(envelope, CYCLONEDX.to_owned())]).await;
    // Attested as a cosign OCI 1.1 referrer, not signed.
    let (referred, raw) = push.image("team/attested", "v2", "attested as a referrer").await;
    let layer = (
        release.envelope(&statement(&referred, CYCLONEDX, sbom, false)),
        DSSE,
        json!({"dev.cosignproject.cosign/signature": "", "predicateType": CYCLONEDX}),
    );
    push.cosign_referrer("team/attested", &referred, &raw, CosignReferrer::ConfigMediaType(COSIGN_ATT), &[layer]).await;

    let base = ["--key", key, "--insecure-ignore-tlog", "--insecure-registry", host];
    for tag in ["v1", "v2"] {
        let image = format!("{host}/team/attested:{tag}");
        let run = |extra: &[&str]| {
            let mut args = vec![image.as_str()];
            args.extend(base);
            args.extend(extra);
            verify_attestation(&args)
        };
        let (code, out, err) = run(&["--type", "cyclonedx"]);
        assert_eq!(code, Some(0), "{tag}: {out}{err}");
        assert!(out.contains(&format!("verified: {image}")), "{out}");
        // Conditions, repeatable: all must hold.
        let has = "predicate.components.exists(c, c.name == 'openssl')";
        let (code, out, err) =
            run(&["--type", "cyclonedx", "--condition", has, "--condition", "size(predicate.components) == 1"]);
        assert_eq!(code, Some(0), "{tag}: {out}{err}");
        let (code, out, _) =
            run(&["--type", "cyclonedx", "--condition", has, "--condition", "size(predicate.components) > 1"]);
        assert_eq!(code, Some(1), "{tag}: {out}");
        assert!(out.contains("condition failed") && out.contains("denied"), "{out}");
        // Another predicate type, another key: denied.
        let (code, out, _) = run(&["--type", "spdxjson"]);
        assert_eq!(code, Some(1), "{tag}: {out}");
        let (code, out, _) = verify_attestation(&[
            &image,
            "--type",
            "cyclonedx",
            "--key",
            other,
            "--insecure-ignore-tlog",
            "--insecure-registry",
            host,
        ]);
        assert_eq!(code, Some(1), "{tag}: {out}");
        // The log entry is required unless --insecure-ignore-tlog.
        let (code, out, _) =
            verify_attestation(&[&image, "--type", "cyclonedx", "--key", key, "--insecure-registry", host]);
        assert_eq!(code, Some(1), "{tag}: {out}");
        assert!(out.contains("transparency log"), "{out}");
        // `verify --attestation` keeps its meaning: the image must also be signed.
        let (code, out, _) = verify(&[
            &image,
            "--attestation",
            "cyclonedx",
            "--key",
            key,
            "--insecure-ignore-tlog",
            "--insecure-registry",
            host,
        ]);
        assert_eq!(code, Some(1), "{tag}: {out}");
        assert!(out.contains("no signatures found"), "{out}");
    }
    // A bad condition or flags: exit 2 before anything is fetched.
    let image = format!("{host}/team/attested:v1");
    let (code, out, err) = verify_attestation(&[
        &image,
        "--type",
        "cyclonedx",
        "--condition",
        "predicate.(",
        "--key",
        key,
        "--insecure-registry",
        host,
    ]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("--condition"), "{err}");
    let (code, _, err) =
        verify_attestation(&[&image, "--type", "no-such-type", "--key", key, "--insecure-registry", host]);
    assert_eq!(code, Some(2), "{err}");
    // A registry error is not a denial.
    let missing = format!("{host}/team/missing:v1");
    let (code, out, _) =
        verify_attestation(&[&missing, "--type", "cyclonedx", "--key", key, "--insecure-registry", host]);
    assert_eq!(code, Some(2), "{out}");
}

crate::on_both_registries!(verify_attestation_command: verify_attestation_command_docker_distribution, verify_attestation_command_ferro);

/// `verify-attestation` keyless: a keyless attestation bundle (not signed as an image), with
/// `--certificate-identity[-regexp]` and `--certificate-oidc-issuer[-regexp]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_attestation_keyless_flags() {
    use support::sigstore::{MiniSigstore, Tamper, Validity};
    use support::{BUNDLE_V03, statement};
    let registry = TestRegistry::start(Kind::Ferro).await;
    let host = registry.host.as_str();
    let push = Pusher::new(host);
    let sigstore = MiniSigstore::new("cli");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = sigstore.write_trusted_root(dir.path(), "root.json");
    let root = root.to_str().expect("utf8");
    let signer = sigstore.issue("release@example.com", "https://accounts.example.com", None, Validity::fulcio());
    let (digest, raw) = push.image("team/keyless", "v1", "keyless attested").await;
    let sbom = statement(&digest, "https://cyclonedx.org/bom", serde_json::json!({"components": []}), false);
    push.referrer(
        "team/keyless",
        &digest,
        &raw,
        BUNDLE_V03,
        &sigstore.bundle_for_statement(&signer, &sbom, &Tamper::default()),
    )
    .await;
    let image = format!("{host}/team/keyless:v1");
    let run = |identity: &[&str]| {
        let mut args = vec![image.as_str(), "--type", "cyclonedx", "--trusted-root", root, "--insecure-registry", host];
        args.extend(identity);
        verify_attestation(&args)
    };
    let ok: [&[&str]; 3] = [
        &["--certificate-identity", "release@example.com", "--certificate-oidc-issuer", "https://accounts.example.com"],
        &[
            "--certificate-identity-regexp",
            "release@.*",
            "--certificate-oidc-issuer-regexp",
            "https://accounts\\.example\\.(com|org)",
        ],
        &["--certificate-identity", "release@example.com", "--certificate-oidc-issuer-regexp", "https://.*"],
    ];
    for identity in ok {
        let (code, out, err) = run(identity);
        assert_eq!(code, Some(0), "{identity:?}: {out}{err}");
    }
    let denied: [&[&str]; 3] = [
        &["--certificate-identity", "ops@example.com", "--certificate-oidc-issuer", "https://accounts.example.com"],
        &[
            "--certificate-identity",
            "release@example.com",
            "--certificate-oidc-issuer-regexp",
            "https://accounts\\.example",
        ],
        &["--certificate-identity-regexp", "release", "--certificate-oidc-issuer", "https://accounts.example.com"],
    ];
    for identity in denied {
        let (code, out, err) = run(identity);
        assert_eq!(code, Some(1), "{identity:?}: {out}{err}");
    }
    // An identity without an issuer, or both issuer forms: bad flags (exit 2).
    let (code, _, err) = run(&["--certificate-identity", "release@example.com"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = run(&[
        "--certificate-identity",
        "release@example.com",
        "--certificate-oidc-issuer",
        "https://accounts.example.com",
        "--certificate-oidc-issuer-regexp",
        ".*",
    ]);
    assert_eq!(code, Some(2), "{err}");
}

/// `verify-attestation` with cosign's GitHub workflow flags: typed claims from the Fulcio
/// certificate extensions, each one able to refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_attestation_github_claims() {
    use support::sigstore::{GITHUB_ISSUER, GithubClaims, MiniSigstore, Tamper};
    use support::{BUNDLE_V03, statement};
    let registry = TestRegistry::start(Kind::Distribution).await;
    let host = registry.host.as_str();
    let push = Pusher::new(host);
    let sigstore = MiniSigstore::new("gh");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = sigstore.write_trusted_root(dir.path(), "root.json");
    let root = root.to_str().expect("utf8");
    let claims = GithubClaims::new("acme/app", ".github/workflows/release.yml", "refs/tags/v1.2.3");
    let signer = sigstore.issue_github(&claims);
    let (digest, raw) = push.image("acme/app", "v1", "github attested").await;
    let provenance = statement(&digest, "https://slsa.dev/provenance/v1", serde_json::json!({}), false);
    push.referrer(
        "acme/app",
        &digest,
        &raw,
        BUNDLE_V03,
        &sigstore.bundle_for_statement(&signer, &provenance, &Tamper::default()),
    )
    .await;
    let image = format!("{host}/acme/app:v1");
    let run = |extra: &[&str]| {
        let mut args = vec![
            image.as_str(),
            "--type",
            "slsaprovenance1",
            "--trusted-root",
            root,
            "--insecure-registry",
            host,
            "--certificate-identity-regexp",
            "https://github\\.com/acme/app/.*",
            "--certificate-oidc-issuer",
            GITHUB_ISSUER,
        ];
        args.extend(extra);
        verify_attestation(&args)
    };
    let sha = claims.sha.clone();
    let ok: [&[&str]; 5] = [
        &[],
        &["--certificate-github-workflow-repository", "acme/app", "--certificate-github-workflow-name", "release"],
        &["--certificate-claim", "sourceRepositoryRef=refs/tags/v1.2.3", "--certificate-claim", "buildTrigger=push"],
        &[
            "--certificate-github-workflow-repository",
            "acme/app",
            "--certificate-github-workflow-ref",
            "refs/tags/v1.2.3",
        ],
        &[
            "--certificate-github-workflow-repository",
            "acme/app",
            "--certificate-github-workflow-sha",
            &sha,
            "--certificate-github-workflow-trigger",
            "push",
        ],
    ];
    for extra in ok {
        let (code, out, err) = run(extra);
        assert_eq!(code, Some(0), "{extra:?}: {out}{err}");
    }
    let denied: [(&[&str], &str); 6] = [
        (&["--certificate-github-workflow-repository", "acme/other"], "acme/other"),
        (
            &["--certificate-github-workflow-repository", "acme/app", "--certificate-github-workflow-name", "ci"],
            "githubWorkflowName ci",
        ),
        (&["--certificate-claim", "buildTrigger=workflow_dispatch"], "buildTrigger workflow_dispatch"),
        (
            &[
                "--certificate-github-workflow-repository",
                "acme/app",
                "--certificate-github-workflow-ref",
                "refs/heads/main",
            ],
            "ref",
        ),
        (
            &[
                "--certificate-github-workflow-repository",
                "acme/app",
                "--certificate-github-workflow-sha",
                "0000000000000000000000000000000000000000",
            ],
            "commit",
        ),
        (
            &[
                "--certificate-github-workflow-repository",
                "acme/app",
                "--certificate-github-workflow-trigger",
                "workflow_dispatch",
            ],
            "trigger",
        ),
    ];
    for (extra, needle) in denied {
        let (code, out, err) = run(extra);
        assert_eq!(code, Some(1), "{extra:?}: {out}{err}");
        assert!(out.contains(needle), "{needle}: {out}");
    }
    // A claim flag without the repository is a flag error.
    let (code, _, err) = run(&["--certificate-github-workflow-ref", "refs/tags/v1.2.3"]);
    assert_eq!(code, Some(2), "{err}");
}

/// `verify --certificate-claim`: Fulcio claims of a non-GitHub issuer (a GitLab pipeline) decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_certificate_claim_flags() {
    use support::BUNDLE_V03;
    use support::sigstore::{IssueOptions, MiniSigstore};
    let registry = TestRegistry::start(Kind::Distribution).await;
    let host = registry.host.as_str();
    let push = Pusher::new(host);
    let sigstore = MiniSigstore::new("gitlab");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = sigstore.write_trusted_root(dir.path(), "root.json");
    let root = root.to_str().expect("utf8");
    let san = "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main";
    let claims = vec![(12, "https://gitlab.com/acme/app".to_owned()), (14, "refs/heads/main".to_owned())];
    let options = IssueOptions { claims, ..IssueOptions::default() };
    let signer = sigstore.issue_with(san, "https://gitlab.com", None, &options);
    let (digest, raw) = push.image("acme/app", "v1", "gitlab signed").await;
    push.referrer("acme/app", &digest, &raw, BUNDLE_V03, &sigstore.signature_bundle(&signer, &digest)).await;
    let image = format!("{host}/acme/app:v1");
    let run = |claim: &str| {
        let args = [
            image.as_str(),
            "--trusted-root",
            root,
            "--insecure-registry",
            host,
            "--certificate-oidc-issuer",
            "https://gitlab.com",
            "--certificate-claim",
            "sourceRepositoryURI=https://gitlab.com/acme/app",
            "--certificate-claim",
            claim,
        ];
        verify(&args)
    };
    let (code, out, err) = run("sourceRepositoryRef=refs/heads/main");
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run("sourceRepositoryRefRegExp=refs/tags/v.*");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("sourceRepositoryRef matching regexp") && out.contains("refs/heads/main"), "{out}");
    let (code, _, err) = run("sourceRepo=x");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a Fulcio certificate claim"), "{err}");
}

/// `--output json` carries the typed failure class of each finding, the same verdict the text
/// and the webhook message are rendered from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_names_the_failure_class() {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let (digest, _) = push.image("team/app", "v1", "ci build").await;
    push.image("team/unsigned", "v1", "unsigned build").await;
    let release = Signer::new();
    push.sign_legacy("team/app", &digest, &release).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("release.pub");
    std::fs::write(&key, release.public_pem()).expect("key");
    let other = dir.path().join("other.pub");
    std::fs::write(&other, Signer::new().public_pem()).expect("key");
    let host = registry.host.as_str();
    let run = |image: &str, key: &std::path::Path| -> (Option<i32>, serde_json::Value) {
        let image = format!("{host}/{image}");
        let key = key.to_str().expect("utf8");
        let (code, out, err) =
            verify(&[&image, "--key", key, "--insecure-ignore-tlog", "--insecure-registry", host, "-o", "json"]);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        (code, json["objects"][0]["findings"][0].clone())
    };

    let (code, finding) = run("team/app:v1", &key);
    assert_eq!((code, &finding["failure"]), (Some(0), &serde_json::Value::Null), "{finding}");

    // Signed by another key: the requirement is not met, and the artifact's class is wrong-key.
    let (code, finding) = run("team/app:v1", &other);
    assert_eq!(code, Some(1), "{finding}");
    let failure = &finding["failure"];
    assert_eq!(failure["class"], "requirement-not-met", "{finding}");
    assert_eq!((failure["counted"].as_u64(), failure["total"].as_u64()), (Some(0), Some(1)), "{finding}");
    assert_eq!(failure["digest"], digest.as_str(), "{finding}");
    let tried = &failure["authorities"][0]["tried"][0];
    assert_eq!(tried["class"], "wrong-key", "{finding}");
    assert_eq!(tried["location"]["kind"], "tag", "{finding}");
    assert_eq!(tried["location"]["tag"], format!("{}.sig", digest.replace(':', "-")), "{finding}");
    assert!(finding["message"].as_str().is_some_and(|m| m.contains("bad signature")), "{finding}");

    // Nothing at all: no-signatures, never a wrong signature.
    let (code, finding) = run("team/unsigned:v1", &key);
    assert_eq!((code, &finding["failure"]["class"]), (Some(1), &serde_json::json!("no-signatures")), "{finding}");

    // Could not check (the tag does not resolve): exit 2, a could-not-check class, not a denial.
    let (code, finding) = run("team/missing:v1", &key);
    assert_eq!((code, finding["result"].as_str()), (Some(2), Some("error")), "{finding}");
    assert_eq!(finding["failure"]["class"], "registry-error", "{finding}");
    assert_eq!(finding["failure"]["status"], 404, "{finding}");
    assert!(finding["failure"]["detail"].as_str().is_some_and(|d| d.contains("404")), "{finding}");
}

/// Tags on a registry that answers 503, 401 or 404.
#[path = "verify_cli/tag_errors.rs"]
mod tag_errors;
