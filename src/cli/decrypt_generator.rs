//! `portcullis decrypt --generator CONFIG`: a kustomize generator (KSOPS-compatible shape) that
//! emits the decrypted resources of the SOPS files its config lists.
//!
//! kustomize runs it as a legacy exec plugin (`kustomize build --enable-alpha-plugins`, and
//! `kubectl kustomize --enable-alpha-plugins`): the executable
//! `$XDG_CONFIG_HOME/kustomize/plugin/<group>/<version>/<lowercase kind>/<Kind>` is called with the
//! config file as its only argument, in the kustomization's directory
//! (`KUSTOMIZE_PLUGIN_CONFIG_ROOT`), and prints the generated resources.
//!
//! ```yaml
//! apiVersion: portcullis.dev/v1alpha1   # or viaduct.ai/v1, kind: ksops
//! kind: SopsGenerator
//! metadata: { name: secrets }
//! files: [db.enc.yaml, api.enc.yaml]   # relative to the kustomization; no `..`, no symlink out
//! ```
//!
//! The origin of every resource is recorded in a binding manifest written to the directory
//! `PORTCULLIS_BINDING_DIR` (one file per run), which `--check-binding DIR` reads after the build.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use super::decrypt::{confine, read_limited_file};
use super::decrypt_tree::{decrypt_file, random_bytes, write_private};
use crate::sops::binding::Manifest;
use crate::sops::{self, Format, Identities, Options};

/// The environment variable naming the directory the binding manifests go to (`off`: none).
pub const BINDING_DIR_ENV: &str = "PORTCULLIS_BINDING_DIR";

/// Largest generator config read.
const CONFIG_MAX: u64 = 1 << 20;

/// `portcullis decrypt --generator CONFIG`.
pub fn generate(config: &Path, max_size: u64, ids: &Identities, opts: &Options) -> anyhow::Result<ExitCode> {
    let text = read_limited_file(config, CONFIG_MAX)?;
    let value: serde_json::Value =
        serde_yaml_ng::from_slice(&text).with_context(|| format!("generator config {}: not YAML", config.display()))?;
    let kind = value.get("kind").and_then(serde_json::Value::as_str).unwrap_or("(no kind)");
    let files: Vec<&str> = value
        .get("files")
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
        .filter(|f: &Vec<&str>| !f.is_empty())
        .with_context(|| {
            format!("generator config {} ({kind}): no `files:` list of SOPS files to decrypt", config.display())
        })?;
    let root = std::env::var_os("KUSTOMIZE_PLUGIN_CONFIG_ROOT")
        .map(PathBuf::from)
        .map_or_else(std::env::current_dir, Ok)
        .context("cannot read the kustomization directory")?
        .canonicalize()
        .context("cannot open the kustomization directory")?;
    let binding_dir = std::env::var_os(BINDING_DIR_ENV).filter(|v| !v.is_empty()).with_context(|| {
        format!(
            "{BINDING_DIR_ENV} is not set: point it at a private directory and check the build with \
             `portcullis decrypt --check-binding \"${BINDING_DIR_ENV}\"` (or set it to `off` to skip the \
             namespace binding check knowingly)"
        )
    })?;
    let record = binding_dir != "off";
    let mut manifest = Manifest::new(&random_bytes()?);
    let mut out = zeroize::Zeroizing::new(String::new());
    for file in files {
        let path = confine(&root, &root.join(file), true)
            .with_context(|| format!("generator {kind}: files entry {file:?} (relative to {})", root.display()))?;
        let format = Format::from_path(&path);
        if !matches!(format, Format::Yaml | Format::Json) {
            bail!(
                "generator {kind}: {file} is a {} file, not Kubernetes resources; decrypt it with \
                 `portcullis decrypt --tree` and a secretGenerator instead",
                format.name()
            );
        }
        let input = read_limited_file(&path, max_size)?;
        let plain = if record {
            decrypt_file(file, format, &input, ids, opts, &mut manifest)
        } else {
            sops::decrypt(&input, format, format, ids, opts)
        }
        .with_context(|| format!("generator {kind}: decrypting {file}"))?;
        let plain = std::str::from_utf8(&plain).with_context(|| format!("{file}: not UTF-8"))?;
        out.push_str("---\n");
        out.push_str(plain);
        if !plain.ends_with('\n') {
            out.push('\n');
        }
    }
    if record {
        let dir = PathBuf::from(binding_dir);
        let mut name = String::new();
        for b in &random_bytes()?[..8] {
            name.push_str(&format!("{b:02x}"));
        }
        write_private(&dir.join(format!("{name}.binding.json")), manifest.to_json().as_bytes())
            .with_context(|| format!("{BINDING_DIR_ENV}={}: must be an existing directory", dir.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).context("cannot write to standard output")?;
    stdout.flush().context("cannot write to standard output")?;
    Ok(ExitCode::SUCCESS)
}
