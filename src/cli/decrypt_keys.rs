//! Where `portcullis decrypt` gets its age identities: flags, the environment, sops's default
//! key file, Kubernetes Secrets (files or read from the API server).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use zeroize::Zeroizing;

use super::decrypt::{read_limited, read_limited_file};
use crate::sops::{self, Identities};

/// Largest key file or key Secret read (independent of --max-size).
const KEY_FILE_MAX: u64 = 1 << 20;

/// age identities from the flags, then the environment, then sops's default key file.
pub(super) fn load_identities(files: &[PathBuf], secrets: &[PathBuf]) -> anyhow::Result<Identities> {
    let max = KEY_FILE_MAX;
    let mut ids = Identities::new();
    for f in files {
        let text = read_text(f, max)?;
        ids.add_text(&text, &format!("--age-key-file {}", f.display()))?;
    }
    for f in secrets {
        let bytes = if f.as_os_str() == "-" {
            read_limited(std::io::stdin().lock(), max, "standard input")?
        } else {
            read_limited_file(f, max)?
        };
        let name = format!("--age-key-secret {}", f.display());
        for (key, text) in sops::keys::identities_from_secret(&bytes, &name)? {
            ids.add_text(&text, &format!("{name} key {key}"))?;
        }
    }
    if let Some(f) = std::env::var_os("SOPS_AGE_KEY_FILE").filter(|v| !v.is_empty()) {
        let f = PathBuf::from(f);
        let text = read_text(&f, max)?;
        ids.add_text(&text, &format!("SOPS_AGE_KEY_FILE={}", f.display()))?;
    }
    if let Ok(key) = std::env::var("SOPS_AGE_KEY") {
        let key = Zeroizing::new(key);
        if !key.trim().is_empty() {
            ids.add_text(&key, "SOPS_AGE_KEY")?;
        }
    }
    if ids.is_empty()
        && let Some(default) = default_key_file()
        && default.is_file()
    {
        let text = read_text(&default, max)?;
        ids.add_text(&text, &default.display().to_string())?;
    }
    Ok(ids)
}

/// Read a Secret from the API server, as JSON bytes (zeroized after use).
pub(super) fn fetch_secret(reference: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    use k8s_openapi::api::core::v1::Secret;
    let (namespace, name) = reference
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .with_context(|| format!("--age-key-secret-ref {reference:?}: write it as NAMESPACE/NAME"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let secret = runtime.block_on(async {
        let config = kube::Config::infer().await.context(
            "--age-key-secret-ref needs cluster access: run in a pod with a service account, or set KUBECONFIG",
        )?;
        let client = kube::Client::try_from(config).context("cannot build the Kubernetes client")?;
        let secrets: kube::Api<Secret> = kube::Api::namespaced(client, namespace);
        secrets.get(name).await.with_context(|| format!("cannot read Secret {namespace}/{name} from the API server"))
    })?;
    let mut value = serde_json::to_value(&secret).context("cannot serialise the Secret")?;
    value["kind"] = serde_json::Value::from("Secret");
    value["apiVersion"] = serde_json::Value::from("v1");
    Ok(Zeroizing::new(serde_json::to_vec(&value)?))
}

fn default_key_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("sops").join("age").join("keys.txt"))
}

fn read_text(path: &Path, max: u64) -> anyhow::Result<Zeroizing<String>> {
    let bytes = read_limited_file(path, max)?;
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{}: not a text file", path.display()))?;
    Ok(Zeroizing::new(text.to_owned()))
}
