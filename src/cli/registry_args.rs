//! Flags shared by the commands that talk to registries: `serve` and `verify`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::verify::image::RegistryVerifier;
use crate::verify::registry::auth::Keychain;
use crate::verify::registry::{Registry, RegistryConfig};
use crate::verify::trust::TrustRoot;

/// Registry access and trust material.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Registry credentials: a docker config.json (`auths`).
    #[arg(long, env = "PORTCULLIS_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,
    /// Extra CA bundle (PEM) trusted for registry TLS (repeatable).
    #[arg(long, env = "PORTCULLIS_REGISTRY_CA", value_delimiter = ',')]
    pub registry_ca: Vec<PathBuf>,
    /// A registry reached over plain HTTP, as HOST:PORT (repeatable). Never the default.
    #[arg(long, env = "PORTCULLIS_INSECURE_REGISTRY", value_delimiter = ',')]
    pub insecure_registry: Vec<String>,
    /// Timeout of one registry request.
    #[arg(long, env = "PORTCULLIS_REGISTRY_TIMEOUT", default_value = "10s", value_parser = super::serve::parse_duration)]
    pub registry_timeout: Duration,
    /// Most requests in flight to one registry host, shared by all reviews; more wait for a
    /// slot, within the review's deadline.
    #[arg(long, env = "PORTCULLIS_REGISTRY_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub registry_concurrency: u32,
    /// A Sigstore trusted_root.json, or `github` (GitHub's artifact attestation instance, built in);
    /// default: the public-good instance's, embedded.
    #[arg(long, env = "PORTCULLIS_TRUSTED_ROOT")]
    pub trusted_root: Option<PathBuf>,
    /// Most platform manifests of an image index verified under `platforms: every-platform`;
    /// an index with more is denied, saying so (never partly checked).
    #[arg(long, env = "PORTCULLIS_MAX_PLATFORMS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_platforms: u32,
}

impl RegistryArgs {
    /// The verifier these flags describe.
    pub fn verifier(self) -> anyhow::Result<RegistryVerifier> {
        self.verifier_observed(crate::verify::observe::ignore())
    }

    /// The verifier these flags describe, its registry requests reported to `observer`.
    pub fn verifier_observed(
        self,
        observer: std::sync::Arc<dyn crate::verify::observe::Observer>,
    ) -> anyhow::Result<RegistryVerifier> {
        let Self {
            registry_config,
            registry_ca,
            insecure_registry,
            registry_timeout,
            registry_concurrency,
            trusted_root,
            max_platforms,
        } = self;
        let keychain = match &registry_config {
            Some(path) => Keychain::from_docker_config(path)?,
            None => Keychain::default(),
        };
        let mut ca_pem = Vec::new();
        for path in &registry_ca {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read --registry-ca {}", path.display()))?;
            ca_pem.push(bytes);
        }
        let config = RegistryConfig {
            insecure: insecure_registry,
            ca_pem,
            keychain,
            timeout: Some(registry_timeout),
            concurrency: Some(usize::try_from(registry_concurrency).context("--registry-concurrency is too large")?),
        };
        let registry = Registry::new(config)?.with_observer(observer);
        let trust = match &trusted_root {
            Some(path) => TrustRoot::named_or_file(path)?,
            None => TrustRoot::production()?,
        };
        let max_platforms = usize::try_from(max_platforms).context("--max-platforms is too large")?;
        Ok(RegistryVerifier::new(registry, trust).with_max_platforms(max_platforms))
    }
}
