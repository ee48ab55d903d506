//! Unit tests of the namespace binding.
#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

fn secret(ns: Option<&str>, name: &str, pw: &str) -> Node {
    let ns = ns.map_or(String::new(), |n| format!("  namespace: {n}\n"));
    let text = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n{ns}stringData:\n  pw: {pw}\n");
    crate::sops::yaml::parse(&text).unwrap().remove(0).root
}

fn built(node: &Node) -> serde_json::Value {
    let text = crate::sops::yaml_emit::emit(&[node]);
    serde_yaml_ng::from_str(&text).unwrap()
}

fn manifest_with(ns: Option<&str>) -> (Manifest, serde_json::Value) {
    let mut m = Manifest::new(&[7; 16]);
    let mut node = secret(ns, "db", "correct-horse-battery");
    m.record_resource("base/db.enc.yaml", &mut node);
    let obj = built(&node);
    assert!(obj["metadata"]["annotations"][ANNOTATION].is_string());
    (m, obj)
}

#[test]
fn same_identity_passes_and_the_annotation_is_removed() {
    let (m, obj) = manifest_with(Some("prod"));
    let mut objs = vec![obj];
    assert_eq!(m.check(&mut objs, &CheckOptions::default()), vec![]);
    assert!(objs[0]["metadata"].get("annotations").is_none(), "{}", objs[0]);
    let m2 = Manifest::from_json(m.to_json().as_bytes()).unwrap();
    assert_eq!(m2.origins, m.origins);
}

#[test]
fn another_namespace_is_refused() {
    let (m, mut obj) = manifest_with(Some("prod"));
    obj["metadata"]["namespace"] = json!("dev");
    let v = m.check(&mut [obj], &CheckOptions::default());
    assert_eq!(v.len(), 1, "{v:?}");
    let text = v[0].to_string();
    assert!(text.starts_with("Secret prod/db was encrypted for namespace prod; this build puts it in dev"), "{text}");
}

#[test]
fn no_namespace_in_the_build_uses_the_default() {
    let (m, mut obj) = manifest_with(Some("prod"));
    obj["metadata"].as_object_mut().unwrap().remove("namespace");
    assert_eq!(m.check(&mut [obj.clone()], &CheckOptions::default()).len(), 1);
    let opts = CheckOptions { default_namespace: Some("prod".into()), ..Default::default() };
    assert_eq!(m.check(&mut [obj], &opts), vec![]);
}

#[test]
fn prefix_is_denied_by_default_and_allowed_by_switch() {
    let (m, mut obj) = manifest_with(Some("prod"));
    obj["metadata"]["name"] = json!("app-db-v1");
    let v = m.check(&mut [obj.clone()], &CheckOptions::default());
    assert!(matches!(v.as_slice(), [Violation::Renamed { .. }]), "{v:?}");
    let opts = CheckOptions { renamed: Renamed::Allow, ..Default::default() };
    let v = m.check(&mut [obj.clone()], &opts);
    assert!(matches!(v.as_slice(), [Violation::RenamedAllowed { .. }]) && !v[0].refuses(), "{v:?}");
    obj["metadata"]["name"] = json!("other");
    assert!(matches!(m.check(&mut [obj], &opts).as_slice(), [Violation::Changed { .. }]));
}

#[test]
fn no_namespace_in_the_file_goes_anywhere() {
    let (m, mut obj) = manifest_with(None);
    obj["metadata"]["namespace"] = json!("dev");
    assert_eq!(m.check(&mut [obj], &CheckOptions::default()), vec![]);
}

#[test]
fn removing_the_annotation_does_not_hide_the_values() {
    let (m, mut obj) = manifest_with(Some("prod"));
    obj["metadata"].as_object_mut().unwrap().remove("annotations");
    obj["metadata"]["namespace"] = json!("dev");
    let v = m.check(&mut [obj.clone()], &CheckOptions::default());
    assert!(matches!(v.as_slice(), [Violation::Value { .. }]), "{v:?}");
    assert!(v[0].to_string().contains("Secret prod/db"), "{}", v[0]);
    // copied, base64-encoded, into a ConfigMap in dev
    let cm = json!({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "dev"},
        "data": {"x": STANDARD.encode("correct-horse-battery")}});
    assert_eq!(m.check(&mut [cm], &CheckOptions::default()).len(), 1);
    // short values are not tracked; in prod the value is fine
    obj["metadata"]["namespace"] = json!("prod");
    assert_eq!(m.check(&mut [obj], &CheckOptions::default()), vec![]);
}

#[test]
fn forged_token_is_refused() {
    let (m, mut obj) = manifest_with(Some("prod"));
    obj["metadata"]["annotations"][ANNOTATION] = json!("0123");
    let v = m.check(&mut [obj], &CheckOptions::default());
    assert!(matches!(v.as_slice(), [Violation::UnknownToken { .. }]), "{v:?}");
}

#[test]
fn manifest_rejects_garbage() {
    assert!(Manifest::from_json(b"{}").is_err());
    assert!(Manifest::from_json(br#"{"version":2,"salt":"00000000000000000000000000000000","origins":[]}"#).is_err());
}
