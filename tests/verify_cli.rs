//! `portcullis verify`, the CI command, against a real registry: exit 0 allowed, 1 denied,
//! 2 could not decide.

mod support;

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
    let (code, out, _) = verify(&[&image, "--policy", dir_arg, "--namespace", "prod", "--insecure-registry", host]);
    assert_eq!(code, Some(1), "digest: require denies the tag: {out}");
    assert!(out.contains("ci-signed") && out.contains("no digest"), "{out}");
    // A namespace no policy covers: the CLI denies unmatched images (nothing was verified).
    let (code, out, _) = verify(&[&pinned, "--policy", dir_arg, "--namespace", "dev", "--insecure-registry", host]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no image policy covers this image"), "{out}");

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

    let (code, _, err) = verify(&[&image]);
    assert_eq!(code, Some(2));
    assert!(err.contains("pass --key, --certificate-identity[-regexp] or --policy"), "{err}");
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
