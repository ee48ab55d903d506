//! A minimal Kubernetes API endpoint for the client's tests (no kube-apiserver can run here):
//! core/v1 Secrets and ServiceAccounts with list (field selectors, `limit`/`continue`), watch
//! (from a `resourceVersion`, line-delimited events, a `BOOKMARK` at start, `ERROR 410 Gone`
//! for a version older than the horizon) and get; every request is counted.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// An object's place: (resource, namespace, name).
type Key = (String, String, String);

#[derive(Clone, Debug)]
enum Event {
    Change {
        version: u64,
        key: Key,
        kind: &'static str,
        object: Value,
    },
    /// The watch cache was compacted: every open watch ends with 410 Gone.
    Gone,
}

#[derive(Default)]
struct Inner {
    version: u64,
    horizon: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Event>,
    failing_lists: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    requests: Mutex<Vec<String>>,
}

/// The endpoint; dropped with the test's runtime.
#[derive(Clone)]
pub struct KubeApi {
    pub url: String,
    shared: Arc<Shared>,
}

fn resource_of(object: &Value) -> &'static str {
    match object["kind"].as_str() {
        Some("ServiceAccount") => "serviceaccounts",
        _ => "secrets",
    }
}

fn kind_of(resource: &str) -> &'static str {
    if resource == "serviceaccounts" { "ServiceAccount" } else { "Secret" }
}

impl KubeApi {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { version: 100, ..Inner::default() }),
            events: broadcast::channel(1024).0,
            requests: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/api/v1/{resource}", axum::routing::get(all_namespaces))
            .route("/api/v1/namespaces/{ns}/{resource}", axum::routing::get(in_namespace))
            .route("/api/v1/namespaces/{ns}/{resource}/{name}", axum::routing::get(get_one))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared }
    }

    /// A client for this endpoint.
    pub fn client(&self) -> kube::Client {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        kube::Client::try_from(kube::Config::new(self.url.parse().expect("uri"))).expect("client")
    }

    /// Create or replace an object (its `kind` says the resource); returns its new version.
    pub fn put(&self, mut object: Value) -> u64 {
        let resource = resource_of(&object).to_owned();
        let ns = object["metadata"]["namespace"].as_str().expect("namespace").to_owned();
        let name = object["metadata"]["name"].as_str().expect("name").to_owned();
        let mut inner = self.shared.inner.lock().expect("lock");
        inner.version += 1;
        let version = inner.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let key = (resource, ns, name);
        let kind = if inner.objects.insert(key.clone(), object.clone()).is_some() { "MODIFIED" } else { "ADDED" };
        let event = Event::Change { version, key, kind, object };
        inner.log.push(event.clone());
        let _ = self.shared.events.send(event);
        version
    }

    /// Delete an object.
    pub fn delete(&self, resource: &str, ns: &str, name: &str) {
        let mut inner = self.shared.inner.lock().expect("lock");
        inner.version += 1;
        let version = inner.version;
        let key = (resource.to_owned(), ns.to_owned(), name.to_owned());
        let Some(mut object) = inner.objects.remove(&key) else { return };
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let event = Event::Change { version, key, kind: "DELETED", object };
        inner.log.push(event.clone());
        let _ = self.shared.events.send(event);
    }

    /// Compact: every open watch ends with 410 Gone, and so does a watch from an older version.
    pub fn expire(&self) {
        let mut inner = self.shared.inner.lock().expect("lock");
        inner.horizon = inner.version + 1;
        inner.version += 1;
        let _ = self.shared.events.send(Event::Gone);
    }

    /// Make lists fail (500) or work again.
    pub fn fail_lists(&self, fail: bool) {
        self.shared.inner.lock().expect("lock").failing_lists = fail;
    }

    /// Requests so far, as `LIST|WATCH|GET path`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// Requests so far of one verb (`LIST`, `WATCH`, `GET`).
    pub fn count(&self, verb: &str) -> usize {
        self.requests().iter().filter(|r| r.starts_with(verb)).count()
    }
}

type Params = Query<BTreeMap<String, String>>;

async fn all_namespaces(State(s): State<Arc<Shared>>, Path(resource): Path<String>, Query(q): Params) -> Response {
    collection(s, resource, None, q)
}

async fn in_namespace(
    State(s): State<Arc<Shared>>,
    Path((ns, resource)): Path<(String, String)>,
    Query(q): Params,
) -> Response {
    collection(s, resource, Some(ns), q)
}

async fn get_one(State(s): State<Arc<Shared>>, Path((ns, resource, name)): Path<(String, String, String)>) -> Response {
    s.requests.lock().expect("lock").push(format!("GET {resource} {ns}/{name}"));
    let inner = s.inner.lock().expect("lock");
    match inner.objects.get(&(resource.clone(), ns, name)) {
        Some(object) => axum::Json(object.clone()).into_response(),
        None => status(404, "NotFound", &format!("{resource} not found")),
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": message});
    (StatusCode::from_u16(code).expect("code"), axum::Json(body)).into_response()
}

/// Whether an object matches a field selector (`a=b,c=d`; `type`, `metadata.name`, `metadata.namespace`).
fn selected(object: &Value, selector: Option<&String>) -> bool {
    selector.is_none_or(|selector| {
        selector.split(',').filter(|t| !t.is_empty()).all(|term| {
            let (field, value) = term.split_once('=').expect("field selector term");
            let pointer = format!("/{}", field.replace('.', "/"));
            object.pointer(&pointer).and_then(Value::as_str) == Some(value)
        })
    })
}

fn matches(key: &Key, object: &Value, resource: &str, ns: Option<&str>, selector: Option<&String>) -> bool {
    key.0 == resource && ns.is_none_or(|ns| key.1 == ns) && selected(object, selector)
}

fn collection(s: Arc<Shared>, resource: String, ns: Option<String>, q: BTreeMap<String, String>) -> Response {
    let watching = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = if watching { "WATCH" } else { "LIST" };
    let query: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    s.requests.lock().expect("lock").push(format!(
        "{verb} {resource} {} {}",
        ns.as_deref().unwrap_or("*"),
        query.join("&")
    ));
    let selector = q.get("fieldSelector");
    if !watching {
        let inner = s.inner.lock().expect("lock");
        if inner.failing_lists {
            return status(500, "InternalError", "the test made lists fail");
        }
        let items: Vec<Value> = inner
            .objects
            .iter()
            .filter(|(key, object)| matches(key, object, &resource, ns.as_deref(), selector))
            .map(|(_, object)| object.clone())
            .collect();
        let offset: usize = q.get("continue").map_or(0, |c| c.parse().expect("continue"));
        let limit: usize = q.get("limit").map_or(usize::MAX, |l| l.parse().expect("limit"));
        let page: Vec<Value> = items.iter().skip(offset).take(limit).cloned().collect();
        let mut metadata = json!({"resourceVersion": inner.version.to_string()});
        if offset + page.len() < items.len() {
            metadata["continue"] = json!((offset + page.len()).to_string());
        }
        let body = json!({"kind": format!("{}List", kind_of(&resource)), "apiVersion": "v1", "metadata": metadata, "items": page});
        return axum::Json(body).into_response();
    }
    let from: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let mut live = s.events.subscribe();
    {
        let inner = s.inner.lock().expect("lock");
        if from < inner.horizon {
            let _ = tx.send(gone());
            drop(tx);
            return stream_body(rx);
        }
        for event in &inner.log {
            if let Event::Change { version, key, kind, object } = event
                && *version > from
                && matches(key, object, &resource, ns.as_deref(), selector)
            {
                let _ = tx.send(line(json!({"type": kind, "object": object})));
            }
        }
        let bookmark = json!({"type": "BOOKMARK", "object": {"kind": kind_of(&resource), "apiVersion": "v1", "metadata": {"resourceVersion": inner.version.to_string()}}});
        let _ = tx.send(line(bookmark));
    }
    let selector = selector.cloned();
    tokio::spawn(async move {
        while let Ok(event) = live.recv().await {
            match event {
                Event::Gone => {
                    let _ = tx.send(gone());
                    return;
                }
                Event::Change { version, key, kind, object } => {
                    if version > from
                        && matches(&key, &object, &resource, ns.as_deref(), selector.as_ref())
                        && tx.send(line(json!({"type": kind, "object": object}))).is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    stream_body(rx)
}

fn line(v: Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

fn gone() -> Bytes {
    line(
        json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410, "message": "too old resource version"}}),
    )
}

fn stream_body(rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    (StatusCode::OK, [("content-type", "application/json")], Body::from_stream(stream)).into_response()
}
