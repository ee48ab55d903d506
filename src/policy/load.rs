//! Policies from disk: a directory (or one file), the key files and trusted roots the policies
//! name, and hot reload that keeps the last good set ([`reload`]).
//!
//! The directory is walked recursively (symlinks followed, so a mounted ConfigMap works; hidden
//! entries such as ConfigMap's `..data` are skipped). `*.yaml` and `*.yml` files are policies;
//! a policy file with no document in it (empty, blank, only comments or `---`) is an error, not
//! "no policies": it is what a file being written looks like. Every other file is part of the
//! fingerprint, so editing any of them reloads.
//!
//! Key material is read HERE, when policies load, never on the request path: every
//! `publicKeyFile` and `trustedRoot` (inside the directory or not) is read, checked, stored in
//! its [`Authority`](super::Authority) and hashed into the policy's fingerprint (which keys the
//! verification cache). A file that is missing or unusable is a load error naming the policy,
//! the authority and the path. The reload fingerprint covers these files too, so a key rotated
//! outside the directory is noticed at the next check.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::cel::CelEnv;
use super::compile::{PolicyError, parse_file, split_documents};
use super::{AuthorityKind, FileContent, KeyRef, Policy, PolicySet};
use crate::verify::trust::{MAX_TRUSTED_ROOT_BYTES, TrustRoot};

mod reload;
mod shape;

pub use reload::{Check, LoadStatus, Published, Reloader, start};

/// Largest file read from a policy directory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Largest public key file read.
pub const MAX_KEY_BYTES: u64 = 64 * 1024;
/// Most files a policy directory may hold (every file counts, policy or not).
pub const MAX_FILES: usize = 2_000;
/// Most bytes all the files of a policy directory may hold together.
pub const MAX_TOTAL_BYTES: u64 = 32 * 1024 * 1024;
/// Deepest directory nesting under the policy directory.
pub const MAX_DEPTH: usize = 8;

/// Why policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("policy directory {0} does not exist: create it or pass --policies DIR")]
    Missing(PathBuf),
    #[error("{0} is not a directory: --policies takes a directory of YAML files")]
    NotADirectory(PathBuf),
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path} is larger than {limit} bytes; policies, keys and trusted roots are small text files")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error(
        "{path} holds more than {MAX_FILES} files (the limit; every file counts, policy or not): \
         keep only policies, keys and their tests there, or point --policies at a subdirectory"
    )]
    TooManyFiles { path: PathBuf },
    #[error(
        "the files under {path} hold more than {MAX_TOTAL_BYTES} bytes together (the limit): policies are \
         small text files; keep other data elsewhere"
    )]
    TooManyBytes { path: PathBuf },
    #[error("{path} is nested more than {MAX_DEPTH} directories deep under the policy directory (the limit)")]
    TooDeepDirectory { path: PathBuf },
    #[error(
        "{path} leads to {target}, a directory already read (a symlink loop, or two symlinks to one \
         directory): remove the link"
    )]
    DirectoryTwice { path: PathBuf, target: PathBuf },
    #[error("{path} is not UTF-8 text")]
    NotUtf8 { path: PathBuf },
    #[error(
        "{path} holds no policy document (it is empty, blank or only comments and `---`), which is what a \
         file still being written looks like, so it is not loaded: delete the file to remove its policies, \
         and write policy files whole (write a temporary file, then rename it into place)"
    )]
    EmptyFile { path: PathBuf },
    /// `at` says where: `file:line: policy "p": authority "a": publicKeyFile`.
    #[error("{at} {path}: {reason}")]
    AuthorityFile { at: String, path: PathBuf, reason: String },
    #[error(
        "the change would leave no policies at all (the last good set has {served}); keeping the last good set. \
         To remove every policy on purpose, run the server with --allow-empty-policies"
    )]
    WouldEmpty { served: usize },
    #[error(
        "{path}:{line}: collections nest more than {} levels deep; policies are shallow documents, \
         so such a file is refused before it is parsed",
        shape::MAX_DEPTH
    )]
    TooDeep { path: PathBuf, line: usize },
    #[error(
        "{path}:{line}: its aliases expand to more than {} nodes (a \"billion laughs\"); the file is refused",
        shape::MAX_EXPANDED_NODES
    )]
    TooManyNodes { path: PathBuf, line: usize },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Signed(#[from] super::signed::SignedError),
}

/// A directory of policy files.
#[derive(Debug, Clone)]
pub struct PolicyDir {
    dir: PathBuf,
    env: CelEnv,
    allow_empty: bool,
    /// Load only sets signed with this key (`--require-signed-policies`).
    signed: Option<std::sync::Arc<super::signed::Requirement>>,
}

/// The directory's files and the files its authorities name, read once: what a load compiles
/// and what a reload compares.
#[derive(Debug)]
pub struct Scan {
    files: Vec<(PathBuf, Vec<u8>)>,
    /// A hash of every file's path and content (or why it could not be read).
    pub fingerprint: u64,
}

impl Scan {
    /// The directory's files and their bytes, sorted by path.
    pub fn files(&self) -> &[(PathBuf, Vec<u8>)] {
        &self.files
    }
}

impl PolicyDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), env: CelEnv::new(), allow_empty: false, signed: None }
    }

    /// Load the directory only when its signature verifies with `key` (see [`super::signed`]).
    pub fn require_signature(mut self, key: Option<super::signed::Requirement>) -> Self {
        self.signed = key.map(std::sync::Arc::new);
        self
    }

    /// Let a reload replace a non-empty set with an empty one (`--allow-empty-policies`).
    /// Without it such a reload fails and the last good set is kept.
    pub fn allow_empty(mut self, allow: bool) -> Self {
        self.allow_empty = allow;
        self
    }

    pub fn allows_empty(&self) -> bool {
        self.allow_empty
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Read, parse and compile every policy file, and read the files the policies name.
    /// Returns the set and its fingerprint (see [`PolicyDir::scan`]).
    pub fn load(&self) -> Result<(PolicySet, u64), LoadError> {
        self.load_scanned(&self.scan(&[])?)
    }

    /// Compile the policies of a scan (the bytes it read, not the disk as it is now).
    pub fn load_scanned(&self, scan: &Scan) -> Result<(PolicySet, u64), LoadError> {
        if let Some(key) = &self.signed {
            super::signed::verify(key, &self.dir, &scan.files)?;
        }
        let mut policies: Vec<Policy> = Vec::new();
        for (path, bytes) in &scan.files {
            if !is_policy_file(path) {
                continue;
            }
            let text = std::str::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 { path: path.clone() })?;
            let base = path.parent().unwrap_or(&self.dir);
            check_shape(text, path)?;
            let parsed = parse_file(text, &path.display().to_string(), base, &self.env)?;
            // A file of `PolicyTest` documents holds no policy, and is not "empty".
            if parsed.is_empty() && split_documents(text).is_empty() {
                return Err(LoadError::EmptyFile { path: path.clone() });
            }
            policies.extend(parsed);
        }
        let mut set = PolicySet::new(policies)?;
        let read = read_authority_files(&mut set)?;
        if self.signed.is_some() {
            super::signed::check_named_files(&self.dir, &scan.files, &read)?;
        }
        let named: Vec<_> = read.into_iter().map(|(path, bytes)| (path, Ok(bytes))).collect();
        Ok((set, fingerprint(&scan.files, &named)))
    }

    /// Read every file of the directory and the files in `named` (the key files and trusted
    /// roots of the set being served, wherever they are). Its fingerprint equals the one
    /// [`PolicyDir::load`] returned exactly when nothing the set was loaded from has changed.
    pub fn scan(&self, named: &[PathBuf]) -> Result<Scan, LoadError> {
        let files = self.read_all()?;
        let named: Vec<_> = named
            .iter()
            .map(|p| (p.clone(), read_limited(p, MAX_TRUSTED_ROOT_BYTES.max(MAX_KEY_BYTES)).map_err(|e| e.to_string())))
            .collect();
        let fingerprint = fingerprint(&files, &named);
        Ok(Scan { files, fingerprint })
    }

    /// The policy files of the directory (`*.yaml`, `*.yml`) and their text, sorted by path.
    pub fn policy_texts(&self) -> Result<Vec<(PathBuf, String)>, LoadError> {
        self.read_all()?
            .into_iter()
            .filter(|(path, _)| is_policy_file(path))
            .map(|(path, bytes)| match String::from_utf8(bytes) {
                Ok(text) => Ok((path, text)),
                Err(_) => Err(LoadError::NotUtf8 { path }),
            })
            .collect()
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
        let mut seen = Vec::new();
        walk(&self.dir, 0, &mut paths, &mut seen).map_err(|e| match e {
            LoadError::TooManyFiles { .. } => LoadError::TooManyFiles { path: self.dir.clone() },
            other => other,
        })?;
        paths.sort();
        let mut total = 0u64;
        paths
            .into_iter()
            .map(|p| {
                let bytes = read_limited(&p, MAX_FILE_BYTES)?;
                total += bytes.len() as u64;
                if total > MAX_TOTAL_BYTES {
                    return Err(LoadError::TooManyBytes { path: self.dir.clone() });
                }
                Ok((p, bytes))
            })
            .collect()
    }
}

/// Load the policies of one file (relative key paths resolve against its directory).
pub fn load_file(path: &Path, env: &CelEnv) -> Result<PolicySet, LoadError> {
    let bytes = read_limited(path, MAX_FILE_BYTES)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| LoadError::NotUtf8 { path: path.to_path_buf() })?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_text(text, &path.display().to_string(), base, env)
}

/// Load the policies of one YAML text, named `file` in messages (relative key paths resolve
/// against `base`): compiled, and with the files its authorities name read.
pub fn load_text(text: &str, file: &str, base: &Path, env: &CelEnv) -> Result<PolicySet, LoadError> {
    check_shape(text, Path::new(file))?;
    let policies = parse_file(text, file, base, env)?;
    if policies.is_empty() {
        return Err(LoadError::EmptyFile { path: PathBuf::from(file) });
    }
    let mut set = PolicySet::new(policies)?;
    read_authority_files(&mut set)?;
    Ok(set)
}

/// Read every `publicKeyFile` and `trustedRoot` the set's authorities name, check it, store its
/// content in the authority and hash it into the policy's fingerprint (so nothing cached for the
/// old content is reused). Returns what was read, by path.
pub fn read_authority_files(set: &mut PolicySet) -> Result<BTreeMap<PathBuf, Vec<u8>>, LoadError> {
    let mut read: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let mut roots_checked: Vec<PathBuf> = Vec::new();
    for policy in &mut set.images {
        let mut hasher = DefaultHasher::new();
        policy.fingerprint.hash(&mut hasher);
        let at = policy.source.to_string();
        for authority in &mut policy.authorities {
            let error = |field: &str, path: &Path, reason: String| LoadError::AuthorityFile {
                at: format!("{at}: policy {:?}: authority {:?}: {field}", policy.name, authority.name),
                path: path.to_path_buf(),
                reason,
            };
            if let AuthorityKind::Key(KeyRef::File(path)) = &authority.kind {
                let text = read_text(&mut read, path, MAX_KEY_BYTES).map_err(|r| error("publicKeyFile", path, r))?;
                crate::verify::bundle::parse_public_key(&text).map_err(|e| {
                    let reason = if text.contains("PRIVATE KEY-----") {
                        "it holds a PRIVATE key: never give it to portcullis (or commit it); use the public key \
                         (cosign.pub, -----BEGIN PUBLIC KEY-----)"
                            .to_owned()
                    } else {
                        format!("{e}; it must hold the PEM public key (-----BEGIN PUBLIC KEY-----, as cosign.pub)")
                    };
                    error("publicKeyFile", path, reason)
                })?;
                authority.files.key = Some(FileContent::new(text));
            }
            if let Some(path) = &authority.trusted_root {
                let text =
                    read_text(&mut read, path, MAX_TRUSTED_ROOT_BYTES).map_err(|r| error("trustedRoot", path, r))?;
                if !roots_checked.contains(path) {
                    TrustRoot::from_json(&text).map_err(|e| error("trustedRoot", path, e.to_string()))?;
                    roots_checked.push(path.clone());
                }
                authority.files.trusted_root = Some(FileContent::new(text));
            }
            let hashes =
                (authority.files.key.as_ref().map(|f| f.hash), authority.files.trusted_root.as_ref().map(|f| f.hash));
            hashes.hash(&mut hasher);
        }
        policy.fingerprint = hasher.finish();
    }
    Ok(read)
}

/// A file named by an authority, as text (read once per load even if named several times).
fn read_text(read: &mut BTreeMap<PathBuf, Vec<u8>>, path: &Path, limit: u64) -> Result<String, String> {
    let bytes = match read.get(path) {
        Some(bytes) => bytes.clone(),
        None => {
            let bytes = read_limited(path, limit).map_err(|e| match e {
                LoadError::Io { error, .. } => format!(
                    "cannot read it: {error}; restore the file or fix the path (it is read when the policies \
                     load and checked again at every reload)"
                ),
                other => other.to_string(),
            })?;
            read.insert(path.to_path_buf(), bytes.clone());
            bytes
        }
    };
    if bytes.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// Refuse a file nested too deep for the YAML parser to read in linear time, or whose aliases
/// expand without bound.
fn check_shape(text: &str, path: &Path) -> Result<(), LoadError> {
    match shape::check(text) {
        Err(shape::Shape::TooDeep(line)) => Err(LoadError::TooDeep { path: path.to_path_buf(), line }),
        Err(shape::Shape::TooManyNodes(line)) => Err(LoadError::TooManyNodes { path: path.to_path_buf(), line }),
        Ok(()) => Ok(()),
    }
}

fn is_policy_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Collect the files under `dir` (symlinks followed, hidden entries skipped). `seen` holds the
/// directories read so far, resolved: one reached again (a symlink loop, or two links to one
/// directory) is an error, as is nesting deeper than [`MAX_DEPTH`] (never skipped silently).
fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>, seen: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |error| LoadError::Io { path: dir.to_path_buf(), error };
    let resolved = std::fs::canonicalize(dir).map_err(io)?;
    if let Some(target) = seen.iter().find(|s| **s == resolved) {
        return Err(LoadError::DirectoryTwice { path: dir.to_path_buf(), target: target.clone() });
    }
    seen.push(resolved);
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follow symlinks (ConfigMap mounts are symlinks into ..data).
        let meta = std::fs::metadata(&path).map_err(|error| LoadError::Io { path: path.clone(), error })?;
        if meta.is_dir() {
            if depth + 1 >= MAX_DEPTH {
                return Err(LoadError::TooDeepDirectory { path });
            }
            walk(&path, depth + 1, out, seen)?;
        } else if meta.is_file() {
            out.push(path);
            if out.len() > MAX_FILES {
                return Err(LoadError::TooManyFiles { path: dir.to_path_buf() });
            }
        }
    }
    Ok(())
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    let io = |error| LoadError::Io { path: path.to_path_buf(), error };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(LoadError::TooLarge { path: path.to_path_buf(), limit });
    }
    Ok(bytes)
}

/// A hash of the directory's files and of the named files (content, or why it was unreadable).
fn fingerprint(files: &[(PathBuf, Vec<u8>)], named: &[(PathBuf, Result<Vec<u8>, String>)]) -> u64 {
    let mut hasher = DefaultHasher::new();
    (files, named).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;
