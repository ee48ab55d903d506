//! A docker-registry behind TLS (a test CA) with Basic (htpasswd) or Bearer-token auth, and the
//! token server the Bearer flow needs (JWTs with an `x5c` chain, as distribution verifies them).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use serde_json::json;

use super::{Kind, TestRegistry, free_port, require};

pub const USER: &str = "testuser";
pub const PASSWORD: &str = "testpass";
pub const SERVICE: &str = "portcullis-test-registry";
pub const ISSUER: &str = "portcullis-test-token-issuer";

/// Write a docker-registry config and start it on `host` with extra config lines.
pub fn start_distribution(dir: &Path, host: &str, extra: &str) -> std::process::Child {
    let config = dir.join(format!("config-{}.yml", host.replace([':', '.'], "-")));
    let storage = dir.join("data");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: {host}\n  secret: not-a-secret\n{extra}",
            storage.display()
        ),
    )
    .expect("config");
    Command::new(require("docker-registry"))
        .args(["serve", &config.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry")
}

/// Generate a CA and a `localhost`/`127.0.0.1` serving certificate; returns (ca_pem, cert_pem, key_pem).
pub fn tls_material() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "test registry CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf");
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// An htpasswd line for USER/PASSWORD (bcrypt, by the real `htpasswd`).
pub fn htpasswd() -> String {
    let out = Command::new(require("htpasswd")).args(["-Bbn", USER, PASSWORD]).output().expect("htpasswd");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
}

/// A token server: checks Basic USER/PASSWORD and mints ES256 JWTs with an `x5c` header.
pub struct TokenServer {
    pub realm: String,
    pub cert_pem: String,
    pub requests: Arc<AtomicU64>,
}

pub async fn token_server() -> TokenServer {
    token_server_expiring(300).await
}

/// A token server whose tokens say `expires_in: expires_in` (their JWT lives 300 s).
pub async fn token_server_expiring(expires_in: u64) -> TokenServer {
    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "token signer");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("cert");
    let signing =
        Arc::new(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der()).expect("pkcs8"));
    let x5c = B64.encode(cert.der());
    let requests = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&requests);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/token",
        axum::routing::get(move |headers: axum::http::HeaderMap, query: axum::extract::RawQuery| {
            let signing = Arc::clone(&signing);
            let x5c = x5c.clone();
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                let expected = format!("Basic {}", B64.encode(format!("{USER}:{PASSWORD}")));
                let authorised = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
                if !authorised {
                    return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                }
                let scope = query
                    .0
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|p| p.strip_prefix("scope=").map(|s| s.replace("%3A", ":").replace("%2F", "/")))
                    .unwrap_or_default();
                let repo = scope.split(':').nth(1).unwrap_or_default().to_owned();
                let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("time").as_secs();
                let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
                let claims = json!({
                    "iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                    "jti": format!("{now}-{}", counter.load(Ordering::Relaxed)),
                    "access": [{"type": "repository", "name": repo, "actions": ["pull"]}]
                });
                let signing_input = format!(
                    "{}.{}",
                    B64URL.encode(serde_json::to_vec(&header).expect("json")),
                    B64URL.encode(serde_json::to_vec(&claims).expect("json"))
                );
                let signature = signing.sign(&SystemRandom::new(), signing_input.as_bytes()).expect("sign");
                let token = format!("{signing_input}.{}", B64URL.encode(signature.as_ref()));
                (axum::http::StatusCode::OK, json!({"token": token, "expires_in": expires_in}).to_string())
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TokenServer { realm: format!("http://{addr}/token"), cert_pem: cert.pem(), requests }
}

/// Start a registry with `extra` config on a fresh port over `dir`'s storage and wait for it.
pub async fn start_on(dir: &Path, extra: &str, tls: bool) -> TestRegistry {
    let host = format!("127.0.0.1:{}", free_port());
    let child = start_distribution(dir, &host, extra);
    let registry = TestRegistry { kind: Kind::Distribution, host, child, _dir: None };
    let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().expect("client");
    let scheme = if tls { "https" } else { "http" };
    let deadline = Instant::now() + Duration::from_secs(30);
    // Any HTTP answer (401 included) means it is up.
    while client.get(format!("{scheme}://{}/v2/", registry.host)).send().await.is_err() {
        assert!(Instant::now() < deadline, "secured registry did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    registry
}

/// Serve `dir`'s storage over TLS (a fresh test CA) with htpasswd Basic auth for USER/PASSWORD;
/// returns the registry and the CA (PEM) its certificate chains to.
pub async fn start_basic_tls(dir: &Path) -> (TestRegistry, String) {
    let (ca, cert, key) = tls_material();
    let p = |name: &str| dir.join(name).display().to_string();
    std::fs::write(p("tls.crt"), cert).expect("cert");
    std::fs::write(p("tls.key"), key).expect("key");
    std::fs::write(p("htpasswd"), htpasswd()).expect("htpasswd");
    let extra = format!(
        "  tls: {{certificate: {}, key: {}}}\nauth:\n  htpasswd: {{realm: test-realm, path: {}}}\n",
        p("tls.crt"),
        p("tls.key"),
        p("htpasswd")
    );
    (start_on(dir, &extra, true).await, ca)
}
