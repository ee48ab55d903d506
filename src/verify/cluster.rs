//! Cluster state without API calls on the request path: a store of Kubernetes objects kept by
//! list + watch (a reflector). The first list fills it and marks it synced; a watch from the
//! list's `resourceVersion` then applies every change, follows `BOOKMARK`s (so a resumed watch
//! starts from a recent version) and relists when the server says the version is gone (410).
//! A broken watch is resumed from the last version seen, after a back-off.
//!
//! Only a projection of each object is kept (the part a caller needs, parsed once per object
//! version), keyed by (namespace, name); an object the projection refuses is not kept.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::core::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// Objects per list page.
const PAGE: u32 = 500;
/// How long one watch request lasts before it is renewed (the API server's own default range).
const WATCH_SECONDS: u32 = 290;
/// Longest wait between retries after an API error.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A projection: what is kept of an object (None: not kept).
pub type Project<K, T> = Arc<dyn Fn(&K) -> Option<T> + Send + Sync>;

/// A watched set of objects, by (namespace, name). Cheap to clone; the watch stops when the
/// last clone is dropped (at the next event or watch renewal).
pub struct Store<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Store<T> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<T> Debug for Store<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("what", &self.shared.what).field("synced", &*self.shared.synced.borrow()).finish()
    }
}

struct Shared<T> {
    what: String,
    objects: RwLock<HashMap<(String, String), T>>,
    synced: watch::Sender<bool>,
    /// Why the last list failed, until one succeeds.
    error: Mutex<Option<String>>,
    /// Changes applied so far (lists and events).
    generation: AtomicU64,
}

impl<T: Clone + Send + Sync + 'static> Store<T> {
    /// Start watching `api` (optionally narrowed by a field selector), keeping `project(object)`.
    /// `what` names the objects in logs (`secrets in prod`). Needs a Tokio runtime.
    pub fn watch<K>(api: Api<K>, fields: Option<String>, what: String, project: Project<K, T>) -> Self
    where
        K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            what,
            objects: RwLock::new(HashMap::new()),
            synced: watch::Sender::new(false),
            error: Mutex::new(None),
            generation: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&shared);
        tokio::spawn(reflect(api, fields, project, weak));
        Self { shared }
    }

    /// The kept projection of `namespace/name`, if the object exists (as of the last event).
    pub fn get(&self, namespace: &str, name: &str) -> Option<T> {
        let objects = self.shared.objects.read().unwrap_or_else(|p| p.into_inner());
        objects.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }

    /// Objects kept.
    pub fn len(&self) -> usize {
        self.shared.objects.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first list has been applied.
    pub fn is_synced(&self) -> bool {
        *self.shared.synced.borrow()
    }

    /// Wait until the first list has been applied, at most `timeout`; whether it has.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.synced.subscribe();
        matches!(tokio::time::timeout(timeout, rx.wait_for(|s| *s)).await, Ok(Ok(_)))
    }

    /// How many lists and events have been applied: never the same after any change, so a
    /// cache key holding it is never reused across a change (even one undone later).
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    /// Why the last list failed (the API server's answer), until one succeeds.
    pub fn last_error(&self) -> Option<String> {
        self.shared.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What this store holds, and why it is not listed yet if it is not (for messages).
    pub fn describe(&self) -> String {
        match self.last_error() {
            Some(error) => format!("{}: {error}", self.shared.what),
            None => self.shared.what.clone(),
        }
    }

    /// What this store holds (for messages).
    pub fn what(&self) -> &str {
        &self.shared.what
    }
}

impl<T> Shared<T> {
    fn replace(&self, objects: HashMap<(String, String), T>) {
        *self.objects.write().unwrap_or_else(|p| p.into_inner()) = objects;
        self.generation.fetch_add(1, Ordering::SeqCst);
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.synced.send_replace(true);
    }

    fn apply(&self, key: (String, String), value: Option<T>) {
        let mut objects = self.objects.write().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(value) => objects.insert(key, value),
            None => objects.remove(&key),
        };
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

fn key_of<K: Resource>(object: &K) -> (String, String) {
    let meta = object.meta();
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

fn version_of<K: Resource>(object: &K) -> Option<String> {
    object.meta().resource_version.clone()
}

/// Why a watch ended.
enum Ended {
    /// The version is too old (410 Gone): list again.
    Gone,
    /// The request timed out or the stream ended: watch again from the last version.
    Renew,
    /// An error: wait, then watch again from the last version.
    Failed(String),
    /// Every handle to the store was dropped.
    Dropped,
}

/// The reflector: list, watch, apply; relist on 410; back off on errors.
async fn reflect<K, T>(api: Api<K>, fields: Option<String>, project: Project<K, T>, shared: Weak<Shared<T>>)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    let mut backoff = Duration::from_millis(100);
    let what = match shared.upgrade() {
        Some(s) => s.what.clone(),
        None => return,
    };
    loop {
        let version = match list(&api, fields.as_deref(), &project, &shared).await {
            Ok(Some(version)) => version,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%what, %error, retry_in = ?backoff, "listing from the API server failed");
                if let Some(shared) = shared.upgrade() {
                    *shared.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::debug!(%what, %version, "listed");
        let mut version = version;
        loop {
            match watch_once(&api, fields.as_deref(), &project, &shared, &mut version).await {
                Ended::Gone => {
                    tracing::debug!(%what, "resource version gone (410); listing again");
                    break;
                }
                Ended::Renew => backoff = Duration::from_millis(100),
                Ended::Failed(error) => {
                    tracing::warn!(%what, %error, retry_in = ?backoff, "watching the API server failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Ended::Dropped => return,
            }
        }
    }
}

/// List every object (in pages) and replace the store; the list's resource version, or None
/// when the store was dropped.
async fn list<K, T>(
    api: &Api<K>,
    fields: Option<&str>,
    project: &Project<K, T>,
    shared: &Weak<Shared<T>>,
) -> Result<Option<String>, kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let mut objects = HashMap::new();
    let mut params = ListParams::default().limit(PAGE);
    if let Some(fields) = fields {
        params = params.fields(fields);
    }
    loop {
        let page = api.list(&params).await?;
        for object in &page.items {
            if let Some(value) = project(object) {
                objects.insert(key_of(object), value);
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params.continue_token = Some(token),
            None => {
                let version = page.metadata.resource_version.unwrap_or_default();
                let Some(shared) = shared.upgrade() else { return Ok(None) };
                shared.replace(objects);
                return Ok(Some(version));
            }
        }
    }
}

async fn watch_once<K, T>(
    api: &Api<K>,
    fields: Option<&str>,
    project: &Project<K, T>,
    shared: &Weak<Shared<T>>,
    version: &mut String,
) -> Ended
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let mut params = WatchParams::default().timeout(WATCH_SECONDS);
    if let Some(fields) = fields {
        params = params.fields(fields);
    }
    let stream = match api.watch(&params, version).await {
        Ok(stream) => stream,
        Err(kube::Error::Api(status)) if status.code == 410 => return Ended::Gone,
        Err(e) => return Ended::Failed(e.to_string()),
    };
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let Some(shared) = shared.upgrade() else { return Ended::Dropped };
        match event {
            Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => {
                shared.apply(key_of(&object), project(&object));
                *version = version_of(&object).unwrap_or_else(|| version.clone());
            }
            Ok(WatchEvent::Deleted(object)) => {
                shared.apply(key_of(&object), None);
                *version = version_of(&object).unwrap_or_else(|| version.clone());
            }
            Ok(WatchEvent::Bookmark(bookmark)) => *version = bookmark.metadata.resource_version,
            Ok(WatchEvent::Error(status)) if status.code == 410 => return Ended::Gone,
            Ok(WatchEvent::Error(status)) => return Ended::Failed(format!("{} ({})", status.message, status.code)),
            Err(e) => return Ended::Failed(e.to_string()),
        }
    }
    if shared.strong_count() == 0 { Ended::Dropped } else { Ended::Renew }
}
