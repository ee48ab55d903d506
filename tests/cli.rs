//! The `portcullis` binary: embedded defaults, environment variables, exit codes, help.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Start `portcullis serve` and return the child and the address it logged.
fn spawn_serve(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> (Child, String, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("portcullis is serving") => {
                let address = line
                    .split("address=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .expect("address in the log line")
                    .to_owned();
                return (child, address, rx);
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("portcullis serve did not start");
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "portcullis did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Copy a directory tree (the example policies and their `keys/`).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("examples") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() { copy_dir(&path, &target) } else { std::fs::copy(&path, &target).map(drop).expect("copy") }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_embedded_defaults_and_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&common::root().join("policies"), &dir.path().join("policies"));
    // No flags but the port (the default 8443 may be taken on a CI machine), passed by env.
    let (mut child, address, _logs) =
        spawn_serve(dir.path(), &["--write-ca", "ca.crt"], &[("PORTCULLIS_LISTEN", "127.0.0.1:0")]);
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    let ca = std::fs::read(dir.path().join("ca.crt")).expect("--write-ca wrote the CA");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
        .build()
        .expect("client");
    let port = address.rsplit(':').next().expect("port");
    let base = format!("https://localhost:{port}");
    let ready = client.get(format!("{base}/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
    assert!(ready.text().await.expect("text").contains("10 policies loaded"));
    let review = common::fixture("pod-create.json");
    let body: serde_json::Value = client
        .post(format!("{base}/validate?timeout=5s"))
        .json(&review)
        .send()
        .await
        .expect("validate")
        .json()
        .await
        .expect("json");
    assert_eq!(body["response"]["allowed"], false);
    // The HTTP/2 connection stays open; the server's GOAWAY must be answered while it drains,
    // so wait for the exit off the runtime thread.
    let status = tokio::task::spawn_blocking(move || terminate(&mut child)).await.expect("join");
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
}

#[test]
fn configuration_errors_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["serve", "--policies", "nowhere", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("policy directory nowhere does not exist: create it or pass --policies DIR"), "{stderr}");

    std::fs::create_dir(dir.path().join("p")).expect("mkdir");
    std::fs::write(dir.path().join("p/x.yaml"), "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: x}\nspec: {images: ['**'], mode: block}\n").expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--policies", "p", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("p/x.yaml:4:") && stderr.contains("block"), "{stderr}");

    let out = Command::new(BIN).args(["serve", "--tls-cert", "a.pem"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "clap usage errors are exit 2");
    std::fs::create_dir(dir.path().join("empty")).expect("mkdir");
    let out = Command::new(BIN)
        .args(["serve", "--tls-cert", "a.pem", "--tls-key", "b.pem", "--listen", "127.0.0.1:0", "--policies", "empty"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read a.pem: No such file"), "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "the cause is printed once: {stderr}");
}

#[test]
fn help_has_examples_and_env_names() {
    let out = Command::new(BIN).args(["serve", "--help"]).output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "Examples:",
        "portcullis serve --listen",
        "PORTCULLIS_POLICIES",
        "PORTCULLIS_TLS_CERT",
        "--own-namespace",
        "--write-ca",
        "--unmatched-images",
        "--allow-empty-policies",
        "PORTCULLIS_ALLOW_EMPTY_POLICIES",
    ] {
        assert!(help.contains(want), "missing {want} in:\n{help}");
    }
}
