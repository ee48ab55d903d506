//! The `portcullis` binary: embedded defaults, environment variables, exit codes, help.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Start `portcullis serve` and return the child and the address it logged.
pub(crate) fn spawn_serve(
    dir: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Child, String, mpsc::Receiver<String>) {
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

pub(crate) fn terminate(child: &mut Child) -> std::process::ExitStatus {
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
    assert!(ready.text().await.expect("text").contains("11 policies loaded"));
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

/// Run `portcullis certs generate` with these flags: (exit code, stdout, stderr).
fn certs(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(["certs", "generate"]).args(args).output().expect("run portcullis certs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pem_der(path: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_file(path).expect("PEM certificate").to_vec()
}

fn days(validity: &x509_parser::certificate::Validity) -> i64 {
    (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400
}

#[test]
fn certs_generate_writes_a_ca_and_a_serving_certificate() {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt as _;
    use x509_parser::extensions::GeneralName;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("certs");
    let out_arg = out.to_str().expect("utf8");
    let (code, stdout, stderr) = certs(&["--service", "portcullis", "--namespace", "ops", "--out", out_arg]);
    assert_eq!(code, Some(0), "{stderr}");

    // The caBundle printed is the CA written.
    let ca_pem = std::fs::read(out.join("ca.crt")).expect("ca.crt");
    let bundle = base64::engine::general_purpose::STANDARD.decode(stdout.trim()).expect("stdout is base64");
    assert_eq!(bundle, ca_pem);
    for (file, mode) in [("tls.key", 0o600), ("ca.key", 0o600)] {
        let found = std::fs::metadata(out.join(file)).expect(file).permissions().mode() & 0o777;
        assert_eq!(found, mode, "{file} is {found:o}");
    }

    let ca_der = pem_der(&out.join("ca.crt"));
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("CA");
    assert!(ca.is_ca());
    let ca_usage = ca.key_usage().expect("ku").expect("CA key usage").value;
    assert!(ca_usage.key_cert_sign() && !ca_usage.digital_signature());
    assert_eq!(days(ca.validity()), 3650, "CA validity");
    assert_eq!(ca.public_key().algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1", "EC key");

    let leaf_der = pem_der(&out.join("tls.crt"));
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf");
    assert!(!leaf.is_ca());
    assert_eq!(leaf.issuer(), ca.subject());
    let names: Vec<String> = leaf
        .subject_alternative_name()
        .expect("san")
        .expect("SANs present")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => (*d).to_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["portcullis.ops.svc", "portcullis.ops.svc.cluster.local"]);
    let eku = leaf.extended_key_usage().expect("eku").expect("EKU present").value;
    assert!(eku.server_auth && !eku.client_auth && !eku.any);
    assert!(leaf.key_usage().expect("ku").expect("key usage").value.digital_signature());
    assert_eq!(days(leaf.validity()), 365, "serving certificate validity");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!(leaf.validity().not_before.timestamp() <= now && leaf.validity().not_after.timestamp() > now);

    // Again into the same directory: refused, nothing replaced (a new CA would break the caBundle).
    let (code, _, stderr) = certs(&["--service", "portcullis", "--namespace", "ops", "--out", out_arg]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("already exists: pass --renew"), "{stderr}");
    assert_eq!(pem_der(&out.join("tls.crt")), leaf_der);

    // --renew: a new serving certificate and key, the same CA.
    let (code, stdout_renew, stderr) =
        certs(&["--service", "portcullis", "--namespace", "ops", "--out", out_arg, "--renew", "--days", "30"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout_renew, stdout, "the caBundle stays");
    assert_eq!(pem_der(&out.join("ca.crt")), ca_der);
    let renewed = pem_der(&out.join("tls.crt"));
    assert_ne!(renewed, leaf_der);
    let (_, renewed) = x509_parser::parse_x509_certificate(&renewed).expect("renewed");
    assert_eq!(days(renewed.validity()), 30);
    assert_ne!(renewed.public_key().raw, leaf.public_key().raw, "a new key");
}

/// `certs generate` refuses a Service or namespace name the API server would never use, and
/// writes nothing.
fn certs_refuse_the_name(service: &str, namespace: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad");
    let (code, _, stderr) =
        certs(&["--service", service, "--namespace", namespace, "--out", bad.to_str().expect("utf8")]);
    assert_eq!(code, Some(2), "{service:?} {namespace:?}");
    assert!(stderr.contains("is not a Kubernetes name"), "{stderr}");
    assert!(!bad.exists(), "nothing written for a bad name");
}

macro_rules! certs_refuse_a_name {
    ($($name:ident: $service:expr, $namespace:expr;)*) => {$(
        #[test]
        fn $name() {
            certs_refuse_the_name($service, $namespace);
        }
    )*};
}

certs_refuse_a_name! {
    certs_refuse_an_upper_case_service: "Portcullis", "ops";
    certs_refuse_a_dotted_namespace: "portcullis", "ops.evil.example";
    certs_refuse_an_empty_service: "", "ops";
}

#[test]
fn certs_generate_refuses_what_it_cannot_stand_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = |name: &str| dir.path().join(name).to_str().expect("utf8").to_owned();
    // Names the API server would never use for a Service: `certs_refuse_a_name!` below.
    // --renew without a CA.
    let (code, _, stderr) = certs(&["--service", "p", "--namespace", "ops", "--out", &out("none"), "--renew"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--renew needs the CA generated earlier") && stderr.contains("ca.crt"), "{stderr}");
    // --renew with a CA key that is not the CA's: refused, not a leaf that fails at handshake.
    for name in ["a", "b"] {
        let (code, _, stderr) = certs(&["--service", "p", "--namespace", "ops", "--out", &out(name)]);
        assert_eq!(code, Some(0), "{stderr}");
    }
    std::fs::copy(dir.path().join("b/ca.key"), dir.path().join("a/ca.key")).expect("swap key");
    let (code, _, stderr) = certs(&["--service", "p", "--namespace", "ops", "--out", &out("a"), "--renew"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("does not belong to the CA"), "{stderr}");
    // Validity beyond what clients accept.
    let (code, _, _) = certs(&["--service", "p", "--namespace", "ops", "--out", &out("c"), "--days", "5000"]);
    assert_eq!(code, Some(2));
}

/// A client as the API server is one: trusts only the caBundle, reaches the Service by its DNS
/// name (SNI), prefers HTTP/2.
fn service_client(ca_pem: &[u8], name: &str, address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem).expect("ca")])
        .resolve(name, address.parse().expect("socket address"))
        .tls_info(true)
        .https_only(true)
        .build()
        .expect("client")
}

async fn served_leaf(client: &reqwest::Client, url: &str) -> Result<(reqwest::Version, Vec<u8>), reqwest::Error> {
    let response = client.get(url).send().await?.error_for_status()?;
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("tls info");
    let leaf = info.peer_certificate().expect("peer certificate").to_vec();
    Ok((response.version(), leaf))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_generate_serves_by_service_name_and_renews_without_restart() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    let out = dir.path().join("certs");
    let out_arg = out.to_str().expect("utf8");
    let (code, stdout, stderr) = certs(&["--service", "portcullis", "--namespace", "ops", "--out", out_arg]);
    assert_eq!(code, Some(0), "{stderr}");
    let ca_bundle = base64::engine::general_purpose::STANDARD.decode(stdout.trim()).expect("base64");
    let (cert, key) = (out.join("tls.crt"), out.join("tls.key"));
    let (mut child, address, _logs) = spawn_serve(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().expect("utf8"),
            "--tls-key",
            key.to_str().expect("utf8"),
            "--reload-interval",
            "200ms",
        ],
        &[],
    );
    let port = address.rsplit(':').next().expect("port").to_owned();
    let name = "portcullis.ops.svc";
    let url = format!("https://{name}:{port}/readyz");
    let client = service_client(&ca_bundle, name, &address);
    let (version, first) = served_leaf(&client, &url).await.expect("reached by the service name with the caBundle");
    assert_eq!(version, reqwest::Version::HTTP_2, "ALPN h2, as the API server uses");
    assert_eq!(first, pem_der(&cert));

    // How one would get past it: another name, or another CA. Both fail the handshake.
    let other = service_client(&ca_bundle, "portcullis.other.svc", &address);
    assert!(served_leaf(&other, &format!("https://portcullis.other.svc:{port}/readyz")).await.is_err());
    let foreign = dir.path().join("foreign");
    let (code, foreign_bundle, _) =
        certs(&["--service", "portcullis", "--namespace", "ops", "--out", foreign.to_str().expect("utf8")]);
    assert_eq!(code, Some(0));
    let foreign_bundle = base64::engine::general_purpose::STANDARD.decode(foreign_bundle.trim()).expect("b64");
    assert!(served_leaf(&service_client(&foreign_bundle, name, &address), &url).await.is_err());

    // Requests keep flowing on the open connection while the certificate is renewed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, url, stop) = (client.clone(), url.clone(), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && ok < 100_000 {
                match served_leaf(&client, &url).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, renewed_bundle, stderr) =
        certs(&["--service", "portcullis", "--namespace", "ops", "--out", out_arg, "--renew"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(renewed_bundle, stdout, "the caBundle in the cluster stays valid");
    let renewed = pem_der(&cert);
    assert_ne!(renewed, first);
    // A new connection (as the API server opens) gets the renewed certificate, same process.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let fresh = service_client(&ca_bundle, name, &address);
        let (_, leaf) = served_leaf(&fresh, &url).await.expect("fresh connection after renewal");
        if leaf == renewed {
            break;
        }
        assert_eq!(leaf, first, "only the old or the renewed certificate is ever served");
        assert!(std::time::Instant::now() < deadline, "the renewed certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.expect("load task");
    assert!(ok > 10, "requests ran during the renewal: {ok}");
    assert!(failed.is_empty(), "{} requests failed during the renewal: {failed:?}", failed.len());
    assert!(child.try_wait().expect("wait").is_none(), "no restart");
    let status = tokio::task::spawn_blocking(move || terminate(&mut child)).await.expect("join");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_first_and_keeps_serving_for_the_shutdown_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    let (mut child, address, _logs) =
        spawn_serve(dir.path(), &["--listen", "127.0.0.1:0", "--write-ca", "ca.crt", "--shutdown-delay", "3s"], &[]);
    let ca = std::fs::read(dir.path().join("ca.crt")).expect("ca");
    let port = address.rsplit(':').next().expect("port").to_owned();
    // A new client each time: new connections, as kube-proxy would route them.
    let get = |path: &'static str| {
        let (ca, port) = (ca.clone(), port.clone());
        async move {
            let client = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
                .build()
                .expect("client");
            client.get(format!("https://localhost:{port}{path}")).send().await.map(|r| r.status().as_u16())
        }
    };
    assert_eq!(get("/readyz").await.expect("ready"), 200);
    let started = std::time::Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    let mut not_ready = false;
    while started.elapsed() < Duration::from_secs(2) {
        if get("/readyz").await.expect("still accepting connections") == 503 {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(not_ready, "/readyz fails right after SIGTERM");
    assert_eq!(get("/healthz").await.expect("still serving during the delay"), 200);
    let status = tokio::task::spawn_blocking(move || terminate(&mut child)).await.expect("join");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "stopped after the delay, not before: {:?}",
        started.elapsed()
    );
}

// ---- `portcullis verify -f`: parity with the webhook, golden outputs, exit codes ----

/// The AdmissionReview an API server sends for `object` on CREATE by alice (group dev): written
/// here independently of the CLI's own construction, as the API server's contract says.
fn api_server_review(object: &serde_json::Value, uid: &str) -> serde_json::Value {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().expect("kind");
    let mut object = object.clone();
    let namespace = (kind != "Namespace").then(|| {
        let ns = object["metadata"]["namespace"].as_str().unwrap_or("default").to_owned();
        object["metadata"]["namespace"] = serde_json::Value::from(ns.clone());
        ns
    });
    let mut request = serde_json::json!({
        "uid": uid,
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
        "name": object["metadata"]["name"],
        "operation": "CREATE",
        "userInfo": {"username": "alice", "groups": ["dev"]},
        "object": object,
        "oldObject": null,
        "dryRun": false,
    });
    if let Some(ns) = namespace {
        request["namespace"] = serde_json::Value::from(ns);
    }
    serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// The parts of an answer the API server acts on: allowed, message, warnings, audit annotations.
fn answer(
    allowed: &serde_json::Value,
    message: &serde_json::Value,
    warnings: &serde_json::Value,
    audit: &serde_json::Value,
) -> serde_json::Value {
    let or = |v: &serde_json::Value, default: serde_json::Value| if v.is_null() { default } else { v.clone() };
    serde_json::json!({
        "allowed": allowed,
        "message": message,
        "warnings": or(warnings, serde_json::json!([])),
        "auditAnnotations": or(audit, serde_json::json!({})),
    })
}

fn verify_fixtures() -> std::path::PathBuf {
    common::root().join("tests/fixtures/verify")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_f_decides_every_object_exactly_as_the_webhook() {
    // The example policies plus a ResourcePolicy on a custom resource, served and verified alike.
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    copy_dir(&common::root().join("policies"), &policies);
    std::fs::copy(verify_fixtures().join("widget-policy.yaml"), policies.join("widget-policy.yaml")).expect("copy");
    let policy_arg = policies.to_str().expect("utf8");
    let (mut child, address, _logs) = spawn_serve(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--policies", policy_arg, "--write-ca", "ca.crt", "--image-pull-secrets", "never"],
        &[],
    );
    let ca = std::fs::read(dir.path().join("ca.crt")).expect("CA");
    let client = service_client(&ca, "localhost", &address);
    let port = address.rsplit(':').next().expect("port");

    // The corpus, read here with serde_yaml_ng's own multi-document reader (not the CLI's).
    let manifests = verify_fixtures().join("manifests");
    let mut objects = Vec::new();
    let corpus = std::fs::read_to_string(manifests.join("corpus.yaml")).expect("corpus");
    for document in serde_yaml_ng::Deserializer::from_str(&corpus) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document).expect("yaml");
        objects.push(value);
    }
    let list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(manifests.join("list.json")).expect("list")).expect("json");
    objects.extend(list["items"].as_array().expect("items").iter().cloned());
    assert_eq!(objects.len(), 17);

    let mut webhook = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        let review = api_server_review(object, &format!("uid-{i}"));
        let body: serde_json::Value = client
            .post(format!("https://localhost:{port}/validate?timeout=10s"))
            .json(&review)
            .send()
            .await
            .expect("validate")
            .json()
            .await
            .expect("json");
        let r = &body["response"];
        assert_eq!(r["uid"], format!("uid-{i}"));
        webhook.push(answer(&r["allowed"], &r["status"]["message"], &r["warnings"], &r["auditAnnotations"]));
    }
    let _ = tokio::task::spawn_blocking(move || terminate(&mut child)).await;

    let out = Command::new(BIN)
        .args(["verify", "-f", manifests.to_str().expect("utf8"), "--policies", policy_arg])
        .args(["--user", "alice", "--group", "dev", "--output", "json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let records = result["objects"].as_array().expect("objects");
    assert_eq!(records.len(), objects.len());
    for (i, (record, from_webhook)) in records.iter().zip(&webhook).enumerate() {
        let from_cli = answer(&record["allowed"], &record["message"], &record["warnings"], &record["auditAnnotations"]);
        assert_eq!(&from_cli, from_webhook, "object {i} ({} {}) differs", record["kind"], record["name"]);
        assert_eq!(record["allowed"], record["decision"] != "denied" && record["decision"] != "undecided");
    }

    // The corpus is not vacuous: the answers are the ones each object is there to provoke.
    let by_name = |name: &str| -> &serde_json::Value {
        records.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name} reviewed"))
    };
    let message = |name: &str| by_name(name)["message"].as_str().unwrap_or_default().to_owned();
    for denied in ["debug-pod", "db", "pay", "broken", "db-password", "still-encrypted", "big", "tagged"] {
        assert_eq!(by_name(denied)["allowed"], false, "{denied}");
    }
    for allowed in ["prod", "kube-proxy", "migrate", "report", "pause", "plain", "small", "from-list", "web"] {
        assert_eq!(by_name(allowed)["allowed"], true, "{allowed}");
    }
    let pod = message("debug-pod");
    for field in
        ["spec.initContainers[0].image", "spec.ephemeralContainers[0].image", "spec.volumes[0].image.reference"]
    {
        assert!(pod.contains(field), "{field} checked: {pod}");
    }
    assert!(message("big").contains("a Widget has at most 3 replicas"));
    assert!(message("still-encrypted").contains("sops-ciphertext"));
    assert!(message("db-password").contains("written by the GitOps reconciler"));
    assert!(by_name("web")["warnings"][0].as_str().expect("warning").contains("staging-digest-warning"));
    assert!(by_name("web")["auditAnnotations"]["audit-latest-tag"].is_string());
    assert_eq!(by_name("prod")["namespace"], serde_json::Value::Null, "a Namespace is cluster-scoped");
    assert_eq!(by_name("migrate")["namespace"], "default");
    assert_eq!(
        (by_name("tagged")["file"].as_str().expect("file").ends_with("list.json"), &by_name("tagged")["line"]),
        (true, &serde_json::json!(1))
    );
    assert_eq!(by_name("db")["line"], 42, "the line the document starts at");

    // The reconciler's identity passes the Secret rule, as it does at admission.
    let out = Command::new(BIN)
        .args(["verify", "-f", manifests.join("corpus.yaml").to_str().expect("utf8"), "--policies", policy_arg])
        .args(["--user", "system:serviceaccount:argocd:argocd-application-controller", "-o", "json"])
        .output()
        .expect("run");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let secret =
        result["objects"].as_array().expect("objects").iter().find(|r| r["name"] == "db-password").expect("secret");
    assert_eq!(secret["allowed"], true, "{secret}");
}

/// Run `portcullis verify ARGS` in `tests/fixtures/verify` and compare `exit`, stdout and stderr
/// with `golden/NAME`; `PORTCULLIS_BLESS=1` rewrites the file. Returns the mismatch, if any.
fn golden(name: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(BIN).arg("verify").args(args).current_dir(verify_fixtures()).output().expect("run");
    let actual = format!(
        "$ portcullis verify {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code().map_or("signal".to_owned(), |c| c.to_string()),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = verify_fixtures().join("golden").join(name);
    if std::env::var_os("PORTCULLIS_BLESS").is_some() {
        std::fs::write(&path, &actual).expect("bless");
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    (actual != expected).then(|| format!("golden/{name} differs (PORTCULLIS_BLESS=1 rewrites it):\n{actual}"))
}

#[test]
fn verify_outputs_and_exit_codes_match_the_golden_files() {
    const POLICIES: &str = "../../../policies";
    let digest = format!("ghcr.io/acme/app@sha256:{}", "b".repeat(64));
    let cases: &[(&str, &[&str])] = &[
        ("manifests.txt", &["-f", "manifests", "--policies", POLICIES, "--user", "alice"]),
        ("manifests.github", &["-f", "manifests", "--policies", POLICIES, "--user", "alice", "--output", "github"]),
        ("manifests.json", &["-f", "manifests/list.json", "--policies", POLICIES, "-o", "json"]),
        ("allowed.txt", &["-f", "allowed.yaml", "--policies", POLICIES]),
        ("missing-file.txt", &["-f", "absent.yaml", "-f", "manifests", "--policies", POLICIES]),
        ("invalid-manifests.txt", &["-f", "invalid.yaml", "--policies", POLICIES]),
        ("invalid-manifests.json", &["-f", "invalid.yaml", "--policies", POLICIES, "-o", "json"]),
        ("invalid-policies.txt", &["-f", "allowed.yaml", "--policies", "invalid-policies"]),
        ("bad-output-flag.txt", &["-f", "allowed.yaml", "--output", "xml"]),
        ("files-and-images.txt", &["-f", "allowed.yaml", "nginx:1"]),
        ("namespace-conflict.txt", &["-f", "allowed.yaml", "--policies", POLICIES, "--namespace", "prod"]),
        ("image-unparsable.txt", &["ghcr.io/acme/App:v1", "--policies", POLICIES]),
        ("image-missing-key.txt", &[&digest, "--key", "absent.pub"]),
        ("image-kind.txt", &[&digest, "nginx:1", "--policies", POLICIES, "--kind", "CronJob", "-n", "prod"]),
        ("image-unmatched-allow.txt", &["quay.io/x/y:1", "--policies", POLICIES, "-n", "kube-system"]),
        (
            "image-unmatched-deny.txt",
            &["quay.io/x/y:1", "--policies", POLICIES, "-n", "kube-system", "--unmatched-images", "deny"],
        ),
        (
            "image-own-namespace.txt",
            &["quay.io/x/y:1", "--policy", POLICIES, "-n", "portcullis", "--own-namespace", "portcullis"],
        ),
    ];
    let failures: Vec<String> = cases.iter().filter_map(|(name, args)| golden(name, args)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn verify_exit_2_for_keys_it_cannot_use_and_registries_it_cannot_reach() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A private key given as --key: refused before anything is fetched, and said so.
    let private = dir.path().join("cosign.key");
    let pem = rcgen::KeyPair::generate().expect("key").serialize_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    std::fs::write(&private, pem).expect("write");
    let image = format!("127.0.0.1:9/app@sha256:{}", "a".repeat(64));
    let out = Command::new(BIN)
        .args(["verify", &image, "--key", private.to_str().expect("utf8"), "--insecure-registry", "127.0.0.1:9"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PRIVATE key") && stderr.contains("cosign.pub"), "{stderr}");
    assert!(out.stdout.is_empty());

    // A registry that refuses connections: could not decide (2), never "denied" (1).
    let public = common::root().join("policies/keys/release.pub");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["verify", &image, "--key", public.to_str().expect("utf8"), "--insecure-registry", "127.0.0.1:9"])
            .args(extra)
            .output()
            .expect("run")
    };
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("ERR ") && stdout.contains("registry error") && stdout.contains("could not decide"),
        "{stdout}"
    );
    let out = run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(result["objects"][0]["decision"], "undecided");
    assert_eq!(result["objects"][0]["findings"][0]["result"], "error");
    assert_eq!(result["objects"][0]["findings"][0]["digest"], format!("sha256:{}", "a".repeat(64)));
    // The same registry error in warn mode does not block: allowed with a warning (exit 0).
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(&public, policies.join("release.pub")).expect("copy");
    std::fs::write(
        policies.join("warn.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: soft}\nspec:\n  mode: warn\n  images: ['127.0.0.1:9/**']\n  authorities:\n    - name: k\n      key: {publicKeyFile: release.pub}\n      transparencyLog: skip\n",
    )
    .expect("policy");
    let out = Command::new(BIN)
        .args(["verify", &image, "--policies", policies.to_str().expect("utf8"), "--insecure-registry", "127.0.0.1:9"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("allowed with warnings"), "{stdout}");
}

#[test]
fn policy_schema_prints_the_committed_schema() {
    let out = Command::new(BIN).args(["policy", "schema"]).output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read(common::root().join("policies/policy.schema.json")).expect("committed schema");
    assert!(out.stdout == committed, "policies/policy.schema.json differs from `portcullis policy schema`");
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(schema["oneOf"][0]["properties"]["kind"]["const"], "ImagePolicy");
}

fn policy(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).arg("policy").args(args).current_dir(common::root()).output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn policy_lint_is_quiet_on_the_examples_and_finds_each_rule_in_the_fixture() {
    let (code, out, err) = policy(&["lint", "policies"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.ends_with(" policies: 0 errors, 0 warnings\n"), "{out}");
    // --strict too: the examples carry no warning (portcullis-self silences its one on purpose).
    assert_eq!(policy(&["lint", "--strict", "policies"]).0, Some(0));

    let (code, out, err) = policy(&["lint", "tests/fixtures/lint"]);
    assert_eq!(code, Some(1), "{out}{err}");
    for (rule, policy, severity) in [
        ("identity-too-broad", "broad-identity", "error"),
        ("github-ref-any", "any-ref", "warning"),
        ("glob-never-matches", "dead-glob", "error"),
        ("glob-shadowed", "shadowed-glob", "warning"),
        ("conflicting-modes", "team-a-digest-warning", "warning"),
        ("unknown-predicate", "typo-predicate-and-tlog-skip", "warning"),
        ("tlog-skip-enforce", "typo-predicate-and-tlog-skip", "warning"),
        ("cel-always-errors", "cel-typo", "warning"),
    ] {
        let line = out.lines().find(|l| l.contains(&format!("[{rule}]"))).unwrap_or_else(|| panic!("{rule}: {out}"));
        assert!(line.contains(&format!("{severity}[{rule}]: policy {policy:?}")), "{line}");
        assert!(line.starts_with("tests/fixtures/lint/mistakes.yaml:"), "{line}");
    }
    assert!(out.ends_with("8 policies: 2 errors, 6 warnings\n"), "{out}");
    // The policy that is right about modes is not blamed.
    assert!(!out.contains("]: policy \"teams-digest\""), "{out}");

    // Silencing the errors leaves warnings: exit 0, unless --strict.
    let quiet =
        ["lint", "tests/fixtures/lint", "--ignore", "identity-too-broad", "--ignore", "glob-never-matches:dead-glob"];
    let (code, out, _) = policy(&quiet);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with("0 errors, 6 warnings\n"), "{out}");
    let (code, _, _) = policy(&[&quiet[..], &["--strict"]].concat());
    assert_eq!(code, Some(1));
    // RULE:POLICY silences that policy only; an unknown rule id is a usage error.
    let (code, out, _) = policy(&["lint", "tests/fixtures/lint", "--ignore", "glob-never-matches:other"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("[glob-never-matches]"), "{out}");
    let (code, _, err) = policy(&["lint", "tests/fixtures/lint", "--ignore", "glob-never-match"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no rule \"glob-never-match\""), "{err}");
}

#[test]
fn policy_lint_reports_what_the_loader_refuses_and_unreadable_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Keyless without an issuer: the loader refuses it, so lint does too (before its own rules).
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\nspec:\n  images: ['**']\n  \
         authorities:\n    - name: ci\n      keyless: {subject: 'https://github.com/acme/app/.github/workflows/r.yml@refs/heads/main'}\n",
    )
    .expect("write");
    let path = dir.path().to_str().expect("utf8");
    let (code, out, _) = policy(&["lint", path]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("error[invalid]") && out.contains("keyless needs issuer"), "{out}");
    let (code, _, err) = policy(&["lint", &format!("{path}/missing")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn policy_test_runs_the_example_cases_offline() {
    let (code, out, err) = policy(&["test", "policies"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("ok       prod-denies-a-tag ("), "{out}");
    assert!(out.contains("ok       sops-ciphertext-is-denied ("), "{out}");
    // The signature cases run on their recorded evidence (tests/policy_evidence.rs).
    assert!(out.contains("ok       signed-image-with-every-attestation-is-allowed ("), "{out}");
    assert!(out.ends_with("21 passed, 0 failed, 0 not run (need a registry or recorded evidence)\n"), "{out}");
    // The server's flags apply: with unmatched images denied, the kube-system case (no policy
    // matches there) is denied, so its expectation fails.
    let (code, out, _) = policy(&["test", "policies", "--unmatched-images", "deny"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED   kube-system-is-excluded-from-allowed-registries"), "{out}");
}

#[test]
fn policy_test_fails_with_a_diff_and_refuses_bad_cases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    copy_dir(&common::root().join("policies"), &policies);
    let cases = policies.join("tests/images.yaml");
    let text = std::fs::read_to_string(&cases).expect("cases");
    // Expecting the staging warning to be a pass is wrong: the case fails, with the diff.
    std::fs::write(&cases, text.replacen("decision: warned", "decision: allowed", 1)).expect("write");
    let path = policies.to_str().expect("utf8");
    let (code, out, _) = policy(&["test", path]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED   staging-warns-on-a-tag"), "{out}");
    assert!(out.contains("  - decision: allowed\n  + decision: warned\n"), "{out}");
    assert!(out.contains("  + policy \"staging-digest-warning\""), "{out}");
    assert!(out.contains("20 passed, 1 failed, 0 not run"), "{out}");
    // A message that does not appear fails too, though the decision is right.
    std::fs::write(&cases, text.replacen("message: staging-digest-warning", "message: prod-require-digest", 1))
        .expect("write");
    let (code, out, _) = policy(&["test", path]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("  - message containing: \"prod-require-digest\""), "{out}");
    // A typo in a case is an error naming the file and line (exit 2), not a skipped case.
    std::fs::write(&cases, text.replacen("expect:", "expected:", 1)).expect("write");
    let (code, _, err) = policy(&["test", path]);
    assert_eq!(code, Some(2));
    assert!(err.contains("images.yaml:5") && err.contains("expected"), "{err}");
    // A directory with no case is an error, not a pass.
    std::fs::remove_dir_all(policies.join("tests")).expect("rm");
    let (code, _, err) = policy(&["test", path]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no `kind: PolicyTest` document"), "{err}");
}

#[test]
fn policy_test_documents_do_not_hide_a_misspelt_policy_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: PolicyTests\nmetadata: {name: t}\n",
    )
    .expect("write");
    let (code, out, _) = policy(&["lint", dir.path().to_str().expect("utf8")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("\"PolicyTests\" is not a policy kind"), "{out}");
}
