//! Registry authentication against a real docker-registry: Basic (htpasswd) over TLS with a
//! custom CA, and the Bearer-token flow with a token server. Credentials come from a docker
//! config.json, as `--registry-config` reads them.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use portcullis::decision::Decision;
use portcullis::engine::{Engine, Settings};
use portcullis::policy::cel::CelEnv;
use portcullis::policy::load::load_text;
use portcullis::review::Review;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::auth::Keychain;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use support::secure::{ISSUER, PASSWORD, SERVICE, USER, start_basic_tls, start_on, token_server};
use support::{Pusher, Signer};

/// Push a signed image through an open registry on `dir`'s storage; returns the public key.
async fn fill(dir: &std::path::Path) -> String {
    let open = start_on(dir, "", false).await;
    let push = Pusher::new(&open.host);
    let (digest, _) = push.image("team/app", "v1", "secret sauce").await;
    let signer = Signer::new();
    let tag = format!("{}.sig", digest.replace(':', "-"));
    // The signed reference names whatever host serves it later; cosign checks only the digest.
    push.artifact("team/app", &tag, &[signer.signature_layer(Signer::payload("registry/team/app", &digest))]).await;
    signer.public_pem()
}

async fn decide(config: RegistryConfig, pem: &str, image: &str) -> Decision {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("k.pub"), pem).expect("key");
    let text = "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: signed}\nspec:\n  images: ['**']\n  digest: allow-tags\n  authorities:\n    - name: k\n      key: {publicKeyFile: k.pub}\n      transparencyLog: skip\n";
    let set = load_text(text, "p.yaml", dir.path(), &CelEnv::new()).expect("policy");
    let verifier =
        RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"));
    let engine = Engine::fixed(set, Arc::new(verifier), Settings::default());
    engine.review(&Review::for_image(image, "default"), tokio::time::Instant::now() + Duration::from_secs(20)).await
}

fn credentials(host: &str, password: &str) -> Keychain {
    let json = format!(r#"{{"auths": {{"{host}": {{"auth": "{}"}}}}}}"#, b64(&format!("{USER}:{password}")));
    Keychain::from_docker_config_json(json.as_bytes(), "config.json").expect("config")
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn basic_auth_over_tls_with_a_custom_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = fill(dir.path()).await;
    let (registry, ca) = start_basic_tls(dir.path()).await;
    let image = format!("{}/team/app:v1", registry.host);

    let good = RegistryConfig {
        ca_pem: vec![ca.clone().into_bytes()],
        keychain: credentials(&registry.host, PASSWORD),
        ..Default::default()
    };
    let d = decide(good, &pem, &image).await;
    assert!(d.allowed, "{d:?}");

    let anonymous = RegistryConfig { ca_pem: vec![ca.clone().into_bytes()], ..Default::default() };
    let m = decide(anonymous, &pem, &image).await.message.unwrap_or_default();
    assert!(m.contains("authentication failed") && m.contains("none are configured"), "{m}");

    let wrong = RegistryConfig {
        ca_pem: vec![ca.into_bytes()],
        keychain: credentials(&registry.host, "nope"),
        ..Default::default()
    };
    let m = decide(wrong, &pem, &image).await.message.unwrap_or_default();
    assert!(m.contains("authentication failed") && m.contains("401"), "{m}");
    assert!(!m.contains("nope"), "credentials never appear in messages: {m}");

    let untrusted = RegistryConfig { keychain: credentials(&registry.host, PASSWORD), ..Default::default() };
    let m = decide(untrusted, &pem, &image).await.message.unwrap_or_default();
    assert!(m.contains("registry error") && m.contains(&registry.host), "{m}");
}

#[tokio::test]
async fn bearer_token_flow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = fill(dir.path()).await;
    let tokens = token_server().await;
    let root = dir.path().join("token-root.crt");
    std::fs::write(&root, &tokens.cert_pem).expect("root");
    let extra = format!(
        "auth:\n  token: {{realm: \"{}\", service: {SERVICE}, issuer: {ISSUER}, rootcertbundle: {}}}\n",
        tokens.realm,
        root.display()
    );
    let registry = start_on(dir.path(), &extra, false).await;
    let image = format!("{}/team/app:v1", registry.host);
    let config = |password: &str| RegistryConfig {
        insecure: vec![
            registry.host.clone(),
            tokens.realm.trim_start_matches("http://").split('/').next().unwrap_or_default().to_owned(),
        ],
        keychain: credentials(&registry.host, password),
        ..Default::default()
    };
    let d = decide(config(PASSWORD), &pem, &image).await;
    assert!(d.allowed, "{d:?}");
    assert!(tokens.requests.load(Ordering::Relaxed) >= 1, "a token was fetched");

    let m = decide(config("nope"), &pem, &image).await.message.unwrap_or_default();
    assert!(m.contains("token endpoint") && m.contains("401"), "{m}");
}
