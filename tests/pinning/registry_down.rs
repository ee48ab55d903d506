//! `digest: pin` when the registry cannot say what a tag points at: `/mutate` denies in enforce
//! (fail closed), names the registry's status (or, past the deadline, the request it waited
//! for), patches nothing, and does not remember the failure once the registry is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::support::faults::{Fault, FaultProxy, Rule};
use super::support::{Kind, Pusher, Signer, TestRegistry};
use super::{cached_app, post, review};

#[tokio::test]
async fn a_tag_whose_registry_is_down_is_denied_with_its_status_then_pinned_when_it_is_back() {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let (digest, _) = Pusher::new(&registry.host).image("team/app", "v1", "build").await;
    let down = Arc::new(AtomicBool::new(true));
    let rule: Rule = {
        let down = Arc::clone(&down);
        Arc::new(move |_, path| {
            if path == "/v2/team/app/manifests/hangs" {
                return Some(Fault::Hang);
            }
            (down.load(Ordering::SeqCst) && path == "/v2/team/app/manifests/v1").then(|| Fault::status(503))
        })
    };
    let proxy = FaultProxy::start(&registry.host, rule).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("release.pub"), Signer::new().public_pem()).expect("key");
    let host = proxy.host.clone();
    let policy = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: pinned}}\nspec:\n  images: ['{host}/team/**']\n  digest: pin\n  authorities:\n    - name: release\n      key: {{publicKeyFile: release.pub}}\n      transparencyLog: skip\n"
    );
    let (app, _) = cached_app(&host, &policy, dir.path(), std::time::Duration::from_secs(30));
    let body = review(&[&format!("{host}/team/app:v1")]);

    let answer = post(&app, "/mutate", &body).await;
    let response = &answer["response"];
    assert_eq!(response["allowed"], false, "{response}");
    assert!(response.get("patch").is_none(), "{response}");
    let message = response["status"]["message"].as_str().expect("message");
    for fragment in ["cannot pin the tag to a digest", "registry error", "registry answered 503", "/manifests/v1"] {
        assert!(message.contains(fragment), "{fragment:?} not in {message}");
    }

    // A registry that never answers: denied at the deadline, naming the request it waited for.
    let hangs = review(&[&format!("{host}/team/app:hangs")]);
    let answer = post(&app, "/mutate?timeout=2s", &hangs).await;
    let response = &answer["response"];
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().expect("message");
    for fragment in ["cannot pin the tag to a digest", "did not finish before the review deadline", "/manifests/hangs"]
    {
        assert!(message.contains(fragment), "{fragment:?} not in {message}");
    }

    // Back up: the failure was not cached, the tag is pinned.
    down.store(false, Ordering::SeqCst);
    let answer = post(&app, "/mutate", &body).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    use base64::Engine as _;
    let patch = answer["response"]["patch"].as_str().expect("patch");
    let patch = base64::engine::general_purpose::STANDARD.decode(patch).expect("base64");
    assert!(String::from_utf8_lossy(&patch).contains(&format!("{host}/team/app:v1@{digest}")), "{answer}");
}
