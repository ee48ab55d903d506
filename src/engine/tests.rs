use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::policy::cel::CelEnv;
use crate::policy::compile::parse_file;
use crate::verify::{BoxFuture, Unsupported};

const DIGEST: &str = "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270";

fn set(text: &str) -> PolicySet {
    PolicySet::new(parse_file(text, "t.yaml", Path::new("."), &CelEnv::new()).expect("policies")).expect("set")
}

fn pod_review(namespace: &str, images: &[&str], operation: &str) -> Review {
    let containers: Vec<_> =
        images.iter().enumerate().map(|(i, img)| json!({"name": format!("c{i}"), "image": img})).collect();
    let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace},
                        "spec": {"containers": containers}});
    review_of(object, "", "Pod", namespace, operation, None)
}

fn review_of(object: Value, group: &str, kind: &str, ns: &str, op: &str, old: Option<Value>) -> Review {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": "x"},
            "name": "p", "namespace": ns, "operation": op,
            "userInfo": {"username": "alice"},
            "object": if op == "DELETE" { Value::Null } else { object.clone() },
            "oldObject": old.unwrap_or(Value::Null),
        }
    });
    Review::from_value(body).expect("review")
}

fn engine(text: &str, settings: Settings) -> Engine {
    Engine::fixed(set(text), Arc::new(Unsupported), settings)
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

const DIGEST_POLICY: &str = "
apiVersion: portcullis.dev/v1alpha1
kind: ImagePolicy
metadata: {name: pinned}
spec:
  match: {namespaces: [prod]}
  images: ['ghcr.io/acme/**']
  digest: require
";

#[tokio::test]
async fn digest_require_denies_tags_only_where_it_applies() {
    let e = engine(DIGEST_POLICY, Settings::default());
    let d = e.review(&pod_review("prod", &["ghcr.io/acme/app:v1"], "CREATE"), deadline()).await;
    assert!(!d.allowed);
    let m = d.message.expect("message");
    assert!(m.contains("pinned") && m.contains("ghcr.io/acme/app:v1") && m.contains("spec.containers[0].image"), "{m}");
    let pinned = format!("ghcr.io/acme/app@{DIGEST}");
    assert!(e.review(&pod_review("prod", &[&pinned], "CREATE"), deadline()).await.allowed);
    assert!(e.review(&pod_review("dev", &["ghcr.io/acme/app:v1"], "CREATE"), deadline()).await.allowed);
    assert!(e.review(&pod_review("prod", &["docker.io/library/nginx:1"], "CREATE"), deadline()).await.allowed);
}

#[tokio::test]
async fn modes_warn_and_audit_allow() {
    let warn = DIGEST_POLICY.replace("digest: require", "digest: require\n  mode: warn");
    let d = engine(&warn, Settings::default())
        .review(&pod_review("prod", &["ghcr.io/acme/app:v1"], "CREATE"), deadline())
        .await;
    assert!(d.allowed);
    assert_eq!(d.warnings.len(), 1);
    let audit = DIGEST_POLICY.replace("digest: require", "digest: require\n  mode: audit");
    let d = engine(&audit, Settings::default())
        .review(&pod_review("prod", &["ghcr.io/acme/app:v1"], "CREATE"), deadline())
        .await;
    assert!(d.allowed && d.warnings.is_empty());
    assert!(d.audit_annotations.contains_key("pinned"));
}

#[tokio::test]
async fn own_namespace_is_never_blocked() {
    let settings = Settings { own_namespace: Some("prod".into()), unmatched: Unmatched::Deny };
    let d = engine(DIGEST_POLICY, settings)
        .review(&pod_review("prod", &["ghcr.io/acme/app:v1"], "CREATE"), deadline())
        .await;
    assert!(d.allowed);
}

#[tokio::test]
async fn unmatched_images_follow_the_default() {
    let settings = Settings { own_namespace: None, unmatched: Unmatched::Deny };
    let e = engine(DIGEST_POLICY, settings);
    let d = e.review(&pod_review("prod", &["quay.io/other/app:v1"], "CREATE"), deadline()).await;
    assert!(!d.allowed);
    assert!(d.message.expect("m").contains("no image policy covers this image"));
}

#[tokio::test]
async fn unparseable_images_fail_matching_policies() {
    let e = engine(DIGEST_POLICY, Settings::default());
    let d = e.review(&pod_review("prod", &["Not A Ref"], "CREATE"), deadline()).await;
    assert!(!d.allowed);
    assert!(d.message.expect("m").contains("does not parse"));
}

#[tokio::test]
async fn updates_check_only_changed_images_and_subresources_are_skipped() {
    let e = engine(DIGEST_POLICY, Settings::default());
    let old = pod_review("prod", &["ghcr.io/acme/app:v1"], "CREATE").object.expect("object");
    let mut new = old.clone();
    new["metadata"]["labels"] = json!({"a": "b"});
    let same = review_of(new.clone(), "", "Pod", "prod", "UPDATE", Some(old.clone()));
    assert!(e.review(&same, deadline()).await.allowed, "unchanged images are not re-checked");
    new["spec"]["containers"][0]["image"] = json!("ghcr.io/acme/app:v2");
    let changed = review_of(new, "", "Pod", "prod", "UPDATE", Some(old.clone()));
    assert!(!e.review(&changed, deadline()).await.allowed, "a new image is checked");
    let delete = review_of(old.clone(), "", "Pod", "prod", "DELETE", Some(old.clone()));
    assert!(e.review(&delete, deadline()).await.allowed);
    let mut status = review_of(old.clone(), "", "Pod", "prod", "UPDATE", None);
    status.sub_resource = Some("status".into());
    assert!(e.review(&status, deadline()).await.allowed);
    let mut ephemeral = review_of(old, "", "Pod", "prod", "UPDATE", None);
    ephemeral.sub_resource = Some("ephemeralcontainers".into());
    assert!(!e.review(&ephemeral, deadline()).await.allowed);
}

#[tokio::test]
async fn allowed_images_restrict_registries() {
    let text = "
apiVersion: portcullis.dev/v1alpha1
kind: ImagePolicy
metadata: {name: registries}
spec:
  images: ['**']
  digest: allow-tags
  allowedImages: ['ghcr.io/acme/**', 'registry.k8s.io/*']
";
    let e = engine(text, Settings::default());
    assert!(
        e.review(&pod_review("a", &["ghcr.io/acme/x/y:1", "registry.k8s.io/pause:3.9"], "CREATE"), deadline())
            .await
            .allowed
    );
    let d = e.review(&pod_review("a", &["ghcr.io/acme/x:1", "docker.io/evil/x"], "CREATE"), deadline()).await;
    assert!(!d.allowed);
    let m = d.message.expect("m");
    assert!(m.contains("docker.io/evil/x is not in allowedImages"), "{m}");
    assert!(!m.contains("ghcr.io/acme/x:1"), "{m}");
}

#[tokio::test]
async fn signature_requirements_fail_closed_until_verifiable() {
    let text = format!(
        "{DIGEST_POLICY}  authorities:\n    - name: k\n      key: {{publicKey: \"-----BEGIN PUBLIC KEY-----\\nx\\n-----END PUBLIC KEY-----\"}}\n"
    );
    let e = engine(&text, Settings::default());
    let pinned = format!("ghcr.io/acme/app@{DIGEST}");
    let d = e.review(&pod_review("prod", &[&pinned], "CREATE"), deadline()).await;
    assert!(!d.allowed);
    let m = d.message.expect("m");
    assert!(m.contains("not yet verifiable") && m.contains("could not be checked"), "{m}");
}

struct Slow(Mutex<u32>);

impl Verifier for Slow {
    fn verify<'a>(&'a self, _request: VerifyRequest<'a>) -> BoxFuture<'a, Outcome> {
        *self.0.lock().expect("lock") += 1;
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Outcome::Verified { detail: crate::verify::verdict::Verification::NothingRequired }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_turns_slow_checks_into_errors() {
    let text = format!(
        "{DIGEST_POLICY}  authorities:\n    - name: k\n      key: {{publicKey: \"-----BEGIN PUBLIC KEY-----\\nx\\n-----END PUBLIC KEY-----\"}}\n"
    );
    let slow = Arc::new(Slow(Mutex::new(0)));
    let e = Engine::fixed(set(&text), slow.clone(), Settings::default());
    let (pinned, other) = (format!("ghcr.io/acme/app@{DIGEST}"), format!("ghcr.io/acme/other@{DIGEST}"));
    let images = [pinned.as_str(), other.as_str(), pinned.as_str()];
    let d = e.review(&pod_review("prod", &images, "CREATE"), Instant::now() + Duration::from_secs(2)).await;
    assert!(!d.allowed);
    let message = d.message.expect("m");
    assert!(message.contains("deadline"));
    assert_eq!(*slow.0.lock().expect("lock"), 2, "both images were checked concurrently, the repeated one once");
    for path in ["spec.containers[0]", "spec.containers[1]", "spec.containers[2]"] {
        assert!(message.contains(path), "every container is named: {message}");
    }
}

#[tokio::test]
async fn resource_rules_see_object_old_object_and_request() {
    let text = "
apiVersion: portcullis.dev/v1alpha1
kind: ResourcePolicy
metadata: {name: secrets}
spec:
  match: {kinds: [Secret], namespaces: [prod]}
  rules:
    - expression: \"request.userInfo.username == 'argocd'\"
      message: Secrets in prod are written by the GitOps reconciler only
    - expression: \"request.operation != 'UPDATE' || oldObject.metadata.name == object.metadata.name\"
---
apiVersion: portcullis.dev/v1alpha1
kind: ResourcePolicy
metadata: {name: broken}
spec:
  mode: warn
  match: {kinds: [ConfigMap]}
  rules:
    - expression: \"object.data.missing == 'x'\"
";
    let e = engine(text, Settings::default());
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let d = e.review(&review_of(secret.clone(), "", "Secret", "prod", "CREATE", None), deadline()).await;
    assert!(!d.allowed);
    assert!(d.message.expect("m").contains("written by the GitOps reconciler only"));
    assert!(e.review(&review_of(secret, "", "Secret", "dev", "CREATE", None), deadline()).await.allowed);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
    let d = e.review(&review_of(cm, "", "ConfigMap", "dev", "CREATE", None), deadline()).await;
    assert!(d.allowed, "warn mode allows even when the expression errors");
    assert!(d.warnings[0].contains("could not be checked"), "{:?}", d.warnings);
}
