//! `portcullis serve`: the validating admission webhook.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use clap::Args;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::engine::{Engine, Settings, Unmatched};
use crate::policy::load::{self, PolicyDir};
use crate::server::tls::CertStore;
use crate::server::{self, AppState, Limits};
use crate::telemetry::Metrics;
use crate::verify::cache::CachedVerifier;
use crate::verify::image::RegistryVerifier;
use crate::verify::key_secrets::KeySecrets;
use crate::verify::pull_secrets::{KubeSecrets, Scope};

const EXAMPLES: &str = "\
Examples:
  # Embedded defaults: ./policies, a self-signed certificate, https://127.0.0.1:8443
  portcullis serve

  # In a cluster: certificates from cert-manager, policies from a ConfigMap
  portcullis serve --listen 0.0.0.0:8443 --policies /etc/portcullis/policies \\
      --tls-cert /tls/tls.crt --tls-key /tls/tls.key --own-namespace portcullis

  # Self-signed, writing the CA for the webhook's caBundle
  portcullis serve --tls-san portcullis.portcullis.svc --write-ca ca.crt";

/// Flags of `portcullis serve`. Every flag also reads a `PORTCULLIS_*` environment variable.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ServeArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
}

/// Where and how to listen.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on (HTTPS).
    #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Time in-flight reviews get to finish after SIGTERM.
    #[arg(long, env = "PORTCULLIS_DRAIN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// After SIGTERM, keep serving this long with /readyz failing (503), so the pod leaves the
    /// Service's endpoints before it stops accepting connections; then drain. For clusters
    /// without a preStop sleep.
    #[arg(long, env = "PORTCULLIS_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
}

/// TLS: certificate files, or a generated self-signed certificate.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Serving certificate chain (PEM). Reloaded when it changes. Without it, a self-signed
    /// certificate is generated in memory.
    #[arg(long, env = "PORTCULLIS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "PORTCULLIS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra DNS names for the generated certificate (repeatable), e.g. portcullis.portcullis.svc.
    #[arg(long = "tls-san", env = "PORTCULLIS_TLS_SAN", value_delimiter = ',', conflicts_with = "tls_cert")]
    pub tls_san: Vec<String>,
    /// Write the generated CA certificate (PEM) to this file, for the webhook's caBundle.
    #[arg(long, env = "PORTCULLIS_WRITE_CA", conflicts_with = "tls_cert")]
    pub write_ca: Option<PathBuf>,
    /// Require a client certificate signed by a CA in this PEM file (the API server's, configured
    /// in its --admission-control-config-file kubeconfig): other clients cannot complete the TLS
    /// handshake.
    #[arg(long, env = "PORTCULLIS_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
}

/// Policies and decisions.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Directory of policy YAML files (watched; a bad change keeps the last good set).
    #[arg(long, env = "PORTCULLIS_POLICIES", default_value = "policies")]
    pub policies: PathBuf,
    /// How often the policy directory and certificate files are checked for changes.
    #[arg(long, env = "PORTCULLIS_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// Let a policy reload remove every policy. Without it, a reload that finds no policies
    /// keeps the last good set (an emptied or half-written directory must not open the gate);
    /// starting with no policies is allowed either way, with a warning.
    #[arg(long, env = "PORTCULLIS_ALLOW_EMPTY_POLICIES")]
    pub allow_empty_policies: bool,
    /// Load the policy directory only when its signature (`portcullis policy sign`) verifies
    /// with this public key (PEM): at start, refuse to start; at a reload, keep the last good
    /// set (shown on /readyz and in portcullis_policy_reload_failing).
    #[arg(long, env = "PORTCULLIS_REQUIRE_SIGNED_POLICIES", value_name = "PUBKEY")]
    pub require_signed_policies: Option<PathBuf>,
    /// Namespace portcullis runs in: requests there are always allowed, so it never locks
    /// itself out.
    #[arg(long, env = "PORTCULLIS_OWN_NAMESPACE")]
    pub own_namespace: Option<String>,
    /// Read registry credentials from the workload's imagePullSecrets and its service
    /// account's, kept by watching the API server (needs `list` and `watch` on secrets and
    /// serviceaccounts): `auto` when running in a cluster.
    #[arg(long, env = "PORTCULLIS_IMAGE_PULL_SECRETS", value_enum, default_value_t = PullSecretsArg::Auto)]
    pub image_pull_secrets: PullSecretsArg,
    /// Watch the pull secrets and service accounts of these namespaces only (comma-separated;
    /// the chart's rbac.pullSecretNamespaces). Workloads elsewhere pull anonymously. Default:
    /// every namespace.
    #[arg(long, env = "PORTCULLIS_PULL_SECRET_NAMESPACES", value_delimiter = ',')]
    pub pull_secret_namespaces: Vec<String>,
    /// How long a verified digest stays verified for the same policy (0 disables the cache).
    /// Failures are kept a tenth of it; registry and log errors are never cached.
    #[arg(long, env = "PORTCULLIS_VERIFY_CACHE_TTL", default_value = "5m", value_parser = parse_duration)]
    pub verify_cache_ttl: Duration,
    /// How long a tag's resolution to a digest is reused (per registry, repository, tag and
    /// credentials view; 0 resolves at every review). A moved tag is seen after this long.
    #[arg(long, env = "PORTCULLIS_TAG_CACHE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub tag_cache_ttl: Duration,
    /// Admit a digest that cannot be checked now (registry or log unreachable) if it was
    /// verified under the same policy within this window and has not failed since, with a
    /// warning in the response. Off by default (0); never after a failed verification.
    #[arg(long, env = "PORTCULLIS_LAST_KNOWN_GOOD", default_value = "0s", value_parser = parse_duration)]
    pub last_known_good: Duration,
    /// What to do with an image that no ImagePolicy matches.
    #[arg(long, env = "PORTCULLIS_UNMATCHED_IMAGES", value_enum, default_value_t = UnmatchedArg::Allow)]
    pub unmatched_images: UnmatchedArg,
}

/// `--image-pull-secrets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullSecretsArg {
    /// In a cluster (service account token mounted): yes; elsewhere: no.
    Auto,
    /// Always (in-cluster config or a kubeconfig); fail to start without cluster access.
    Always,
    /// Never: only --registry-config credentials.
    Never,
}

/// `--unmatched-images`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnmatchedArg {
    Allow,
    Deny,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

/// Run the webhook until SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs { listen, tls, policy, registry } = args;
    let ListenArgs { listen, drain_timeout, shutdown_delay } = listen;
    let TlsArgs { tls_cert, tls_key, tls_san, write_ca, client_ca } = tls;
    let PolicyArgs {
        policies,
        reload_interval,
        allow_empty_policies,
        require_signed_policies,
        own_namespace,
        image_pull_secrets,
        pull_secret_namespaces,
        verify_cache_ttl,
        tag_cache_ttl,
        last_known_good,
        unmatched_images,
    } = policy;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let signed = require_signed_policies.as_deref().map(crate::policy::signed::Requirement::from_file).transpose()?;
    let dir = PolicyDir::new(&policies).allow_empty(allow_empty_policies).require_signature(signed);
    let published = load::start(dir, reload_interval, stopped())
        .with_context(|| format!("cannot load the policies in {}", policies.display()))?;

    let store = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => {
            let store = CertStore::from_files(&cert, &key)?;
            info!(cert = %cert.display(), "serving certificate loaded");
            store
        }
        _ => {
            let generated = CertStore::self_signed(&tls_san)?;
            if let Some(path) = &write_ca {
                std::fs::write(path, &generated.ca_pem)
                    .with_context(|| format!("cannot write the CA certificate to {}", path.display()))?;
                info!(path = %path.display(), "self-signed CA written");
            } else {
                warn!("serving a self-signed certificate; pass --write-ca FILE to get its CA, or --tls-cert/--tls-key");
            }
            generated.store
        }
    };
    if store.reloadable() {
        let store = Arc::clone(&store);
        let stop = stopped();
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(reload_interval) => {}
                }
                match store.reload() {
                    Ok(true) => info!("serving certificate reloaded"),
                    Ok(false) => {}
                    Err(e) => error!(error = %e, "serving certificate reload failed; keeping the current one"),
                }
            }
        });
    }
    let tls_config = store.server_config_with_client_ca(client_ca.as_deref())?;
    let require_client_certificate = client_ca.is_some();

    let cluster = cluster_state(image_pull_secrets, &pull_secret_namespaces, own_namespace.as_deref()).await?;
    let settings = Settings {
        own_namespace,
        unmatched: match unmatched_images {
            UnmatchedArg::Allow => Unmatched::Allow,
            UnmatchedArg::Deny => Unmatched::Deny,
        },
    };
    let metrics = Arc::new(Metrics::new());
    {
        let store = Arc::clone(&store);
        metrics.certificate_expiry(move || store.not_after());
    }
    let verifier = cluster.attach(registry.verifier_observed(metrics.clone())?, &published.policies);
    let verifier = CachedVerifier::new(Arc::new(verifier), verify_cache_ttl)
        .with_tag_ttl(tag_cache_ttl)
        .with_last_known_good(last_known_good)
        .with_observer(metrics.clone());
    let engine = Engine::new(published.policies, Arc::new(verifier), settings);
    let state = AppState { engine: Arc::new(engine), metrics, status: published.status };
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    info!(address = %listener.local_addr()?, policies = %policies.display(), "portcullis is serving");
    let draining = Arc::new(AtomicBool::new(false));
    let app = server::router(state).layer(axum::middleware::from_fn({
        let draining = Arc::clone(&draining);
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let draining = draining.load(Ordering::Relaxed);
            let waiting = cluster.waiting();
            async move {
                if draining && request.uri().path() == "/readyz" {
                    return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
                }
                if let Some(waiting) = waiting.filter(|_| request.uri().path() == "/readyz") {
                    return (StatusCode::SERVICE_UNAVAILABLE, waiting).into_response();
                }
                next.run(request).await
            }
        }
    }));
    let shutdown = async move {
        server::shutdown_signal().await;
        if !shutdown_delay.is_zero() {
            draining.store(true, Ordering::Relaxed);
            info!(delay = ?shutdown_delay, "still serving while the endpoints update; /readyz now fails");
            tokio::time::sleep(shutdown_delay).await;
        }
        let _ = stop_tx.send(true);
    };
    let limits = Limits { drain_timeout, require_client_certificate, ..Limits::default() };
    server::run(listener, tls_config, app, limits, shutdown).await?;
    info!("stopped");
    Ok(())
}

/// The cluster state the verifier reads: imagePullSecrets and service accounts, keys from
/// Secrets; both kept by watching the API server.
#[derive(Clone, Default)]
struct Cluster {
    pull: Option<Arc<KubeSecrets>>,
    keys: Option<Arc<KeySecrets>>,
}

impl Cluster {
    fn attach(
        &self,
        mut verifier: RegistryVerifier,
        policies: &tokio::sync::watch::Receiver<Arc<crate::policy::PolicySet>>,
    ) -> RegistryVerifier {
        if let Some(pull) = &self.pull {
            verifier = verifier.with_pull_secrets(pull.clone());
        }
        if let Some(keys) = &self.keys {
            // Watch the Secrets every loaded policy names, as each set loads.
            let (keys_for_loads, mut policies) = (Arc::clone(keys), policies.clone());
            tokio::spawn(async move {
                loop {
                    let set = Arc::clone(&policies.borrow_and_update());
                    keys_for_loads.prewarm(set.images.iter().flat_map(|p| &p.authorities));
                    if policies.changed().await.is_err() {
                        break;
                    }
                }
            });
            verifier = verifier.with_key_secrets(keys.clone());
        }
        verifier
    }

    /// Why /readyz must wait (pull secrets or service accounts not listed yet), or None when
    /// ready. Key Secrets do not hold readiness: one that cannot be read denies the reviews
    /// that need it, naming it and the API server's answer, and the others are served.
    fn waiting(&self) -> Option<String> {
        self.pull.as_ref()?.unsynced().map(|why| format!("not ready: imagePullSecrets: {why}\n"))
    }
}

async fn cluster_state(
    mode: PullSecretsArg,
    namespaces: &[String],
    own_namespace: Option<&str>,
) -> anyhow::Result<Cluster> {
    let config = match mode {
        // Keys from Secrets still need the API when it is there.
        PullSecretsArg::Never | PullSecretsArg::Auto => match kube::Config::incluster() {
            Ok(config) => config,
            Err(_) => {
                if mode == PullSecretsArg::Auto {
                    info!(
                        "not running in a cluster: imagePullSecrets and secretRef keys are not read (--image-pull-secrets always to force)"
                    );
                }
                return Ok(Cluster::default());
            }
        },
        PullSecretsArg::Always => kube::Config::infer()
            .await
            .context("--image-pull-secrets always needs cluster access (in-cluster or a kubeconfig)")?,
    };
    let client = kube::Client::try_from(config).context("cannot build the Kubernetes client")?;
    let keys = Some(Arc::new(KeySecrets::new(client.clone(), own_namespace.map(str::to_owned))));
    if mode == PullSecretsArg::Never {
        return Ok(Cluster { pull: None, keys });
    }
    let scope = if namespaces.is_empty() { Scope::All } else { Scope::Namespaces(namespaces.to_vec()) };
    info!(?scope, "watching imagePullSecrets and service accounts on the API server");
    Ok(Cluster { pull: Some(Arc::new(KubeSecrets::watch(client, &scope))), keys })
}
