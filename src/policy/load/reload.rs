//! Hot reload that never serves a weaker set than the files say.
//!
//! Every `interval` the directory and the files the served set's authorities name (key files and
//! trusted roots, inside the directory or not) are read and fingerprinted ([`PolicyDir::scan`]).
//! A load happens only when a change has been STABLE across two consecutive checks: the check
//! that first sees a new fingerprint only records it (`pending_since` in [`LoadStatus`]); the
//! next check loads the bytes it read if, and only if, they have the same fingerprint. A file
//! caught half-written by one check has changed by the next one, so it is never loaded; a
//! writer that stalls longer than the interval can still be caught, which is why policies should
//! be updated atomically (see the README). A load that fails, or that would drop a non-empty set
//! to zero policies (unless the server runs with `--allow-empty-policies`), keeps the last good
//! set and says so in [`LoadStatus::last_error`] (`/readyz` degraded, a metric at 1).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{LoadError, PolicyDir};
use crate::policy::PolicySet;

/// The state of the loaded policies, published after every check that changes it.
#[derive(Debug, Clone, Default)]
pub struct LoadStatus {
    /// Policies in the set being served.
    pub policies: usize,
    /// When the set being served was loaded.
    pub loaded_at: Option<SystemTime>,
    /// The error of the last attempt, if it failed (the previous set is still served).
    pub last_error: Option<String>,
    /// Since when a change is waiting to be seen unchanged by the next check before it loads.
    pub pending_since: Option<SystemTime>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

/// The channels a loaded directory publishes to.
pub struct Published {
    pub policies: watch::Receiver<Arc<PolicySet>>,
    pub status: watch::Receiver<LoadStatus>,
}

/// What one check of the directory did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Nothing changed since the served set was loaded.
    Unchanged,
    /// A change was seen; it loads at the next check if it is still the same then.
    Pending,
    /// A new set is served.
    Reloaded { policies: usize },
    /// The change could not be loaded; the last good set is still served.
    Failed(String),
}

/// The served set's origin: what its load read, to compare the next scans against.
struct Served {
    fingerprint: u64,
    policies: usize,
    named: Vec<PathBuf>,
}

/// Checks a policy directory and publishes every good set it loads.
pub struct Reloader {
    dir: PolicyDir,
    served: Served,
    /// The fingerprint a check saw that differs from the served set's.
    pending: Option<u64>,
    policy_tx: watch::Sender<Arc<PolicySet>>,
    status_tx: watch::Sender<LoadStatus>,
}

impl Reloader {
    /// Load the directory the first time (an error here is fatal: there is no last good set).
    /// An empty directory loads, with a warning.
    pub fn new(dir: PolicyDir) -> Result<(Self, Published), LoadError> {
        let (set, fingerprint) = dir.load()?;
        let policies = set.len();
        if set.is_empty() {
            warn!(dir = %dir.path().display(), "no policies loaded: every image is allowed unless --unmatched-images deny");
        }
        info!(dir = %dir.path().display(), policies, "policies loaded");
        let served = Served { fingerprint, policies, named: set.referenced_files() };
        let (policy_tx, policy_rx) = watch::channel(Arc::new(set));
        let status = LoadStatus { policies, loaded_at: Some(SystemTime::now()), reloads_ok: 1, ..Default::default() };
        let (status_tx, status_rx) = watch::channel(status);
        let reloader = Self { dir, served, pending: None, policy_tx, status_tx };
        Ok((reloader, Published { policies: policy_rx, status: status_rx }))
    }

    /// Check the directory once (blocking file I/O) and act on what changed.
    pub fn check(&mut self) -> Check {
        let scan = match self.dir.scan(&self.served.named) {
            Ok(scan) => scan,
            Err(e) => {
                self.pending = None;
                return self.fail(&e);
            }
        };
        if scan.fingerprint == self.served.fingerprint {
            self.pending = None;
            // Back to what is served (e.g. a broken edit undone): nothing is wrong any more.
            self.status_tx.send_if_modified(|s| {
                let changed = s.pending_since.is_some() || s.last_error.is_some();
                s.pending_since = None;
                s.last_error = None;
                changed
            });
            return Check::Unchanged;
        }
        if self.pending != Some(scan.fingerprint) {
            self.pending = Some(scan.fingerprint);
            info!(dir = %self.dir.path().display(), "policy change seen; it loads at the next check if it is unchanged by then");
            self.status_tx.send_if_modified(|s| {
                let first = s.pending_since.is_none();
                s.pending_since.get_or_insert_with(SystemTime::now);
                first
            });
            return Check::Pending;
        }
        // Stable across two checks: load exactly the bytes this check read.
        let loaded = self.dir.load_scanned(&scan).and_then(|(set, fingerprint)| {
            if set.is_empty() && self.served.policies > 0 && !self.dir.allows_empty() {
                Err(LoadError::WouldEmpty { served: self.served.policies })
            } else {
                Ok((set, fingerprint))
            }
        });
        let (set, fingerprint) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => return self.fail(&e),
        };
        let policies = set.len();
        if set.is_empty() {
            warn!(
                "policies reloaded: none left (--allow-empty-policies); every image is allowed unless --unmatched-images deny"
            );
        }
        self.served = Served { fingerprint, policies, named: set.referenced_files() };
        self.pending = None;
        self.policy_tx.send_replace(Arc::new(set));
        self.status_tx.send_modify(|s| {
            s.policies = policies;
            s.loaded_at = Some(SystemTime::now());
            s.last_error = None;
            s.pending_since = None;
            s.reloads_ok += 1;
        });
        info!(policies, "policies reloaded");
        Check::Reloaded { policies }
    }

    fn fail(&self, e: &LoadError) -> Check {
        let message = e.to_string();
        self.status_tx.send_if_modified(|s| {
            let repeated = s.last_error.as_deref() == Some(message.as_str());
            if !repeated {
                error!(error = %message, "policy reload failed; still serving the last good policies");
                s.last_error = Some(message.clone());
                s.reloads_failed += 1;
            }
            let was_pending = s.pending_since.take().is_some();
            !repeated || was_pending
        });
        Check::Failed(message)
    }
}

/// Load once (an error here is fatal: there is no last good set yet), then check the directory
/// every `interval` until `shutdown` resolves (see the module documentation).
pub fn start(
    dir: PolicyDir,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Published, LoadError> {
    let (reloader, published) = Reloader::new(dir)?;
    let reloader = Arc::new(Mutex::new(reloader));
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => {}
            }
            let reloader = Arc::clone(&reloader);
            let checked =
                tokio::task::spawn_blocking(move || reloader.lock().unwrap_or_else(|p| p.into_inner()).check()).await;
            if let Err(join) = checked {
                error!(error = %join, "policy reload check failed");
            }
        }
    });
    Ok(published)
}
