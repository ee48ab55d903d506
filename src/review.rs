//! AdmissionReview (`admission.k8s.io/v1`) ⇄ the domain (pure, no HTTP).
//!
//! The request is read strictly enough to answer correctly (apiVersion, kind, a request with a
//! uid) and leniently about the object, which is kept as JSON: policies see it exactly as the
//! API server sent it.

use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::Value;

use crate::decision::Decision;

const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";
/// Longest warning we send; the API server truncates warnings over 256 characters.
const MAX_WARNING: usize = 256;

/// Why a body is not an AdmissionReview we can answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the body is not an AdmissionReview object (a JSON object with apiVersion, kind and request)")]
    NotAnObject,
    #[error(
        "apiVersion {0:?} is not supported: portcullis speaks admission.k8s.io/v1 (set admissionReviewVersions: [v1])"
    )]
    WrongApiVersion(String),
    #[error("kind {0:?} is not AdmissionReview")]
    WrongKind(String),
    #[error("the AdmissionReview has no request")]
    MissingRequest,
    #[error("the AdmissionReview request has no uid")]
    MissingUid,
    #[error("the AdmissionReview request is malformed: {0}")]
    Malformed(serde_json::Error),
}

/// Group, version and kind of the object under review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// One admission request, as the engine sees it.
#[derive(Debug, Clone)]
pub struct Review {
    pub uid: String,
    pub kind: Gvk,
    pub sub_resource: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub operation: String,
    pub username: String,
    pub dry_run: bool,
    /// The object (None for DELETE and CONNECT).
    pub object: Option<Value>,
    /// The existing object (UPDATE and DELETE).
    pub old_object: Option<Value>,
    /// The whole request without `object` and `oldObject`: the CEL `request` variable.
    pub request: Value,
    kube: AdmissionRequest<DynamicObject>,
}

impl Review {
    /// Read an AdmissionReview body.
    pub fn from_slice(body: &[u8]) -> Result<Self, ReviewError> {
        let value: Value = serde_json::from_slice(body).map_err(ReviewError::NotJson)?;
        Self::from_value(value)
    }

    /// Read an AdmissionReview already parsed as JSON.
    pub fn from_value(mut value: Value) -> Result<Self, ReviewError> {
        let root = value.as_object_mut().ok_or(ReviewError::NotAnObject)?;
        match root.get("apiVersion").and_then(Value::as_str) {
            Some(API_VERSION) => {}
            Some(other) => return Err(ReviewError::WrongApiVersion(other.to_owned())),
            None => return Err(ReviewError::WrongApiVersion(String::new())),
        }
        match root.get("kind").and_then(Value::as_str) {
            Some(KIND) => {}
            other => return Err(ReviewError::WrongKind(other.unwrap_or_default().to_owned())),
        }
        let request = match root.get_mut("request") {
            Some(Value::Object(request)) => request,
            _ => return Err(ReviewError::MissingRequest),
        };
        match request.get("uid").and_then(Value::as_str) {
            Some(uid) if !uid.is_empty() => {}
            _ => return Err(ReviewError::MissingUid),
        }
        let object = take_object(request, "object");
        let old_object = take_object(request, "oldObject");
        let request_value = Value::Object(request.clone());
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(value).map_err(ReviewError::Malformed)?;
        let kube: AdmissionRequest<DynamicObject> = review.try_into().map_err(|_| ReviewError::MissingRequest)?;
        Ok(Self {
            uid: kube.uid.clone(),
            kind: Gvk {
                group: kube.kind.group.clone(),
                version: kube.kind.version.clone(),
                kind: kube.kind.kind.clone(),
            },
            sub_resource: kube.sub_resource.clone().filter(|s| !s.is_empty()),
            name: kube.name.clone(),
            namespace: kube.namespace.clone().filter(|s| !s.is_empty()),
            operation: operation_name(&kube.operation).to_owned(),
            username: kube.user_info.username.clone().unwrap_or_default(),
            dry_run: kube.dry_run,
            object,
            old_object,
            request: request_value,
            kube,
        })
    }

    /// A CREATE review of a Pod running `image` in `namespace`: how `portcullis verify` asks the
    /// engine the question the webhook answers.
    pub fn for_image(image: &str, namespace: &str) -> Self {
        let body = serde_json::json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "request": {
                "uid": "portcullis-verify",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "name": "portcullis-verify", "namespace": namespace, "operation": "CREATE",
                "userInfo": {"username": "portcullis-verify"},
                "object": {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "portcullis-verify", "namespace": namespace},
                           "spec": {"containers": [{"name": "image", "image": image}]}},
                "oldObject": null, "dryRun": true
            }
        });
        match Self::from_value(body) {
            Ok(review) => review,
            Err(e) => unreachable!("a fixed, valid review: {e}"),
        }
    }

    /// The review an API server would send for `object` (`portcullis verify -f`): built as an
    /// AdmissionReview body and read by [`Review::from_value`], the webhook's own mapping, so
    /// the engine sees a manifest exactly as it sees the same object at admission.
    pub fn for_object(request: &ObjectRequest<'_>) -> Result<Self, ReviewError> {
        Self::from_value(request.admission_review())
    }

    /// The `kubectl`-style name of what is reviewed, e.g. `Deployment prod/web`.
    pub fn describe(&self) -> String {
        let sub = self.sub_resource.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}{sub}", self.kind.kind, self.name),
            None => format!("{} {}{sub}", self.kind.kind, self.name),
        }
    }

    /// The response for this request carrying `decision`.
    pub fn respond(&self, decision: &Decision) -> AdmissionResponse {
        let mut response = AdmissionResponse::from(&self.kube);
        if !decision.allowed {
            response = response.deny(decision.message.as_deref().unwrap_or("denied by portcullis"));
            response.result.code = 403;
            response.result.reason = "Forbidden".to_owned();
        }
        if !decision.warnings.is_empty() {
            response.warnings = Some(decision.warnings.iter().map(|w| truncate(w, MAX_WARNING)).collect());
        }
        response.audit_annotations = decision.audit_annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        response
    }

    /// The whole response body.
    pub fn respond_review(&self, decision: &Decision) -> AdmissionReview<DynamicObject> {
        self.respond(decision).into_review()
    }

    /// The response body of the mutating webhook: the decision, and a JSON Patch when there is
    /// something to rewrite (only when allowed). The patch is base64, as the API server's
    /// `[]byte` field is written in JSON.
    pub fn respond_mutation(&self, decision: &Decision, patch: Value) -> Value {
        let response = self.respond(decision);
        let empty = patch.as_array().is_none_or(|ops| ops.is_empty());
        let with_patch = if !decision.allowed || empty {
            None
        } else {
            serde_json::from_value::<json_patch::Patch>(patch).ok().and_then(|p| response.clone().with_patch(p).ok())
        };
        // Our own patch always parses; if it did not, pinning nothing is the safe answer
        // (validation still requires a digest).
        let review = with_patch.unwrap_or(response).into_review();
        let mut body = serde_json::to_value(review).unwrap_or(Value::Null);
        if let Some(bytes) = body.pointer("/response/patch").and_then(Value::as_array).cloned() {
            let raw: Vec<u8> = bytes.iter().filter_map(Value::as_u64).filter_map(|b| u8::try_from(b).ok()).collect();
            use base64::Engine as _;
            body["response"]["patch"] = Value::from(base64::engine::general_purpose::STANDARD.encode(raw));
        }
        body
    }
}

/// One object as an API server would submit it for review (what `portcullis verify -f` asks).
#[derive(Debug, Clone)]
pub struct ObjectRequest<'a> {
    /// The manifest (apiVersion, kind, metadata, …).
    pub object: &'a Value,
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: &'a str,
    /// The request's namespace (None for cluster-scoped objects). The object's
    /// `metadata.namespace` is set to it, as the API server does before admission.
    pub namespace: Option<&'a str>,
    /// `request.userInfo.username`.
    pub username: &'a str,
    /// `request.userInfo.groups`.
    pub groups: &'a [String],
    /// `request.uid`.
    pub uid: &'a str,
}

impl ObjectRequest<'_> {
    /// The AdmissionReview body. On DELETE the object is the `oldObject` and `object` is null;
    /// on UPDATE there is no old object (every image counts as new).
    pub fn admission_review(&self) -> Value {
        let api_version = self.object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = self.object.get("kind").and_then(Value::as_str).unwrap_or_default();
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        let mut object = self.object.clone();
        if let (Some(namespace), Some(metadata)) =
            (self.namespace, object.get_mut("metadata").and_then(Value::as_object_mut))
        {
            metadata.insert("namespace".to_owned(), Value::from(namespace));
        }
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let (object, old_object) =
            if self.operation == "DELETE" { (Value::Null, object) } else { (object, Value::Null) };
        let mut request = serde_json::json!({
            "uid": self.uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource_name(kind)},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource_name(kind)},
            "name": name,
            "operation": self.operation,
            "userInfo": {"username": self.username, "groups": self.groups},
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
        });
        if let Some(namespace) = self.namespace {
            request["namespace"] = Value::from(namespace);
        }
        serde_json::json!({"apiVersion": API_VERSION, "kind": KIND, "request": request})
    }
}

/// The resource (plural, lower case) of a kind, as the API server names it: `Deployment` →
/// `deployments`, `NetworkPolicy` → `networkpolicies`, `Ingress` → `ingresses` (the API
/// server's own rule; irregular plurals of custom resources may differ, and only CEL sees it).
pub fn resource_name(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with("ss") || lower.ends_with('x') || lower.ends_with("ch") || lower.ends_with("sh") {
        format!("{lower}es")
    } else if lower.ends_with('s') {
        lower
    } else if let Some(stem) = lower.strip_suffix('y').filter(|s| !s.ends_with(['a', 'e', 'i', 'o', 'u'])) {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// Move `object`/`oldObject` out of the request (null becomes None) so the typed parse skips them.
fn take_object(request: &mut serde_json::Map<String, Value>, key: &str) -> Option<Value> {
    match request.remove(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let cut = s.floor_char_boundary(max - 3);
    format!("{}...", &s[..cut])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::decision::{Finding, Verdict, decide};
    use crate::policy::Mode;

    fn review() -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": "web", "namespace": "prod", "operation": "CREATE",
                "userInfo": {"username": "alice", "groups": ["dev"]},
                "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}},
                "oldObject": null, "dryRun": false
            }
        })
    }

    #[test]
    fn reads_a_review() {
        let r = Review::from_value(review()).expect("review");
        assert_eq!(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(r.kind.kind, "Deployment");
        assert_eq!(r.namespace.as_deref(), Some("prod"));
        assert_eq!(r.operation, "CREATE");
        assert!(r.object.is_some() && r.old_object.is_none());
        assert!(r.request.get("object").is_none());
        assert_eq!(r.request["userInfo"]["username"], "alice");
        assert_eq!(r.describe(), "Deployment prod/web");
    }

    #[test]
    fn an_object_becomes_the_review_an_api_server_sends() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
        let groups = vec!["dev".to_owned()];
        let request = ObjectRequest {
            object: &object,
            operation: "CREATE",
            namespace: Some("prod"),
            username: "alice",
            groups: &groups,
            uid: "u1",
        };
        let r = Review::for_object(&request).expect("review");
        assert_eq!(r.describe(), "Deployment prod/web");
        assert_eq!((r.kind.group.as_str(), r.kind.version.as_str()), ("apps", "v1"));
        assert_eq!(r.object.as_ref().expect("object")["metadata"]["namespace"], "prod");
        assert_eq!(r.request["userInfo"]["groups"], json!(["dev"]));
        assert_eq!(r.request["resource"]["resource"], "deployments");
        let delete = ObjectRequest { operation: "DELETE", ..request.clone() };
        let r = Review::for_object(&delete).expect("review");
        assert!(r.object.is_none() && r.old_object.is_some());
        let cluster = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}});
        let r = Review::for_object(&ObjectRequest { object: &cluster, namespace: None, ..request.clone() })
            .expect("review");
        assert!(r.namespace.is_none() && r.request.get("namespace").is_none());
        let bad = ObjectRequest { operation: "EXPLODE", ..request };
        assert!(matches!(Review::for_object(&bad), Err(ReviewError::Malformed(_))));
        for (kind, plural) in [
            ("Pod", "pods"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Gateway", "gateways"),
            ("Endpoints", "endpoints"),
        ] {
            assert_eq!(resource_name(kind), plural);
        }
    }

    #[test]
    fn rejects_what_it_cannot_answer() {
        let mut v = review();
        v["apiVersion"] = json!("admission.k8s.io/v1beta1");
        assert!(matches!(Review::from_value(v), Err(ReviewError::WrongApiVersion(_))));
        let mut v = review();
        v["kind"] = json!("Pod");
        assert!(matches!(Review::from_value(v), Err(ReviewError::WrongKind(_))));
        let mut v = review();
        v.as_object_mut().expect("object").remove("request");
        assert!(matches!(Review::from_value(v), Err(ReviewError::MissingRequest)));
        let mut v = review();
        v["request"].as_object_mut().expect("object").remove("uid");
        assert!(matches!(Review::from_value(v), Err(ReviewError::MissingUid)));
        let mut v = review();
        v["request"]["operation"] = json!("EXPLODE");
        assert!(matches!(Review::from_value(v), Err(ReviewError::Malformed(_))));
        assert!(matches!(Review::from_slice(b"{nope"), Err(ReviewError::NotJson(_))));
        assert!(matches!(Review::from_slice(b"[]"), Err(ReviewError::NotAnObject)));
    }

    #[test]
    fn responses_echo_uid_and_carry_the_decision() {
        let r = Review::from_value(review()).expect("review");
        let d = decide(vec![
            Finding::new("deny-me", Mode::Enforce, "image x", Verdict::Fail("no digest".into())),
            Finding::new("warn-me", Mode::Warn, "image y", Verdict::Fail("w".repeat(400))),
            Finding::new("audit-me", Mode::Audit, "image z", Verdict::Fail("unsigned".into())),
        ]);
        let body = serde_json::to_value(r.respond_review(&d)).expect("json");
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["kind"], "AdmissionReview");
        let resp = &body["response"];
        assert_eq!(resp["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(resp["allowed"], false);
        assert_eq!(resp["status"]["code"], 403);
        assert!(resp["status"]["message"].as_str().expect("m").contains("deny-me"));
        let warning = resp["warnings"][0].as_str().expect("warning");
        assert!(warning.len() <= MAX_WARNING && warning.ends_with("..."));
        assert!(resp["auditAnnotations"]["audit-me"].as_str().expect("a").contains("unsigned"));
        assert!(resp.get("patch").is_none());
    }
}
