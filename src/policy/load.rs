//! Policies from a directory, and hot reload that keeps the last good set.
//!
//! The directory is walked recursively (symlinks followed, so a mounted ConfigMap works; hidden
//! entries such as ConfigMap's `..data` are skipped). `*.yaml` and `*.yml` files are policies;
//! every other file (keys, trusted roots) is part of the fingerprint, so editing a key reloads.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::cel::CelEnv;
use super::compile::{PolicyError, parse_file};
use super::{Policy, PolicySet};

/// Largest file read from a policy directory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most files a policy directory may hold.
pub const MAX_FILES: usize = 2_000;
const MAX_DEPTH: usize = 8;

/// Why a policy directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("policy directory {0} does not exist: create it or pass --policies DIR")]
    Missing(PathBuf),
    #[error("{0} is not a directory: --policies takes a directory of YAML files")]
    NotADirectory(PathBuf),
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes; policy directories hold small text files")]
    TooLarge { path: PathBuf },
    #[error("{path} holds more than {MAX_FILES} files")]
    TooManyFiles { path: PathBuf },
    #[error("{path} is not UTF-8 text")]
    NotUtf8 { path: PathBuf },
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// A directory of policy files.
#[derive(Debug, Clone)]
pub struct PolicyDir {
    dir: PathBuf,
    env: CelEnv,
}

/// The state of the loaded policies, published after every load attempt.
#[derive(Debug, Clone, Default)]
pub struct LoadStatus {
    /// Policies in the set being served.
    pub policies: usize,
    /// When the set being served was loaded.
    pub loaded_at: Option<SystemTime>,
    /// The error of the last attempt, if it failed (the previous set is still served).
    pub last_error: Option<String>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

impl PolicyDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), env: CelEnv::new() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Read, parse and compile every policy file.
    pub fn load(&self) -> Result<(PolicySet, u64), LoadError> {
        let files = self.read_all()?;
        let fingerprint = fingerprint(&files);
        let mut policies: Vec<Policy> = Vec::new();
        for (path, bytes) in &files {
            if !is_policy_file(path) {
                continue;
            }
            let text = std::str::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 { path: path.clone() })?;
            let base = path.parent().unwrap_or(&self.dir);
            policies.extend(parse_file(text, &path.display().to_string(), base, &self.env)?);
        }
        let mut set = PolicySet::new(policies)?;
        // Keys and trusted roots live beside the policies: an edit to any file of the directory
        // makes every policy new, so no verification cached for the old files is reused.
        for policy in &mut set.images {
            let mut hasher = DefaultHasher::new();
            (policy.fingerprint, fingerprint).hash(&mut hasher);
            policy.fingerprint = hasher.finish();
        }
        Ok((set, fingerprint))
    }

    /// A hash of every file's path and content, to notice changes.
    pub fn fingerprint(&self) -> Result<u64, LoadError> {
        Ok(fingerprint(&self.read_all()?))
    }

    fn read_all(&self) -> Result<Vec<(PathBuf, Vec<u8>)>, LoadError> {
        let meta = std::fs::metadata(&self.dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::Missing(self.dir.clone()),
            _ => LoadError::Io { path: self.dir.clone(), error: e },
        })?;
        if !meta.is_dir() {
            return Err(LoadError::NotADirectory(self.dir.clone()));
        }
        let mut paths = Vec::new();
        walk(&self.dir, 0, &mut paths)?;
        paths.sort();
        paths.into_iter().map(|p| read_limited(&p).map(|b| (p, b))).collect()
    }
}

/// Load the policies of one file (relative key paths resolve against its directory).
pub fn load_file(path: &Path, env: &CelEnv) -> Result<PolicySet, LoadError> {
    let bytes = read_limited(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| LoadError::NotUtf8 { path: path.to_path_buf() })?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(PolicySet::new(parse_file(text, &path.display().to_string(), base, env)?)?)
}

fn is_policy_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |error| LoadError::Io { path: dir.to_path_buf(), error };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follow symlinks (ConfigMap mounts are symlinks into ..data).
        let meta = std::fs::metadata(&path).map_err(|error| LoadError::Io { path: path.clone(), error })?;
        if meta.is_dir() {
            if depth + 1 < MAX_DEPTH {
                walk(&path, depth + 1, out)?;
            }
        } else if meta.is_file() {
            out.push(path);
            if out.len() > MAX_FILES {
                return Err(LoadError::TooManyFiles { path: dir.to_path_buf() });
            }
        }
    }
    Ok(())
}

fn read_limited(path: &Path) -> Result<Vec<u8>, LoadError> {
    let io = |error| LoadError::Io { path: path.to_path_buf(), error };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge { path: path.to_path_buf() });
    }
    Ok(bytes)
}

fn fingerprint(files: &[(PathBuf, Vec<u8>)]) -> u64 {
    let mut hasher = DefaultHasher::new();
    files.hash(&mut hasher);
    hasher.finish()
}

/// The channels a loaded directory publishes to.
pub struct Published {
    pub policies: watch::Receiver<Arc<PolicySet>>,
    pub status: watch::Receiver<LoadStatus>,
}

/// Load once (an error here is fatal: there is no last good set yet), then keep checking the
/// directory every `interval` until `shutdown` resolves. A bad change keeps the last good set.
pub fn start(
    dir: PolicyDir,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Published, LoadError> {
    let (set, mut last) = dir.load()?;
    let count = set.len();
    if set.is_empty() {
        warn!(dir = %dir.path().display(), "no policies loaded: every image is allowed unless --unmatched-images deny");
    }
    info!(dir = %dir.path().display(), policies = count, "policies loaded");
    let (policy_tx, policy_rx) = watch::channel(Arc::new(set));
    let status =
        LoadStatus { policies: count, loaded_at: Some(SystemTime::now()), reloads_ok: 1, ..Default::default() };
    let (status_tx, status_rx) = watch::channel(status);
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
            let dir = dir.clone();
            let previous = last;
            let attempt = tokio::task::spawn_blocking(move || match dir.fingerprint() {
                Ok(f) if f == previous => Ok(None),
                Ok(_) => dir.load().map(Some),
                Err(e) => Err(e),
            })
            .await;
            match attempt {
                Ok(Ok(None)) => {}
                Ok(Ok(Some((set, fingerprint)))) => {
                    last = fingerprint;
                    let count = set.len();
                    policy_tx.send_replace(Arc::new(set));
                    status_tx.send_modify(|s| {
                        s.policies = count;
                        s.loaded_at = Some(SystemTime::now());
                        s.last_error = None;
                        s.reloads_ok += 1;
                    });
                    info!(policies = count, "policies reloaded");
                }
                Ok(Err(e)) => {
                    let message = e.to_string();
                    let repeated = status_tx.borrow().last_error.as_deref() == Some(message.as_str());
                    if !repeated {
                        error!(error = %message, "policy reload failed; still serving the last good policies");
                        status_tx.send_modify(|s| {
                            s.last_error = Some(message);
                            s.reloads_failed += 1;
                        });
                    }
                }
                Err(join) => error!(error = %join, "policy reload task failed"),
            }
        }
    });
    Ok(Published { policies: policy_rx, status: status_rx })
}
