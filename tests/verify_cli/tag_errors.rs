//! A tag whose registry answers an error: `portcullis verify IMAGE:tag` reports a
//! `registry-error` with the registry's status (exit 2, could not check), never only a
//! message to parse.

use std::sync::Arc;

use crate::support::faults::{Fault, FaultProxy, Rule};
use crate::support::{Kind, Signer, TestRegistry};

use super::verify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_the_registry_refuses_is_a_registry_error_with_its_status() {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("release.pub");
    std::fs::write(&key, Signer::new().public_pem()).expect("key");
    let key = key.to_str().expect("utf8");
    for status in [503, 401, 404] {
        let rule: Rule = Arc::new(move |_, path| (path == "/v2/team/app/manifests/v1").then(|| Fault::status(status)));
        let proxy = FaultProxy::start(&registry.host, rule).await;
        let image = format!("{}/team/app:v1", proxy.host);
        let args: Vec<String> =
            [&image, "--key", key, "--insecure-ignore-tlog", "--insecure-registry", &proxy.host, "-o", "json"]
                .map(str::to_owned)
                .into();
        let (code, out, err) = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            verify(&args)
        })
        .await
        .expect("verify");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        let finding = &json["objects"][0]["findings"][0];
        assert_eq!((code, finding["result"].as_str()), (Some(2), Some("error")), "{status}: {finding}");
        assert_eq!(finding["failure"]["class"], "registry-error", "{status}: {finding}");
        assert_eq!(finding["failure"]["status"], status, "{status}: {finding}");
        let message = finding["message"].as_str().unwrap_or_default();
        assert!(message.contains(&status.to_string()) && message.contains("/manifests/v1"), "{message}");
    }
}
