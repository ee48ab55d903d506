//! Public keys held in Kubernetes Secrets (`key: {secretRef: {namespace, name, key}}`), kept
//! by watching each named Secret (`list`/`watch` with a `metadata.name` field selector, so RBAC
//! can grant that one Secret by `resourceNames`). A Secret's keys are parsed once per version,
//! when the change arrives; only public keys are kept (a private key or a password in the same
//! Secret, as `cosign generate-key-pair k8s://…` writes, is dropped).
//!
//! Fail-closed: a missing Secret, a missing data key or one that is not a public key is an
//! error naming the Secret. Each key's content has a version (a hash), which is part of the
//! verification cache key: a changed Secret is never served an old result.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::cluster::{Project, Store};
use crate::policy::{Authority, AuthorityKind, KeyRef};

/// The data key read when a `secretRef` names none (what `cosign generate-key-pair k8s://` writes).
pub const DEFAULT_KEY: &str = "cosign.pub";
/// Longest a verification waits for a Secret's first list (bounded by the review's deadline too).
const SYNC_WAIT: Duration = Duration::from_secs(5);

/// A Secret's data as kept: each data key's public key (PEM), or why it is not one.
type Keys = Arc<BTreeMap<String, Result<Arc<str>, String>>>;

/// Keys from Secrets, one watch per referenced Secret, started when a policy first needs it.
pub struct KeySecrets {
    client: kube::Client,
    /// The namespace of a `secretRef` without one (the server's own).
    default_namespace: Option<String>,
    stores: Mutex<HashMap<(String, String), Store<Keys>>>,
}

impl std::fmt::Debug for KeySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySecrets").field("default_namespace", &self.default_namespace).finish()
    }
}

/// Where a `secretRef` points, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Located {
    namespace: String,
    name: String,
    key: String,
}

impl KeySecrets {
    pub fn new(client: kube::Client, default_namespace: Option<String>) -> Self {
        Self { client, default_namespace, stores: Mutex::new(HashMap::new()) }
    }

    fn locate(&self, authority: &Authority) -> Option<Result<Located, String>> {
        let AuthorityKind::Key(KeyRef::Secret { name, namespace, key }) = &authority.kind else {
            return None;
        };
        let Some(namespace) = namespace.clone().or_else(|| self.default_namespace.clone()) else {
            return Some(Err(format!(
                "authority {:?}: secretRef {name:?} names no namespace and the server has no --own-namespace",
                authority.name
            )));
        };
        Some(Ok(Located { namespace, name: name.clone(), key: key.clone().unwrap_or_else(|| DEFAULT_KEY.to_owned()) }))
    }

    /// The watched store of one Secret, started on first use.
    fn store(&self, namespace: &str, name: &str) -> Store<Keys> {
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        stores
            .entry((namespace.to_owned(), name.to_owned()))
            .or_insert_with(|| {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                let project: Project<Secret, Keys> = Arc::new(|secret: &Secret| Some(parse_keys(secret)));
                Store::watch(api, Some(format!("metadata.name={name}")), format!("Secret {namespace}/{name}"), project)
            })
            .clone()
    }

    /// Start watching every Secret `authorities` name (at policy load, so the first review does
    /// not wait for the list).
    pub fn prewarm<'a>(&self, authorities: impl IntoIterator<Item = &'a Authority>) {
        for authority in authorities {
            if let Some(Ok(at)) = self.locate(authority) {
                self.store(&at.namespace, &at.name);
            }
        }
    }

    /// The version of an authority's key as the store has it now: changes whenever the
    /// Secret does (or it appears, disappears, or is first listed), and never comes back to an
    /// earlier value (the store's generation is part of it), so a result cached while the key
    /// changed during its verification is never served for the key it started with. 0 for other
    /// authorities.
    pub fn version(&self, authority: &Authority) -> u64 {
        let mut hasher = DefaultHasher::new();
        match self.locate(authority) {
            None => return 0,
            Some(Err(why)) => why.hash(&mut hasher),
            Some(Ok(at)) => {
                let store = self.store(&at.namespace, &at.name);
                store.generation().hash(&mut hasher);
                match (store.is_synced(), store.get(&at.namespace, &at.name)) {
                    (false, _) => "not listed".hash(&mut hasher),
                    (true, None) => "no secret".hash(&mut hasher),
                    (true, Some(keys)) => match keys.get(&at.key) {
                        None => "no key".hash(&mut hasher),
                        Some(Ok(pem)) => pem.hash(&mut hasher),
                        Some(Err(why)) => why.hash(&mut hasher),
                    },
                }
            }
        }
        hasher.finish()
    }

    /// The PEM public key of a `secretRef` authority (None for other authorities), or why
    /// there is none. Waits for the Secret's first list, within the review's deadline.
    pub async fn key(&self, authority: &Authority) -> Option<Result<String, String>> {
        let at = match self.locate(authority)? {
            Ok(at) => at,
            Err(why) => return Some(Err(why)),
        };
        let store = self.store(&at.namespace, &at.name);
        let secret = format!("Secret {}/{}", at.namespace, at.name);
        if !store.is_synced() {
            let left = super::observe::deadline()
                .map_or(SYNC_WAIT, |d| d.saturating_duration_since(tokio::time::Instant::now()).min(SYNC_WAIT));
            if !store.wait_synced(left).await {
                let why = store.last_error().unwrap_or_else(|| "no answer yet".to_owned());
                return Some(Err(format!("key {secret}: not read from the API server yet ({why})")));
            }
        }
        let Some(keys) = store.get(&at.namespace, &at.name) else {
            return Some(Err(format!(
                "key {secret} does not exist (or portcullis may not read it: RBAC rbac.secretRefs)"
            )));
        };
        Some(match keys.get(&at.key) {
            Some(Ok(pem)) => Ok(pem.to_string()),
            Some(Err(why)) => Err(format!("key {secret}, data key {:?}: {why}", at.key)),
            None => {
                let present: Vec<&str> = keys.keys().map(String::as_str).collect();
                Err(format!("key {secret} has no data key {:?} (it has: {})", at.key, present.join(", ")))
            }
        })
    }
}

/// Every data key of a Secret: its public key if it holds one, else why not (never the
/// content: a private key or a password must not be kept).
fn parse_keys(secret: &Secret) -> Keys {
    let mut keys = BTreeMap::new();
    for (name, bytes) in secret.data.iter().flatten() {
        let parsed = match std::str::from_utf8(&bytes.0) {
            Ok(text) if text.contains("-----BEGIN PUBLIC KEY-----") => super::bundle::parse_public_key(text)
                .map(|_| Arc::from(text))
                .map_err(|e| format!("not a usable public key: {e}")),
            _ => Err("not a PEM public key (-----BEGIN PUBLIC KEY-----)".to_owned()),
        };
        keys.insert(name.clone(), parsed);
    }
    Arc::new(keys)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    #[test]
    fn only_public_keys_are_kept() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE7WJ6dCrtmbqwW6sO3yHtFLJjWmdd\nGgYDj3XB+xDC1Y2Ad5q1tOKbaHJ+8ygnnlzbYdtt8rTR8MGCCJfuRlhQ1A==\n-----END PUBLIC KEY-----\n";
        let private = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nsecret-material\n";
        let secret = Secret {
            data: Some(
                [
                    ("cosign.pub".to_owned(), ByteString(pem.as_bytes().to_vec())),
                    ("cosign.key".to_owned(), ByteString(private.as_bytes().to_vec())),
                    ("cosign.password".to_owned(), ByteString(b"hunter2".to_vec())),
                    ("broken.pub".to_owned(), ByteString(b"-----BEGIN PUBLIC KEY-----\nAAAA\n".to_vec())),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        let keys = parse_keys(&secret);
        assert_eq!(keys.get("cosign.pub").map(|k| k.as_ref().map(|p| p.to_string())), Some(Ok(pem.to_owned())));
        assert!(matches!(keys.get("broken.pub"), Some(Err(why)) if why.contains("not a usable public key")));
        let kept = format!("{keys:?}");
        assert!(!kept.contains("secret-material") && !kept.contains("hunter2"), "{kept}");
    }
}
