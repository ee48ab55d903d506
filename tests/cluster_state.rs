//! Cluster state without API calls per review: imagePullSecrets, service accounts and
//! `secretRef` keys kept by list + watch (against `support::kube_api`, a minimal endpoint with
//! real Secret/ServiceAccount JSON, resourceVersions, bookmarks and 410 Gone), and registry
//! tokens cached per credential set against a real docker-registry with a token server.

use crate::pull_secrets::{decide, dockerconfig, pod_review, private_registry};
use crate::support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis::decision::Decision;
use portcullis::engine::{Engine, Settings};
use portcullis::policy::cel::CelEnv;
use portcullis::policy::load::load_text;
use portcullis::verify::cache::CachedVerifier;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::key_secrets::KeySecrets;
use portcullis::verify::pull_secrets::{KubeSecrets, PullContext, Scope, SecretSource, StaticSecrets};
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use serde_json::{Value, json};
use support::kube_api::KubeApi;
use support::secure::{ISSUER, PASSWORD, SERVICE, start_on, token_server_expiring};
use support::{Kind, Pusher, Signer, TestRegistry};

const PULL: &str = "kubernetes.io/dockerconfigjson";

fn secret(ns: &str, name: &str, kind: &str, data: &[(&str, &[u8])]) -> Value {
    let data: serde_json::Map<String, Value> =
        data.iter().map(|(k, v)| ((*k).to_owned(), json!(B64.encode(v)))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": {"name": name, "namespace": ns}, "data": data})
}

fn account(ns: &str, name: &str, pull: &[&str]) -> Value {
    let pull: Vec<Value> = pull.iter().map(|n| json!({"name": n})).collect();
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}, "imagePullSecrets": pull})
}

/// Wait until `n` watches are open (they start right after the lists).
async fn watching(api: &KubeApi, n: usize) {
    for _ in 0..100 {
        if api.count("WATCH") >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{n} watches never started: {:?}", api.requests());
}

/// Run `review` until `want` holds (a watch event arrives asynchronously); fails after 10 s.
async fn eventually<F: Future<Output = Decision>>(
    what: &str,
    review: impl Fn() -> F,
    want: impl Fn(&Decision) -> bool,
) -> Decision {
    let mut last = None;
    for _ in 0..100 {
        let d = review().await;
        if want(&d) {
            return d;
        }
        last = Some(d);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: never seen; last decision {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_secrets_are_watched_not_read_per_review() {
    let private = private_registry().await;
    let host = private.registry.host.clone();
    let image = format!("{host}/team/app:v1");
    let api = KubeApi::start().await;
    api.put(account("prod", "default", &["regcred"]));
    api.put(secret("prod", "regcred", PULL, &[(".dockerconfigjson", &dockerconfig(&host, PASSWORD))]));
    // Not a pull secret for the kubelet (type Opaque), so not for portcullis either.
    api.put(secret("dev", "opaque", "Opaque", &[(".dockerconfigjson", &dockerconfig(&host, PASSWORD))]));
    let source = Arc::new(KubeSecrets::new(api.client()));
    assert!(source.wait_synced(Duration::from_secs(10)).await, "{:?}", api.requests());
    watching(&api, 3).await;
    let warm = api.requests().len();
    for _ in 0..3 {
        let d = decide(&private, source.clone(), &pod_review(&image, "prod", &[])).await;
        assert!(d.allowed, "{d:?}");
    }
    let d = decide(&private, source.clone(), &pod_review(&image, "dev", &["opaque"])).await;
    assert!(!d.allowed, "an Opaque Secret is not a pull secret: {d:?}");
    assert_eq!(api.requests().len(), warm, "API requests during reviews: {:?}", &api.requests()[warm..]);
    assert_eq!((api.count("LIST"), api.count("WATCH"), api.count("GET")), (3, 3, 0), "{:?}", api.requests());

    // A changed Secret is seen through the watch, with no new list.
    api.put(secret("prod", "regcred", PULL, &[(".dockerconfigjson", &dockerconfig(&host, "rotated-away"))]));
    let (private, image) = (&private, &image);
    let review = || {
        let (review, source) = (pod_review(image, "prod", &[]), source.clone());
        async move { decide(private, source, &review).await }
    };
    eventually("the changed password", review, |d| !d.allowed).await;
    assert_eq!(api.count("LIST"), 3);

    // 410 Gone: the store lists again and sees what changed meanwhile.
    api.expire();
    api.put(secret("prod", "regcred", PULL, &[(".dockerconfigjson", &dockerconfig(&host, PASSWORD))]));
    eventually("the Secret after a relist", review, |d| d.allowed).await;
    assert!(api.count("LIST") >= 6, "relisted after 410: {:?}", api.requests());
    // The service account losing its pull secret is seen too.
    api.put(account("prod", "default", &[]));
    eventually("the service account change", review, |d| !d.allowed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_listed_and_only_the_watched_namespaces() {
    let api = KubeApi::start().await;
    api.put(secret("prod", "regcred", PULL, &[(".dockerconfigjson", &dockerconfig("r.example", PASSWORD))]));
    api.put(secret("dev", "regcred", PULL, &[(".dockerconfigjson", &dockerconfig("r.example", PASSWORD))]));
    api.fail_lists(true);
    let source = KubeSecrets::watch(api.client(), &Scope::Namespaces(vec!["prod".into()]));
    assert!(!source.wait_synced(Duration::from_millis(500)).await && !source.is_synced());
    let prod =
        PullContext { namespace: "prod".into(), secrets: vec!["regcred".into()], service_account: "default".into() };
    let error = source.keychain(&prod).await.expect_err("no credentials before the first list");
    assert!(error.to_string().contains("not read from the API server yet"), "{error}");
    api.fail_lists(false);
    assert!(source.wait_synced(Duration::from_secs(15)).await && source.is_synced());
    assert!(source.keychain(&prod).await.expect("listed").get("r.example").is_some());
    // Another namespace is not watched: it pulls anonymously, never with prod's view.
    let dev = PullContext { namespace: "dev".into(), ..prod };
    assert!(source.keychain(&dev).await.expect("anonymous").is_empty());
    let outside: Vec<String> = api.requests().into_iter().filter(|r| !r.contains(" prod ")).collect();
    assert!(outside.is_empty(), "requests outside the watched namespace: {outside:?}");
}

/// A registry holding `team/app:v1` signed by the returned signer.
async fn signed_image() -> (TestRegistry, String, Signer) {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let (digest, _) = push.image("team/app", "v1", "keyed").await;
    let signer = Signer::new();
    push.sign_legacy("team/app", &digest, &signer).await;
    let image = format!("{}/team/app@{digest}", registry.host);
    (registry, image, signer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_a_watched_secret_follow_its_changes_and_fail_closed() {
    let (registry, image, signer) = signed_image().await;
    let api = KubeApi::start().await;
    let pem = signer.public_pem();
    let cosign_secret = |public: &str| {
        // What `cosign generate-key-pair k8s://ops/cosign-key` writes: the private key and its
        // password sit next to the public key (never kept by portcullis).
        secret(
            "ops",
            "cosign-key",
            "Opaque",
            &[
                ("cosign.pub", public.as_bytes()),
                ("cosign.key", b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nx\n"),
                ("cosign.password", b"hunter2"),
            ],
        )
    };
    api.put(cosign_secret(&pem));
    let text = "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: from-secret}\nspec:\n  images: ['**']\n  authorities:\n    - name: k\n      key: {secretRef: {namespace: ops, name: cosign-key}}\n      transparencyLog: skip\n";
    let set = load_text(text, "p.yaml", std::path::Path::new("."), &CelEnv::new()).expect("policy");
    let config = RegistryConfig { insecure: vec![registry.host.clone()], ..Default::default() };
    let keys = Arc::new(KeySecrets::new(api.client(), None));
    let verifier =
        RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"))
            .with_key_secrets(keys.clone());
    // Behind the verification cache: a changed Secret must not be served an old result.
    let cached = CachedVerifier::new(Arc::new(verifier), Duration::from_secs(300));
    let engine = Engine::fixed(set, Arc::new(cached), Settings::default());
    let (engine, image) = (&engine, &image);
    let review = || {
        let review = pod_review(image, "prod", &[]);
        async move { engine.review(&review, tokio::time::Instant::now() + Duration::from_secs(20)).await }
    };

    let d = review().await;
    assert!(d.allowed, "{d:?}");
    watching(&api, 1).await;
    let warm = api.requests().len();
    for _ in 0..3 {
        assert!(review().await.allowed);
    }
    assert_eq!(api.requests().len(), warm, "API requests during reviews: {:?}", &api.requests()[warm..]);
    assert!(
        api.requests().iter().all(|r| r.contains("fieldSelector=metadata.name=cosign-key")),
        "{:?}",
        api.requests()
    );

    // Rotated to another key: the old result is not reused.
    api.put(cosign_secret(&Signer::new().public_pem()));
    eventually("the rotated key", review, |d| !d.allowed).await;
    api.put(cosign_secret(&pem));
    eventually("the key rotated back", review, |d| d.allowed).await;
    // The data key gone: denied, naming the Secret and the key.
    api.put(secret("ops", "cosign-key", "Opaque", &[("cosign.key", b"private")]));
    let d = eventually("the missing data key", review, |d| !d.allowed).await;
    let m = d.message.unwrap_or_default();
    assert!(m.contains("Secret ops/cosign-key has no data key \"cosign.pub\""), "{m}");
    assert!(!m.contains("private"), "the private key is never kept or shown: {m}");
    // Not a public key at all.
    api.put(secret(
        "ops",
        "cosign-key",
        "Opaque",
        &[("cosign.pub", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")],
    ));
    let d = eventually("the broken key", review, |d| {
        d.message.as_deref().is_some_and(|m| m.contains("not a usable public key"))
    })
    .await;
    assert!(!d.allowed);
    // The Secret deleted: denied, naming it.
    api.put(cosign_secret(&pem));
    eventually("the key restored", review, |d| d.allowed).await;
    api.delete("secrets", "ops", "cosign-key");
    let d = eventually("the deleted Secret", review, |d| !d.allowed).await;
    let m = d.message.unwrap_or_default();
    assert!(m.contains("key Secret ops/cosign-key does not exist"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_tokens_are_cached_per_credential_set_until_they_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = start_on(dir.path(), "", false).await;
    let push = Pusher::new(&open.host);
    let (digest, _) = push.image("team/app", "v1", "token").await;
    let signer = Signer::new();
    push.sign_legacy("team/app", &digest, &signer).await;
    drop(open);
    // Tokens that say they live 2 s.
    let tokens = token_server_expiring(2).await;
    let root = dir.path().join("token-root.crt");
    std::fs::write(&root, &tokens.cert_pem).expect("root");
    let extra = format!(
        "auth:\n  token: {{realm: \"{}\", service: {SERVICE}, issuer: {ISSUER}, rootcertbundle: {}}}\n",
        tokens.realm,
        root.display()
    );
    let registry = start_on(dir.path(), &extra, false).await;
    let host = registry.host.clone();
    let image = format!("{host}/team/app@{digest}");
    let key_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(key_dir.path().join("k.pub"), signer.public_pem()).expect("key");
    let text = "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: signed}\nspec:\n  images: ['**']\n  authorities:\n    - name: k\n      key: {publicKeyFile: k.pub}\n      transparencyLog: skip\n";
    let set = load_text(text, "p.yaml", key_dir.path(), &CelEnv::new()).expect("policy");
    let realm_host = tokens.realm.trim_start_matches("http://").split('/').next().unwrap_or_default().to_owned();
    let config = RegistryConfig { insecure: vec![host.clone(), realm_host], ..Default::default() };
    let source = Arc::new(StaticSecrets {
        secrets: vec![("prod".into(), "regcred".into(), dockerconfig(&host, PASSWORD))],
        accounts: vec![("prod".into(), "default".into(), vec!["regcred".into()])],
    });
    let source: Arc<dyn SecretSource> = source;
    // One verifier, no verification cache: every review goes to the registry.
    let verifier =
        RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"))
            .with_pull_secrets(source);
    let engine = Engine::fixed(set, Arc::new(verifier), Settings::default());
    let (engine, image) = (&engine, &image);
    let review = |ns: &str| {
        let review = pod_review(image, ns, &[]);
        async move { engine.review(&review, tokio::time::Instant::now() + Duration::from_secs(20)).await }
    };
    let fetched = || tokens.requests.load(Ordering::Relaxed);

    for _ in 0..3 {
        let d = review("prod").await;
        assert!(d.allowed, "{d:?}");
    }
    assert_eq!(fetched(), 1, "one token for prod's credentials, reused");
    // A namespace without the pull secret: prod's token is not its to use.
    let d = review("dev").await;
    let m = d.message.clone().unwrap_or_default();
    assert!(!d.allowed && m.contains("token endpoint") && m.contains("401"), "{d:?}");
    assert_eq!(fetched(), 2, "dev asked for its own (anonymous) token");
    assert!(review("prod").await.allowed);
    assert_eq!(fetched(), 2, "prod's token is still cached");
    assert!(!review("dev").await.allowed, "still refused after prod was admitted again");
    // Past its life (2 s less the margin), prod's token is fetched again, once.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = fetched();
    assert!(review("prod").await.allowed);
    assert!(review("prod").await.allowed);
    assert_eq!(fetched(), before + 1, "one new token after expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_until_pull_secrets_are_listed() {
    let api = KubeApi::start().await;
    api.fail_lists(true);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{}\"}}\nusers:\n- name: test\n  user: {{token: test-token}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test}}\ncurrent-context: test\n",
        api.url
    );
    std::fs::write(&kubeconfig, config).expect("kubeconfig");
    let args = ["--listen", "127.0.0.1:0", "--write-ca", "ca.crt", "--image-pull-secrets", "always"];
    let (mut child, address, _logs) =
        crate::cli::spawn_serve(dir.path(), &args, &[("KUBECONFIG", kubeconfig.to_str().expect("utf8"))]);
    let ca = std::fs::read(dir.path().join("ca.crt")).expect("ca");
    let port = address.rsplit(':').next().expect("port").to_owned();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
        .build()
        .expect("client");
    let readyz = || async {
        let response = client.get(format!("https://localhost:{port}/readyz")).send().await.expect("readyz");
        (response.status().as_u16(), response.text().await.expect("body"))
    };
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("imagePullSecrets") && body.contains("not listed from the API server yet"), "{body}");
    // The API server's answer is said once a list has failed.
    for _ in 0..50 {
        if readyz().await.1.contains("the test made lists fail") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(readyz().await.1.contains("the test made lists fail"), "{}", readyz().await.1);
    api.fail_lists(false);
    let mut ready = false;
    for _ in 0..200 {
        if readyz().await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready once listed: {:?}", readyz().await);
    assert!(api.count("LIST") >= 3 && api.count("GET") == 0, "{:?}", api.requests());
    let status = tokio::task::spawn_blocking(move || crate::cli::terminate(&mut child)).await.expect("join");
    assert!(status.success(), "{status:?}");
}
