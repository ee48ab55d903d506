//! Registry credentials from imagePullSecrets: the pod's and its service account's, used for
//! the signature check of that workload only.
//!
//! No kube-apiserver can run here, so the Kubernetes client (`KubeSecrets`) is pointed at a
//! minimal HTTP endpoint (`support::kube_api`) serving list and watch with real Secret and
//! ServiceAccount JSON; the registry is a real docker-registry behind TLS and htpasswd. The
//! watched store itself (no API call per review, changes, 410 relists) is in `cluster_state`.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis::decision::Decision;
use portcullis::engine::{Engine, Settings};
use portcullis::policy::cel::CelEnv;
use portcullis::policy::load::load_text;
use portcullis::review::Review;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::pull_secrets::{KubeSecrets, PullContext, SecretSource, StaticSecrets};
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use serde_json::json;
use support::secure::{PASSWORD, USER, start_basic_tls, start_on};
use support::{Pusher, Signer, TestRegistry};

pub(crate) struct Private {
    pub(crate) registry: TestRegistry,
    pub(crate) ca: String,
    pub(crate) pem: String,
    _dir: tempfile::TempDir,
}

/// A private registry (TLS + htpasswd) holding a signed image `team/app:v1`.
pub(crate) async fn private_registry() -> Private {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = start_on(dir.path(), "", false).await;
    let push = Pusher::new(&open.host);
    let (digest, _) = push.image("team/app", "v1", "private").await;
    let signer = Signer::new();
    push.sign_legacy("team/app", &digest, &signer).await;
    drop(open);
    let (registry, ca) = start_basic_tls(dir.path()).await;
    Private { registry, ca, pem: signer.public_pem(), _dir: dir }
}

pub(crate) fn dockerconfig(host: &str, password: &str) -> Vec<u8> {
    json!({"auths": {host: {"auth": B64.encode(format!("{USER}:{password}"))}}}).to_string().into_bytes()
}

pub(crate) fn pod_review(image: &str, namespace: &str, pull_secrets: &[&str]) -> Review {
    let secrets: Vec<_> = pull_secrets.iter().map(|n| json!({"name": n})).collect();
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "p", "namespace": namespace, "operation": "CREATE", "userInfo": {"username": "u"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace},
                       "spec": {"imagePullSecrets": secrets, "containers": [{"name": "c", "image": image}]}}
        }
    });
    Review::from_value(body).expect("review")
}

pub(crate) async fn decide(private: &Private, source: Arc<dyn SecretSource>, review: &Review) -> Decision {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("k.pub"), &private.pem).expect("key");
    let text = "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: signed}\nspec:\n  images: ['**']\n  digest: allow-tags\n  authorities:\n    - name: k\n      key: {publicKeyFile: k.pub}\n      transparencyLog: skip\n";
    let set = load_text(text, "p.yaml", dir.path(), &CelEnv::new()).expect("policy");
    let config = RegistryConfig { ca_pem: vec![private.ca.clone().into_bytes()], ..Default::default() };
    let verifier =
        RegistryVerifier::new(Registry::new(config).expect("registry"), TrustRoot::production().expect("root"))
            .with_pull_secrets(source);
    let engine = Engine::fixed(set, Arc::new(verifier), Settings::default());
    engine.review(review, tokio::time::Instant::now() + Duration::from_secs(20)).await
}

#[tokio::test]
async fn pod_and_service_account_pull_secrets() {
    let private = private_registry().await;
    let host = private.registry.host.clone();
    let image = format!("{host}/team/app:v1");
    let source = Arc::new(StaticSecrets {
        secrets: vec![
            ("prod".into(), "regcred".into(), dockerconfig(&host, PASSWORD)),
            ("prod".into(), "stale".into(), dockerconfig(&host, "expired")),
            ("dev".into(), "regcred".into(), dockerconfig(&host, PASSWORD)),
        ],
        accounts: vec![("prod".into(), "default".into(), vec!["regcred".into()])],
    });
    // The service account's secret.
    let d = decide(&private, source.clone(), &pod_review(&image, "prod", &[])).await;
    assert!(d.allowed, "{d:?}");
    // The pod's own secret.
    let d = decide(&private, source.clone(), &pod_review(&image, "dev", &["regcred"])).await;
    assert!(d.allowed, "{d:?}");
    // No secret in this namespace: the registry refuses, and that is an error, not "unsigned".
    let d = decide(&private, source.clone(), &pod_review(&image, "dev", &[])).await;
    let m = d.message.unwrap_or_default();
    assert!(!d.allowed && m.contains("authentication failed") && m.contains("none are configured"), "{m}");
    // Another namespace's secret is never used.
    let d = decide(&private, source, &pod_review(&image, "staging", &["regcred"])).await;
    assert!(!d.allowed);
}

#[tokio::test]
async fn the_kubernetes_client_reads_secrets_and_service_accounts() {
    let api = support::kube_api::KubeApi::start().await;
    let config = dockerconfig("registry.example.com:5000", PASSWORD);
    api.put(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": "prod"},
        "data": {".dockerconfigjson": B64.encode(&config)}
    }));
    api.put(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "builder", "namespace": "prod"},
        "imagePullSecrets": [{"name": "regcred"}, {"name": "gone"}]
    }));
    let secrets = KubeSecrets::new(api.client());
    assert!(secrets.wait_synced(Duration::from_secs(10)).await, "{:?}", api.requests());

    let context = PullContext { namespace: "prod".into(), secrets: vec![], service_account: "builder".into() };
    let keychain = secrets.keychain(&context).await.expect("reads");
    let credential = keychain.get("registry.example.com:5000").expect("credential from the service account's secret");
    assert_eq!(credential.username, USER);

    let context =
        PullContext { namespace: "dev".into(), secrets: vec!["regcred".into()], service_account: "default".into() };
    assert!(secrets.keychain(&context).await.expect("reads").is_empty(), "missing objects are skipped");
}
