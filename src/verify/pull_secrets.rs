//! Registry credentials from Kubernetes imagePullSecrets: the pod's own and its service
//! account's, read from the API server the way the kubelet uses them. A Secret that is missing
//! is skipped (the kubelet does the same); an API error is an error.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use serde_json::Value;

use super::BoxFuture;
use super::registry::auth::{AuthError, Keychain};

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
    Format { namespace: String, name: String, error: AuthError },
}

/// A source of pull credentials (the API server in a cluster; a map in tests).
pub trait SecretSource: Send + Sync {
    /// The registry credentials of every pull secret of `context`, in the kubelet's order:
    /// the pod's secrets, then the service account's.
    fn keychain<'a>(&'a self, context: &'a PullContext) -> BoxFuture<'a, Result<Keychain, PullSecretError>>;
}

/// Pull secrets read with a Kubernetes client (needs `get` on secrets and serviceaccounts).
#[derive(Clone)]
pub struct KubeSecrets {
    client: kube::Client,
}

impl std::fmt::Debug for KubeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeSecrets")
    }
}

impl KubeSecrets {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    async fn names(&self, context: &PullContext) -> Result<Vec<String>, PullSecretError> {
        let mut names: Vec<String> = context.secrets.clone();
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &context.namespace);
        let account = accounts.get_opt(&context.service_account).await.map_err(|e| PullSecretError::Api {
            what: format!("service account {}", context.service_account),
            namespace: context.namespace.clone(),
            error: e.to_string(),
        })?;
        if let Some(account) = account {
            for reference in account.image_pull_secrets.unwrap_or_default() {
                names.push(reference.name);
            }
        }
        let mut seen = BTreeSet::new();
        names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
        Ok(names)
    }
}

impl SecretSource for KubeSecrets {
    fn keychain<'a>(&'a self, context: &'a PullContext) -> BoxFuture<'a, Result<Keychain, PullSecretError>> {
        Box::pin(async move {
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &context.namespace);
            let mut configs = Vec::new();
            for name in self.names(context).await? {
                let secret = secrets.get_opt(&name).await.map_err(|e| PullSecretError::Api {
                    what: format!("secret {name}"),
                    namespace: context.namespace.clone(),
                    error: e.to_string(),
                })?;
                let Some(secret) = secret else {
                    tracing::debug!(namespace = %context.namespace, %name, "pull secret not found; skipped");
                    continue;
                };
                let data = secret.data.unwrap_or_default();
                let entry = [".dockerconfigjson", ".dockercfg"]
                    .into_iter()
                    .find_map(|key| data.get(key).map(|bytes| (key, bytes.0.clone())));
                if let Some((key, bytes)) = entry {
                    configs.push((name, key, bytes));
                }
            }
            merge(&context.namespace, &configs)
        })
    }
}

/// Merge docker configs (`.dockerconfigjson`, or the legacy `.dockercfg` map); the first
/// credential for a host wins, as in the kubelet.
pub fn merge(namespace: &str, configs: &[(String, &str, Vec<u8>)]) -> Result<Keychain, PullSecretError> {
    let mut keychain = Keychain::default();
    for (name, key, bytes) in configs.iter().rev() {
        let json = if *key == ".dockercfg" { legacy_to_config(bytes) } else { bytes.clone() };
        let parsed = Keychain::from_docker_config_json(&json, &format!("{namespace}/{name}"))
            .map_err(|error| PullSecretError::Format { namespace: namespace.to_owned(), name: name.clone(), error })?;
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
