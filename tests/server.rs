//! The real server on 127.0.0.1:0 with TLS, driven the way kube-apiserver drives a webhook:
//! POST /validate?timeout=Ns over HTTP/2 (ALPN) or HTTP/1.1, the certificate checked against
//! the caBundle for the `<service>.<namespace>.svc` name.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{example_app, fixture};
use portcullis::server::tls::CertStore;
use portcullis::server::{Limits, run};
use reqwest::Version;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub(crate) const SERVICE_NAME: &str = "portcullis.portcullis.svc";

pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) ca_pem: String,
    pub(crate) stop: Option<oneshot::Sender<()>>,
    pub(crate) done: tokio::task::JoinHandle<()>,
}

pub(crate) async fn start(limits: Limits) -> Running {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let generated = CertStore::self_signed(&[SERVICE_NAME.to_owned()]).expect("certificate");
    let tls = generated.store.server_config().expect("tls config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        run(listener, tls, example_app(), limits, async {
            let _ = stopped.await;
        })
        .await
        .expect("server ran");
    });
    Running { addr, ca_pem: generated.ca_pem, stop: Some(stop), done }
}

pub(crate) fn client(ca_pem: &str, addr: SocketAddr, http1: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca");
    let builder =
        reqwest::Client::builder().tls_certs_only([ca]).resolve(SERVICE_NAME, addr).timeout(Duration::from_secs(30));
    let builder = if http1 { builder.http1_only() } else { builder };
    builder.build().expect("client")
}

pub(crate) async fn post_review(client: &reqwest::Client, addr: SocketAddr, body: &Value) -> (Version, Value) {
    let url = format!("https://{SERVICE_NAME}:{}/validate?timeout=10s", addr.port());
    let response = client.post(url).json(body).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let version = response.version();
    (version, response.json().await.expect("json"))
}

#[tokio::test]
async fn serves_reviews_over_http2_and_http1() {
    let mut server = start(Limits::default()).await;
    let review = fixture("pod-create.json");
    for (http1, want) in [(false, Version::HTTP_2), (true, Version::HTTP_11)] {
        let client = client(&server.ca_pem, server.addr, http1);
        let (version, body) = post_review(&client, server.addr, &review).await;
        assert_eq!(version, want);
        assert_eq!(body["response"]["uid"], review["request"]["uid"]);
        assert_eq!(body["response"]["allowed"], false);
        assert!(body["response"]["status"]["message"].as_str().expect("m").contains("prod-require-digest"));
    }
    // Many reviews on one HTTP/2 connection, concurrently.
    let client = client(&server.ca_pem, server.addr, false);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let client = client.clone();
        let mut review = fixture("configmap-create.json");
        review["request"]["uid"] = Value::from(format!("uid-{i}"));
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let (_, body) = post_review(&client, addr, &review).await;
            assert_eq!(body["response"]["uid"], format!("uid-{i}"));
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let _ = server.stop.take().map(|s| s.send(()));
    tokio::time::timeout(Duration::from_secs(30), server.done).await.expect("stops").expect("joined");
}

#[tokio::test]
async fn the_certificate_is_checked_against_the_ca() {
    let mut server = start(Limits::default()).await;
    // A client trusting another CA refuses the connection.
    let other = CertStore::self_signed(&[]).expect("other ca");
    let stranger = client(&other.ca_pem, server.addr, false);
    let url = format!("https://{SERVICE_NAME}:{}/healthz", server.addr.port());
    assert!(stranger.get(&url).send().await.is_err());
    // A name the certificate does not carry is refused too.
    let trusting = client(&server.ca_pem, server.addr, false);
    let wrong_name = format!("https://localhost.localdomain:{}/healthz", server.addr.port());
    assert!(trusting.get(&wrong_name).send().await.is_err());
    assert_eq!(trusting.get(&url).send().await.expect("healthz").status(), 200);
    let _ = server.stop.take().map(|s| s.send(()));
}

#[tokio::test]
async fn slow_clients_and_bad_handshakes_do_not_hold_the_server() {
    use tokio::io::AsyncWriteExt;
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let mut server = start(limits).await;
    // Plain text on a TLS port, and a client that never finishes its handshake.
    let mut garbage = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
    let _silent = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let client = client(&server.ca_pem, server.addr, true);
    let (_, body) = post_review(&client, server.addr, &fixture("configmap-create.json")).await;
    assert_eq!(body["response"]["allowed"], true);
    let _ = server.stop.take().map(|s| s.send(()));
    tokio::time::timeout(Duration::from_secs(30), server.done).await.expect("stops").expect("joined");
}

#[tokio::test]
async fn shutdown_drains_in_flight_connections() {
    let mut server = start(Limits::default()).await;
    let client = client(&server.ca_pem, server.addr, false);
    let (_, first) = post_review(&client, server.addr, &fixture("configmap-create.json")).await;
    assert_eq!(first["response"]["allowed"], true);
    let _ = server.stop.take().map(|s| s.send(()));
    tokio::time::timeout(Duration::from_secs(30), server.done).await.expect("drained").expect("joined");
    // After shutdown nothing listens.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn certificate_files_are_reloaded() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let write = |name: &str| {
        let key_pair = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![SERVICE_NAME.to_owned()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let c = params.self_signed(&key_pair).expect("cert");
        std::fs::write(&cert, c.pem()).expect("write cert");
        std::fs::write(&key, key_pair.serialize_pem()).expect("write key");
        c.pem()
    };
    let first = write("first");
    let store = CertStore::from_files(&cert, &key).expect("loads");
    assert!(!store.reload().expect("unchanged"), "no change, no swap");
    let tls = store.server_config().expect("config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run(listener, tls, example_app(), Limits::default(), async {
        let _ = stopped.await;
    }));
    let url = format!("https://{SERVICE_NAME}:{}/healthz", addr.port());
    assert_eq!(client(&first, addr, true).get(&url).send().await.expect("first cert").status(), 200);

    let second = write("second");
    assert!(store.reload().expect("reloads"), "changed files swap the certificate");
    assert_eq!(client(&second, addr, true).get(&url).send().await.expect("second cert").status(), 200);
    assert!(client(&first, addr, true).get(&url).send().await.is_err(), "the old certificate is gone");

    // A broken file keeps the current certificate.
    std::fs::write(&key, "not a key").expect("write");
    assert!(store.reload().is_err());
    assert_eq!(client(&second, addr, true).get(&url).send().await.expect("still second").status(), 200);
    let _ = stop.send(());
    let _ = Arc::strong_count(&store);
}

/// A body over the limit is answered `413` over HTTP/2 as over HTTP/1.1, not with a reset
/// stream (the server reads and drops the rest of the body before answering). Driven with the real
/// `curl`, which, like Go's client, reports a stream reset while it is still sending as an error.
#[tokio::test]
async fn an_oversized_body_gets_413_over_http2_as_over_http1() {
    let mut server = start(Limits::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, body) = (dir.path().join("ca.pem"), dir.path().join("body.json"));
    std::fs::write(&ca, &server.ca_pem).expect("ca");
    std::fs::write(&body, vec![b'a'; 7 * 1024 * 1024]).expect("body");
    let port = server.addr.port();
    for version in ["--http2", "--http1.1"] {
        // More than once: a reset stream used to win the race against the answer now and then.
        for attempt in 0..8 {
            let (ca, body) = (ca.clone(), body.clone());
            let output = tokio::task::spawn_blocking(move || {
                std::process::Command::new("curl")
                    .args(["-sS", version, "--cacert"])
                    .arg(&ca)
                    .args(["--resolve", &format!("{SERVICE_NAME}:{port}:127.0.0.1")])
                    .args(["-H", "content-type: application/json", "--data-binary"])
                    .arg(format!("@{}", body.display()))
                    .args(["-w", "\nstatus %{http_code}"])
                    .arg(format!("https://{SERVICE_NAME}:{port}/validate?timeout=10s"))
                    .output()
                    .expect("curl runs")
            })
            .await
            .expect("joined");
            let text = String::from_utf8_lossy(&output.stdout);
            let err = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{version} attempt {attempt}: {err}");
            assert!(text.contains("6 MiB limit") && text.ends_with("status 413"), "{version}: {text}");
        }
    }
    let _ = server.stop.take().map(|s| s.send(()));
    server.done.await.expect("stopped");
}

/// Some clients send an IP address as SNI (illegal per RFC 6066); they are served as if they had
/// sent none (the real `openssl s_client`, which sends what it is given).
#[tokio::test]
async fn a_client_sending_an_ip_address_as_sni_is_served() {
    let mut server = start(Limits::default()).await;
    let addr = server.addr.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("openssl")
            .args(["s_client", "-connect", &addr, "-servername", "127.0.0.1", "-alpn", "h2"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl runs")
    })
    .await
    .expect("joined");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("ALPN protocol: h2") && text.contains("TLSv1.3"), "{text}");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("alert"), "{output:?}");
    let _ = server.stop.take().map(|s| s.send(()));
    server.done.await.expect("stopped");
}

/// A client CA and a client certificate it signed (PEM: CA, client certificate + key).
fn client_material() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.distinguished_name.push(DnType::CommonName, "api-server client CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).expect("client cert");
    (ca_cert.pem(), format!("{}{}", cert.pem(), key.serialize_pem()))
}

/// `--client-ca`: only a client presenting a certificate of that CA (the API server, configured
/// through its admission kubeconfig) gets reviews answered; one with another CA's certificate
/// cannot complete the handshake; one without a certificate (the kubelet's probes, a scraper)
/// reaches the health endpoints only.
#[tokio::test]
async fn a_client_ca_admits_only_clients_with_its_certificate() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (client_ca, identity) = client_material();
    let (other_ca, other_identity) = client_material();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &client_ca).expect("write");
    let generated = CertStore::self_signed(&[SERVICE_NAME.to_owned()]).expect("certificate");
    let tls = generated.store.server_config_with_client_ca(Some(&ca_file)).expect("tls config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let limits = Limits { require_client_certificate: true, ..Limits::default() };
        run(listener, tls, example_app(), limits, async {
            let _ = stopped.await;
        })
        .await
        .expect("server ran");
    });
    let with_identity = |pem: Option<&str>, http1: bool| {
        let ca = reqwest::Certificate::from_pem(generated.ca_pem.as_bytes()).expect("ca");
        let mut builder = reqwest::Client::builder().tls_certs_only([ca]).resolve(SERVICE_NAME, addr);
        if let Some(pem) = pem {
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
        }
        if http1 {
            builder = builder.http1_only();
        }
        builder.build().expect("client")
    };
    let review = fixture("configmap-create.json");
    for http1 in [false, true] {
        let (_, body) = post_review(&with_identity(Some(&identity), http1), addr, &review).await;
        assert_eq!(body["response"]["allowed"], true);
        let url = format!("https://{SERVICE_NAME}:{}/validate?timeout=10s", addr.port());
        let answer = with_identity(Some(&other_identity), http1).post(&url).json(&review).send().await;
        assert!(answer.is_err(), "another CA's certificate (http1: {http1}) was served: {answer:?}");
        let anonymous = with_identity(None, http1);
        let answer = anonymous.post(&url).json(&review).send().await.expect("handshake without a certificate");
        assert_eq!(answer.status(), 403, "http1: {http1}");
        assert!(answer.text().await.expect("text").contains("--client-ca"));
        let health = format!("https://{SERVICE_NAME}:{}/healthz", addr.port());
        assert_eq!(anonymous.get(&health).send().await.expect("probe").status(), 200);
    }
    drop(other_ca);
    let _ = stop.send(());
    done.await.expect("stopped");
    // A file without a certificate is refused with its path.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let err = generated.store.server_config_with_client_ca(Some(&empty)).expect_err("empty CA file");
    assert!(err.to_string().contains("empty.pem"), "{err}");
}
