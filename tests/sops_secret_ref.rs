//! `portcullis decrypt --age-key-secret-ref NAMESPACE/NAME`: the age key read from a Kubernetes
//! Secret through the API server (as Flux's `decryption.secretRef`). No kube-apiserver can run
//! here, so the client talks to a minimal HTTP endpoint serving the Secret path with real Secret
//! JSON; the file is encrypted by the real sops.

use crate::sops_support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use sops_support::{keygen, portcullis, sops_encrypt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_comes_from_a_secret_in_the_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keygen(dir.path(), "flux");
    std::fs::write(
        dir.path().join("secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: hunter2\n",
    )
    .expect("write");
    let encrypted =
        sops_encrypt(dir.path(), "secret.yaml", &["--age", &key.recipient, "--encrypted-regex", "^(data|stringData)$"]);
    std::fs::write(dir.path().join("secret.enc.yaml"), &encrypted).expect("write");

    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sops-age", "namespace": "flux-system"},
        "data": {"identity.agekey": B64.encode(&key.identity)}
    });
    let app = axum::Router::new().route(
        "/api/v1/namespaces/{ns}/secrets/{name}",
        axum::routing::get(move |axum::extract::Path((ns, name)): axum::extract::Path<(String, String)>| {
            let secret = secret.clone();
            async move {
                if ns == "flux-system" && name == "sops-age" {
                    (axum::http::StatusCode::OK, axum::Json(secret))
                } else {
                    (
                        axum::http::StatusCode::NOT_FOUND,
                        axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "secrets not found"})),
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"http://{addr}\"}}\nusers:\n- name: test\n  user: {{token: test-token}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test}}\ncurrent-context: test\n"
        ),
    )
    .expect("kubeconfig");
    let dir_path = dir.path().to_path_buf();
    let config_path = kubeconfig.clone();
    let out = tokio::task::spawn_blocking(move || {
        let env = [("KUBECONFIG", config_path.to_str().expect("utf8"))];
        portcullis(
            &dir_path,
            &["decrypt", "--age-key-secret-ref", "flux-system/sops-age", "secret.enc.yaml"],
            &env,
            None,
        )
    })
    .await
    .expect("join");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("password: hunter2"));

    let dir_path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let env = [("KUBECONFIG", kubeconfig.to_str().expect("utf8"))];
        portcullis(
            &dir_path,
            &["decrypt", "--age-key-secret-ref", "flux-system/missing", "secret.enc.yaml"],
            &env,
            None,
        )
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read Secret flux-system/missing") && !stderr.contains("AGE-SECRET-KEY"),
        "{stderr}"
    );

    let out = portcullis(dir.path(), &["decrypt", "--age-key-secret-ref", "no-slash", "secret.enc.yaml"], &[], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAMESPACE/NAME"));
}
