//! Registry credentials from Kubernetes imagePullSecrets: the pod's own and its service
//! account's, used the way the kubelet uses them (Secrets of type
//! `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`). A Secret that is missing is
//! skipped (the kubelet does the same). In a cluster they are kept in watched stores
//! ([`super::cluster`]), so a review makes no API request once the stores are synced.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use serde_json::Value;

use super::BoxFuture;
use super::cluster::{Project, Store};
use super::registry::auth::Keychain;

/// Where a pod's pull credentials are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullContext {
    pub namespace: String,
    /// `spec.imagePullSecrets[].name` of the pod (template).
    pub secrets: Vec<String>,
    /// `spec.serviceAccountName` (`default` when unset).
    pub service_account: String,
}

impl PullContext {
    /// The pull context of a pod spec in `namespace`.
    pub fn from_pod_spec(namespace: &str, spec: &Value) -> Self {
        let secrets = spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(|s| s.get("name").and_then(Value::as_str)).map(str::to_owned).collect())
            .unwrap_or_default();
        let service_account = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_owned();
        Self { namespace: namespace.to_owned(), secrets, service_account }
    }
}

/// Why pull secrets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PullSecretError {
    #[error("reading {what} in namespace {namespace} from the API server failed: {error}")]
    Api { what: String, namespace: String, error: String },
    #[error("pull secret {namespace}/{name}: {error}")]
    Format { namespace: String, name: String, error: String },
    #[error(
        "the imagePullSecrets and service accounts of namespace {namespace} are not read from the API server \
         yet ({waiting} not listed); the check is retried at the next review"
    )]
    NotSynced { namespace: String, waiting: String },
}

/// A source of pull credentials (the API server in a cluster; a map in tests).
pub trait SecretSource: Send + Sync {
    /// The registry credentials of every pull secret of `context`, in the kubelet's order:
    /// the pod's secrets, then the service account's.
    fn keychain<'a>(&'a self, context: &'a PullContext) -> BoxFuture<'a, Result<Keychain, PullSecretError>>;
}

/// Which namespaces' pull secrets and service accounts are watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (needs `list` and `watch` cluster-wide).
    All,
    /// These namespaces only (a Role in each); other namespaces pull anonymously.
    Namespaces(Vec<String>),
}

/// A pull secret as kept: its docker config parsed once per version, or why it could not be.
type Parsed = Arc<Result<Keychain, String>>;

/// The watched objects of one scope: service accounts (their imagePullSecrets names only) and
/// the Secrets of the two pull-secret types (their parsed credentials only).
#[derive(Debug, Clone)]
struct Watched {
    accounts: Store<Arc<[String]>>,
    config_json: Store<Parsed>,
    dockercfg: Store<Parsed>,
}

impl Watched {
    fn start(client: &kube::Client, namespace: Option<&str>) -> Self {
        let (secrets, accounts): (Api<Secret>, Api<ServiceAccount>) = match namespace {
            Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let place = namespace.map_or_else(|| "all namespaces".to_owned(), |ns| format!("namespace {ns}"));
        let project_account: Project<ServiceAccount, Arc<[String]>> = Arc::new(|account: &ServiceAccount| {
            let names: Vec<String> =
                account.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).filter(|n| !n.is_empty()).collect();
            Some(names.into())
        });
        let secret_store = |kind: &'static str, key: &'static str| {
            let project: Project<Secret, Parsed> = Arc::new(move |secret: &Secret| {
                let bytes = secret.data.as_ref()?.get(key)?.0.clone();
                let name = secret.metadata.name.clone().unwrap_or_default();
                let namespace = secret.metadata.namespace.clone().unwrap_or_default();
                Some(Arc::new(parse_config(&namespace, &name, key, &bytes)))
            });
            Store::watch(secrets.clone(), Some(format!("type={kind}")), format!("{kind} Secrets in {place}"), project)
        };
        Self {
            accounts: Store::watch(accounts, None, format!("ServiceAccounts in {place}"), project_account),
            config_json: secret_store(DOCKER_CONFIG_JSON, ".dockerconfigjson"),
            dockercfg: secret_store(DOCKERCFG, ".dockercfg"),
        }
    }

    /// The stores not listed yet, each with the API server's last answer if it failed.
    fn unsynced(&self) -> Vec<String> {
        let mut waiting = Vec::new();
        if !self.accounts.is_synced() {
            waiting.push(self.accounts.describe());
        }
        for store in [&self.config_json, &self.dockercfg] {
            if !store.is_synced() {
                waiting.push(store.describe());
            }
        }
        waiting
    }

    async fn wait_synced(&self, timeout: Duration) -> bool {
        let (a, b, c) = tokio::join!(
            self.accounts.wait_synced(timeout),
            self.config_json.wait_synced(timeout),
            self.dockercfg.wait_synced(timeout)
        );
        a && b && c
    }
}

/// Secret types whose docker config the kubelet reads (and so does this).
const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const DOCKERCFG: &str = "kubernetes.io/dockercfg";
/// Longest a review waits for the first list (bounded by its own deadline too).
const SYNC_WAIT: Duration = Duration::from_secs(5);

fn parse_config(namespace: &str, name: &str, key: &str, bytes: &[u8]) -> Result<Keychain, String> {
    let json = if key == ".dockercfg" { legacy_to_config(bytes) } else { bytes.to_vec() };
    Keychain::from_docker_config_json(&json, &format!("{namespace}/{name}")).map_err(|e| e.to_string())
}

/// Pull secrets kept by watching the API server (`list` and `watch` on secrets of the two
/// pull-secret types and on serviceaccounts): no API request per review once the first list is
/// in. Each namespace's view is built from that namespace's objects only.
#[derive(Clone)]
pub struct KubeSecrets {
    all: Option<Watched>,
    by_namespace: HashMap<String, Watched>,
}

impl std::fmt::Debug for KubeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSecrets").field("synced", &self.is_synced()).finish()
    }
}

impl KubeSecrets {
    /// Watch every namespace. Needs a Tokio runtime.
    pub fn new(client: kube::Client) -> Self {
        Self::watch(client, &Scope::All)
    }

    /// Watch the namespaces of `scope`. Needs a Tokio runtime.
    pub fn watch(client: kube::Client, scope: &Scope) -> Self {
        match scope {
            Scope::All => Self { all: Some(Watched::start(&client, None)), by_namespace: HashMap::new() },
            Scope::Namespaces(list) => Self {
                all: None,
                by_namespace: list.iter().map(|ns| (ns.clone(), Watched::start(&client, Some(ns)))).collect(),
            },
        }
    }

    /// Whether every watched store has its first list (readiness).
    pub fn is_synced(&self) -> bool {
        self.all.iter().chain(self.by_namespace.values()).all(|w| w.unsynced().is_empty())
    }

    /// What is not listed yet (for /readyz), or None when everything is.
    pub fn unsynced(&self) -> Option<String> {
        let waiting: Vec<String> =
            self.all.iter().chain(self.by_namespace.values()).flat_map(Watched::unsynced).collect();
        (!waiting.is_empty()).then(|| format!("not listed from the API server yet: {}", waiting.join("; ")))
    }

    /// Wait until every watched store has its first list, at most `timeout`.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        for watched in self.all.iter().chain(self.by_namespace.values()) {
            if !watched.wait_synced(timeout).await {
                return false;
            }
        }
        true
    }

    fn names(watched: &Watched, context: &PullContext) -> Vec<String> {
        let mut names: Vec<String> = context.secrets.clone();
        if let Some(account) = watched.accounts.get(&context.namespace, &context.service_account) {
            names.extend(account.iter().cloned());
        }
        let mut seen = BTreeSet::new();
        names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
        names
    }
}

impl SecretSource for KubeSecrets {
    fn keychain<'a>(&'a self, context: &'a PullContext) -> BoxFuture<'a, Result<Keychain, PullSecretError>> {
        Box::pin(async move {
            let Some(watched) = self.all.as_ref().or_else(|| self.by_namespace.get(&context.namespace)) else {
                tracing::debug!(namespace = %context.namespace, "namespace not watched for pull secrets; anonymous");
                return Ok(Keychain::default());
            };
            if !watched.unsynced().is_empty() {
                let left = super::observe::deadline()
                    .map_or(SYNC_WAIT, |d| d.saturating_duration_since(tokio::time::Instant::now()).min(SYNC_WAIT));
                if !watched.wait_synced(left).await {
                    return Err(PullSecretError::NotSynced {
                        namespace: context.namespace.clone(),
                        waiting: watched.unsynced().join(", "),
                    });
                }
            }
            let mut keychain = Keychain::default();
            for name in Self::names(watched, context).iter().rev() {
                let parsed = watched
                    .config_json
                    .get(&context.namespace, name)
                    .or_else(|| watched.dockercfg.get(&context.namespace, name));
                match parsed.as_deref() {
                    None => tracing::debug!(namespace = %context.namespace, %name, "pull secret not found; skipped"),
                    Some(Ok(parsed)) => keychain.extend(parsed.clone()),
                    Some(Err(error)) => {
                        return Err(PullSecretError::Format {
                            namespace: context.namespace.clone(),
                            name: name.clone(),
                            error: error.clone(),
                        });
                    }
                }
            }
            Ok(keychain)
        })
    }
}

/// Merge docker configs (`.dockerconfigjson`, or the legacy `.dockercfg` map); the first
/// credential for a host wins, as in the kubelet.
pub fn merge(namespace: &str, configs: &[(String, &str, Vec<u8>)]) -> Result<Keychain, PullSecretError> {
    let mut keychain = Keychain::default();
    for (name, key, bytes) in configs.iter().rev() {
        let json = if *key == ".dockercfg" { legacy_to_config(bytes) } else { bytes.clone() };
        let parsed = Keychain::from_docker_config_json(&json, &format!("{namespace}/{name}")).map_err(|error| {
            PullSecretError::Format { namespace: namespace.to_owned(), name: name.clone(), error: error.to_string() }
        })?;
        keychain.extend(parsed);
    }
    Ok(keychain)
}

/// `{"host": {"auth": …}}` → `{"auths": {"host": {"auth": …}}}`.
fn legacy_to_config(bytes: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(map) => serde_json::to_vec(&serde_json::json!({ "auths": map })).unwrap_or_default(),
        Err(_) => bytes.to_vec(),
    }
}

/// A fixed set of secrets (namespace/name → `.dockerconfigjson` bytes), for tests and tools.
#[derive(Debug, Default, Clone)]
pub struct StaticSecrets {
    /// (namespace, name, dockerconfigjson)
    pub secrets: Vec<(String, String, Vec<u8>)>,
    /// (namespace, service account, secret names)
    pub accounts: Vec<(String, String, Vec<String>)>,
}

impl SecretSource for StaticSecrets {
    fn keychain<'a>(&'a self, context: &'a PullContext) -> BoxFuture<'a, Result<Keychain, PullSecretError>> {
        Box::pin(async move {
            let mut names = context.secrets.clone();
            for (ns, account, secrets) in &self.accounts {
                if *ns == context.namespace && *account == context.service_account {
                    names.extend(secrets.iter().cloned());
                }
            }
            let configs: Vec<_> = names
                .iter()
                .filter_map(|n| {
                    self.secrets
                        .iter()
                        .find(|(ns, name, _)| *ns == context.namespace && name == n)
                        .map(|(_, name, bytes)| (name.clone(), ".dockerconfigjson", bytes.clone()))
                })
                .collect();
            merge(&context.namespace, &configs)
        })
    }
}

/// Decode a base64 `.dockerconfigjson` as it appears in a Secret manifest.
pub fn decode_secret_value(value: &str) -> Option<Vec<u8>> {
    B64.decode(value.trim()).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pull_context_from_a_pod_spec() {
        let spec = json!({"imagePullSecrets": [{"name": "a"}, {"name": "b"}], "serviceAccountName": "builder"});
        let c = PullContext::from_pod_spec("prod", &spec);
        assert_eq!(c.secrets, vec!["a", "b"]);
        assert_eq!(c.service_account, "builder");
        assert_eq!(PullContext::from_pod_spec("prod", &json!({})).service_account, "default");
    }

    #[tokio::test]
    async fn first_secret_wins_and_legacy_dockercfg_is_read() {
        let first = br#"{"auths": {"ghcr.io": {"username": "pod", "password": "p1"}}}"#.to_vec();
        let second = br#"{"auths": {"ghcr.io": {"username": "sa", "password": "p2"}, "quay.io": {"username": "q", "password": "p3"}}}"#.to_vec();
        let legacy = br#"{"registry.example.com": {"auth": "dTpw"}}"#.to_vec();
        let k = merge(
            "ns",
            &[
                ("a".into(), ".dockerconfigjson", first),
                ("b".into(), ".dockerconfigjson", second),
                ("c".into(), ".dockercfg", legacy),
            ],
        )
        .expect("merge");
        assert_eq!(k.get("ghcr.io").map(|c| c.username.as_str()), Some("pod"));
        assert_eq!(k.get("quay.io").map(|c| c.username.as_str()), Some("q"));
        assert_eq!(k.get("registry.example.com").map(|c| c.username.as_str()), Some("u"));
        let bad = merge("ns", &[("x".into(), ".dockerconfigjson", b"nope".to_vec())]).expect_err("bad");
        assert!(bad.to_string().contains("pull secret ns/x"), "{bad}");
    }

    #[tokio::test]
    async fn static_source_follows_service_accounts() {
        let source = StaticSecrets {
            secrets: vec![("prod".into(), "regcred".into(), br#"{"auths": {"ghcr.io": {"auth": "dTpw"}}}"#.to_vec())],
            accounts: vec![("prod".into(), "default".into(), vec!["regcred".into()])],
        };
        let context = PullContext { namespace: "prod".into(), secrets: vec![], service_account: "default".into() };
        assert!(source.keychain(&context).await.expect("keychain").get("ghcr.io").is_some());
        let other = PullContext { namespace: "dev".into(), ..context };
        assert!(source.keychain(&other).await.expect("keychain").get("ghcr.io").is_none());
    }
}
