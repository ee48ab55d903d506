//! The README's CI recipes (section "CI: `portcullis verify`"), run as written: every
//! `portcullis` command of the GitHub Actions and GitLab CI jobs is read from README.md and run
//! against a local registry (plus `--insecure-registry HOST:PORT`: the registry speaks plain
//! HTTP). cosign, docker and kustomize are not run; the image is pushed and signed in cosign's
//! format by the test support instead.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common;
use crate::support::{Kind, Pusher, Signer, TestRegistry};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// The `portcullis …` commands of the recipes, continuation lines joined, as argument lists
/// (and whether the README pipes the manifests to it on stdin).
fn recipe_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(common::root().join("README.md")).expect("README.md");
    let start = readme.find("A GitHub Actions job that signs the image").expect("the CI recipes");
    let end = start + readme[start..].find("\n## ").expect("the end of the section");
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in readme[start..end].lines() {
        let line = line.trim();
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        let whole = std::mem::take(&mut pending) + line;
        let Some(at) = whole.find("portcullis verify").or_else(|| whole.find("portcullis policy")) else {
            continue;
        };
        let command = whole[at + "portcullis ".len()..].split(" > ").next().unwrap_or_default();
        commands.push(command.split_whitespace().map(str::to_owned).collect());
    }
    commands
}

fn run(args: &[String], dir: &Path, extra: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .args(extra)
        .current_dir(dir)
        .env("RUNNER_TEMP", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app, namespace: prod}}\nspec:\n  template:\n    \
         spec:\n      containers:\n        - name: app\n          image: {image}\n"
    )
}

#[tokio::test]
async fn the_readme_ci_recipes_run_as_written() {
    let commands = recipe_commands();
    let verify: Vec<&Vec<String>> = commands.iter().filter(|c| c[0] == "verify").collect();
    let policy: Vec<&Vec<String>> = commands.iter().filter(|c| c[0] == "policy").collect();
    assert_eq!(verify.len(), 2, "the GitHub and GitLab verify commands: {commands:?}");
    assert!(verify.iter().any(|c| c.windows(2).any(|w| w == ["--output", "github"])), "{verify:?}");
    assert!(verify.iter().any(|c| c.windows(2).any(|w| w == ["--output", "json"])), "{verify:?}");
    assert!(policy.len() >= 4, "lint and test in both jobs, and sign: {policy:?}");

    let registry = TestRegistry::start(Kind::Distribution).await;
    let pusher = Pusher::new(&registry.host);
    let (signed, _) = pusher.image("acme/app", "v1", "a signed build").await;
    let (unsigned, _) = pusher.image("acme/app", "v2", "an unsigned build").await;
    let signer = Signer::new();
    pusher.sign_legacy("acme/app", &signed, &signer).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::write(policies.join("release.pub"), signer.public_pem()).expect("key");
    std::fs::write(
        policies.join("apps.yaml"),
        format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: signed-apps}}\nspec:\n  \
             images: ['{}/acme/**']\n  authorities:\n    - name: release\n      key: {{publicKeyFile: release.pub}}\n      \
             transparencyLog: skip\n",
            registry.host
        ),
    )
    .expect("policy");
    let insecure = ["--insecure-registry", registry.host.as_str()];
    for (image, code, decision) in [(&signed, 0, "allowed"), (&unsigned, 1, "denied")] {
        let manifest = deployment(&format!("{}/acme/app@{image}", registry.host));
        std::fs::write(dir.path().join("rendered.yaml"), &manifest).expect("rendered");
        for command in &verify {
            let (got, out, err) = run(command, dir.path(), &insecure, &manifest);
            assert_eq!(got, Some(code), "{command:?}: {out}{err}");
            if command.contains(&"json".to_owned()) {
                let json: Value = serde_json::from_str(&out).expect("one JSON document");
                assert_eq!(json["objects"][0]["decision"], decision, "{out}");
            } else {
                // Read from stdin (`-f -`), the annotation has no file to point at.
                assert_eq!(
                    out.contains("::error title=portcullis%3A Deployment prod/app denied::"),
                    code == 1,
                    "{out}"
                );
            }
        }
    }

    // The policy job, on a copy of the example policies (signing writes into it).
    let examples = dir.path().join("examples");
    copy_dir(&common::root().join("policies"), &examples.join("policies"));
    std::fs::copy(common::root().join("policies/tests/keys/release.key"), examples.join("policy.key")).expect("key");
    for command in &policy {
        let command: Vec<String> =
            command.iter().map(|a| a.replace("\"$RUNNER_TEMP/policy.key\"", "policy.key")).collect();
        let (got, out, err) = run(&command, &examples, &[], "");
        assert_eq!(got, Some(0), "{command:?}: {out}{err}");
    }
    assert!(examples.join("policies/policyset.sig").is_file(), "the sign step ran");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
