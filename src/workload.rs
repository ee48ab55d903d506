//! Images out of workload objects, each with the JSON pointer where it was found (pure).
//!
//! Known kinds and where their pod spec lives:
//!
//! | group   | kinds                                              | pod spec                          |
//! |---------|----------------------------------------------------|-----------------------------------|
//! | core    | Pod                                                | `/spec`                           |
//! | core    | ReplicationController, PodTemplate                 | `/spec/template/spec`, `/template/spec` |
//! | apps    | Deployment, ReplicaSet, StatefulSet, DaemonSet     | `/spec/template/spec`             |
//! | batch   | Job                                                | `/spec/template/spec`             |
//! | batch   | CronJob                                            | `/spec/jobTemplate/spec/template/spec` |
//!
//! Every field of a pod spec that makes the kubelet pull an image (Kubernetes 1.35 PodSpec), in
//! the order the kubelet uses them:
//!
//! | field                                   | what is pulled                                       |
//! |-----------------------------------------|------------------------------------------------------|
//! | `initContainers[].image`                | init and sidecar (restartPolicy: Always) containers  |
//! | `containers[].image`                    | app containers                                       |
//! | `ephemeralContainers[].image`           | debug containers (`pods/ephemeralcontainers`)        |
//! | `volumes[].image.reference`             | OCI image volumes, mounted read-only into containers |
//!
//! Nothing else in a PodSpec names an image: `volumes[].csi`/`flexVolume` name drivers already on
//! the node, `volumes[].gitRepo` (deprecated) clones a Git repository, not an image, and
//! `resourceClaims`, `runtimeClassName` and `os` select node features. Every image found is a
//! workload image of the same standing: matched, verified, pinned and listed in denials alike.
//! Objects of other kinds carry no images as far as image policies are concerned; resource rules
//! still see them.

use serde_json::Value;

use crate::image::{ImageRef, ImageRefError};

/// The container lists of a pod spec, in the order the kubelet starts them.
const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// One image found in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadImage {
    /// JSON pointer of the field naming the image, e.g. `/spec/template/spec/containers/0/image`
    /// or `/spec/volumes/2/image/reference`.
    pub pointer: String,
    /// The container's (or image volume's) name (empty if it has none).
    pub container: String,
    /// The reference exactly as written.
    pub raw: String,
    /// The normalised reference, or why it does not parse.
    pub image: Result<ImageRef, ImageRefError>,
}

impl WorkloadImage {
    /// The field path in the `kubectl explain` style, e.g. `spec.containers[0].image`.
    pub fn field_path(&self) -> String {
        pointer_to_field_path(&self.pointer)
    }
}

/// Where the pod spec of a kind lives, for the kinds that have one.
pub fn pod_spec_pointer(group: &str, kind: &str) -> Option<&'static str> {
    match (group, kind) {
        ("", "Pod") => Some("/spec"),
        ("", "PodTemplate") => Some("/template/spec"),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => Some("/spec/template/spec"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// Whether objects of this group and kind carry images.
pub fn is_workload(group: &str, kind: &str) -> bool {
    pod_spec_pointer(group, kind).is_some()
}

/// Every image of a workload object. Unknown kinds, and objects without a pod spec, yield none.
pub fn images(group: &str, kind: &str, object: &Value) -> Vec<WorkloadImage> {
    let Some(spec_pointer) = pod_spec_pointer(group, kind) else {
        return Vec::new();
    };
    let Some(spec) = object.pointer(spec_pointer) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for list in CONTAINER_LISTS {
        let Some(containers) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (index, container) in containers.iter().enumerate() {
            // A container without an image (or with a non-string one) is invalid; report it as
            // an unparseable reference rather than skipping it.
            found.push(found_at(format!("{spec_pointer}/{list}/{index}/image"), container, container.get("image")));
        }
    }
    if let Some(volumes) = spec.get("volumes").and_then(Value::as_array) {
        for (index, volume) in volumes.iter().enumerate() {
            // `image: {reference: …}` makes it an image volume; a present but malformed `image`
            // is reported, never skipped.
            let Some(source) = volume.get("image").filter(|v| !v.is_null()) else {
                continue;
            };
            let reference = source.get("reference");
            found.push(found_at(format!("{spec_pointer}/volumes/{index}/image/reference"), volume, reference));
        }
    }
    found
}

/// One image field, parsed.
fn found_at(pointer: String, owner: &Value, field: Option<&Value>) -> WorkloadImage {
    let (raw, image) = match field {
        Some(Value::String(s)) => (s.clone(), ImageRef::parse(s)),
        Some(other) => (other.to_string(), Err(ImageRefError::NotAString)),
        None => (String::new(), Err(ImageRefError::Empty)),
    };
    let name = owner.get("name").and_then(Value::as_str).unwrap_or_default();
    WorkloadImage { pointer, container: name.to_owned(), image, raw }
}

/// `/spec/containers/0/image` → `spec.containers[0].image`.
pub fn pointer_to_field_path(pointer: &str) -> String {
    let mut out = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod_spec() -> Value {
        json!({
            "initContainers": [{"name": "init", "image": "busybox:1.36"}],
            "containers": [
                {"name": "app", "image": "ghcr.io/acme/app:v1"},
                {"name": "sidecar", "image": "envoyproxy/envoy:v1.30"}
            ],
            "ephemeralContainers": [{"name": "debug", "image": "nicolaka/netshoot"}],
            "volumes": [
                {"name": "cache", "emptyDir": {}},
                {"name": "models", "image": {"reference": "ghcr.io/acme/models:v1", "pullPolicy": "IfNotPresent"}}
            ]
        })
    }

    #[test]
    fn every_kind_and_every_list() {
        let cases = [
            ("", "Pod", json!({"spec": pod_spec()}), "/spec"),
            ("", "ReplicationController", json!({"spec": {"template": {"spec": pod_spec()}}}), "/spec/template/spec"),
            ("", "PodTemplate", json!({"template": {"spec": pod_spec()}}), "/template/spec"),
            ("apps", "Deployment", json!({"spec": {"template": {"spec": pod_spec()}}}), "/spec/template/spec"),
            ("apps", "ReplicaSet", json!({"spec": {"template": {"spec": pod_spec()}}}), "/spec/template/spec"),
            ("apps", "StatefulSet", json!({"spec": {"template": {"spec": pod_spec()}}}), "/spec/template/spec"),
            ("apps", "DaemonSet", json!({"spec": {"template": {"spec": pod_spec()}}}), "/spec/template/spec"),
            ("batch", "Job", json!({"spec": {"template": {"spec": pod_spec()}}}), "/spec/template/spec"),
            (
                "batch",
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec()}}}}}),
                "/spec/jobTemplate/spec/template/spec",
            ),
        ];
        for (group, kind, object, prefix) in cases {
            let found = images(group, kind, &object);
            let pointers: Vec<_> = found.iter().map(|i| i.pointer.clone()).collect();
            assert_eq!(
                pointers,
                vec![
                    format!("{prefix}/initContainers/0/image"),
                    format!("{prefix}/containers/0/image"),
                    format!("{prefix}/containers/1/image"),
                    format!("{prefix}/ephemeralContainers/0/image"),
                    format!("{prefix}/volumes/1/image/reference"),
                ],
                "{kind}"
            );
            assert_eq!(found[1].container, "app");
            assert_eq!(
                found[0].image.as_ref().map(ToString::to_string),
                Ok("docker.io/library/busybox:1.36".to_owned())
            );
        }
    }

    #[test]
    fn unknown_kinds_and_other_groups_carry_no_images() {
        let object = json!({"spec": {"template": {"spec": pod_spec()}}});
        assert!(images("", "ConfigMap", &object).is_empty());
        assert!(images("example.com", "Deployment", &object).is_empty());
        assert!(images("apps", "Deployment", &json!({"spec": {}})).is_empty());
    }

    #[test]
    fn image_volumes_are_images() {
        let found = images("", "Pod", &json!({"spec": pod_spec()}));
        let volume = found.last().expect("the image volume");
        assert_eq!(volume.container, "models");
        assert_eq!(volume.field_path(), "spec.volumes[1].image.reference");
        assert_eq!(volume.image.as_ref().map(ToString::to_string), Ok("ghcr.io/acme/models:v1".to_owned()));
        // A malformed image volume is reported, not skipped.
        let object = json!({"spec": {"containers": [], "volumes": [
            {"name": "a", "image": {}},
            {"name": "b", "image": {"reference": 7}},
            {"name": "c", "image": {"reference": "GHCR.IO:443/acme/x"}}
        ]}});
        let found = images("", "Pod", &object);
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].image, Err(ImageRefError::Empty));
        assert_eq!(found[1].image, Err(ImageRefError::NotAString));
        assert_eq!(found[2].image.as_ref().map(ToString::to_string), Ok("ghcr.io/acme/x:latest".to_owned()));
    }

    #[test]
    fn bad_and_missing_images_are_reported() {
        let object = json!({"spec": {"containers": [
            {"name": "a", "image": "Not A Ref"},
            {"name": "b"},
            {"name": "c", "image": 7}
        ]}});
        let found = images("", "Pod", &object);
        assert_eq!(found.len(), 3);
        assert!(found.iter().all(|i| i.image.is_err()));
        assert_eq!(found[1].raw, "");
    }

    #[test]
    fn field_paths() {
        assert_eq!(
            pointer_to_field_path("/spec/template/spec/containers/10/image"),
            "spec.template.spec.containers[10].image"
        );
    }
}
