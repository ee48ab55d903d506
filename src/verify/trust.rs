//! The Sigstore trust root: Fulcio CAs, Rekor and CT log keys, timestamp authorities.
//!
//! A [`TrustRoot`] is parsed and checked once (every key and certificate must be usable) and then
//! shared: it is cheap to clone. Nothing is ever fetched: the public-good root is embedded in the
//! binary, and so is GitHub's artifact attestation root (`github`: Fulcio and TSA at githubapp.com,
//! no transparency log; the `trusted_root.json` of GitHub's TUF repository as `sigstore-trust-root`
//! ships it); private instances give a `trusted_root.json` file.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sigstore_trust_root::{
    SIGSTORE_GITHUB_TRUSTED_ROOT, SIGSTORE_PRODUCTION_TRUSTED_ROOT, SIGSTORE_STAGING_TRUSTED_ROOT, TrustedRoot,
};
use sigstore_verify::Verifier;

/// The largest `trusted_root.json` accepted (the public-good one is about 10 KiB).
pub const MAX_TRUSTED_ROOT_BYTES: u64 = 4 * 1024 * 1024;

/// A trust root that cannot be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read trusted root {path}: {source}; check the path and its permissions")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("trusted root {path} is larger than {limit} bytes; is it really a trusted_root.json?")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error(
        "trusted root is not a valid trusted_root.json ({0}); use the file published by your Sigstore \
         instance (`sigstore-trust-root` / TUF `trusted_root.json`)"
    )]
    Parse(String),
    #[error("trusted root cannot be used for verification: {0}; fix or replace the trusted_root.json")]
    Unusable(String),
}

/// A checked Sigstore trusted root, ready to verify bundles against.
#[derive(Clone)]
pub struct TrustRoot {
    inner: Arc<Inner>,
}

struct Inner {
    root: TrustedRoot,
    verifier: Verifier,
}

impl fmt::Debug for TrustRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = &self.inner.root;
        f.debug_struct("TrustRoot")
            .field("certificate_authorities", &root.certificate_authorities.len())
            .field("tlogs", &root.tlogs.len())
            .field("ctlogs", &root.ctlogs.len())
            .field("timestamp_authorities", &root.timestamp_authorities.len())
            .finish()
    }
}

impl TrustRoot {
    /// The Sigstore public-good trusted root embedded in the binary (nothing fetched).
    pub fn production() -> Result<Self, TrustError> {
        Self::from_json(SIGSTORE_PRODUCTION_TRUSTED_ROOT)
    }

    /// The Sigstore staging trusted root embedded in the binary (for tests against staging).
    pub fn staging() -> Result<Self, TrustError> {
        Self::from_json(SIGSTORE_STAGING_TRUSTED_ROOT)
    }

    /// GitHub's artifact attestation instance (private repositories: Fulcio and TSA at
    /// githubapp.com, no transparency log), embedded in the binary.
    pub fn github() -> Result<Self, TrustError> {
        Self::from_json(SIGSTORE_GITHUB_TRUSTED_ROOT)
    }

    /// `--trusted-root VALUE`: a built-in root by name (`github`), else a trusted_root.json file
    /// (a file named like a built-in root is given as `./github`).
    pub fn named_or_file(value: &Path) -> Result<Self, TrustError> {
        match value.to_str().and_then(crate::policy::builtin_trusted_root) {
            Some(json) => Self::from_json(json),
            None => Self::from_file(value),
        }
    }

    /// Whether the root lists a CT log (else its certificates carry no SCT to verify).
    pub fn has_ct_logs(&self) -> bool {
        !self.inner.root.ctlogs.is_empty()
    }

    /// Whether the root lists a timestamp authority.
    pub fn has_timestamp_authorities(&self) -> bool {
        !self.inner.root.timestamp_authorities.is_empty()
    }

    /// A trusted_root.json file (size-limited read), for private instances / `--trusted-root`.
    pub fn from_file(path: &Path) -> Result<Self, TrustError> {
        let read_err = |source| TrustError::Read { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut json = String::new();
        file.take(MAX_TRUSTED_ROOT_BYTES + 1).read_to_string(&mut json).map_err(read_err)?;
        if json.len() as u64 > MAX_TRUSTED_ROOT_BYTES {
            return Err(TrustError::TooLarge { path: path.to_owned(), limit: MAX_TRUSTED_ROOT_BYTES });
        }
        Self::from_json(&json)
    }

    /// A trusted root from its JSON text.
    pub fn from_json(json: &str) -> Result<Self, TrustError> {
        let root = TrustedRoot::from_json(json).map_err(|e| TrustError::Parse(e.to_string()))?;
        let verifier = Verifier::new(&root).map_err(|e| TrustError::Unusable(e.to_string()))?;
        Ok(Self { inner: Arc::new(Inner { root, verifier }) })
    }

    /// The parsed trusted root.
    pub fn trusted_root(&self) -> &TrustedRoot {
        &self.inner.root
    }

    /// The verifier built from this root (all trust material already checked).
    pub(crate) fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shareable_across_tasks() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<TrustRoot>();
    }

    #[test]
    fn production_root_loads() {
        let root = TrustRoot::production().expect("embedded root");
        assert!(!root.trusted_root().certificate_authorities.is_empty());
        assert!(!root.trusted_root().tlogs.is_empty());
    }

    #[test]
    fn staging_root_loads() {
        assert!(!TrustRoot::staging().expect("embedded staging root").trusted_root().tlogs.is_empty());
    }

    #[test]
    fn github_root_is_built_in_without_logs() {
        let root = TrustRoot::github().expect("embedded GitHub root");
        let parsed = root.trusted_root();
        assert!(parsed.certificate_authorities.iter().all(|ca| ca.uri == "fulcio.githubapp.com"));
        assert!(parsed.timestamp_authorities.iter().all(|tsa| tsa.uri.as_deref() == Some("timestamp.githubapp.com")));
        assert!(root.has_timestamp_authorities() && !root.has_ct_logs() && parsed.tlogs.is_empty());
        let named = TrustRoot::named_or_file(Path::new("github")).expect("by name");
        assert_eq!(named.trusted_root().certificate_authorities.len(), parsed.certificate_authorities.len());
        // Any other value is a file.
        let err = TrustRoot::named_or_file(Path::new("./github")).expect_err("no such file");
        assert!(matches!(err, TrustError::Read { .. }), "{err}");
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(TrustRoot::from_json("{not json"), Err(TrustError::Parse(_))));
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = TrustRoot::from_file(Path::new("/nonexistent/trusted_root.json")).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/trusted_root.json"), "{err}");
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; (MAX_TRUSTED_ROOT_BYTES + 10) as usize]).expect("write");
        assert!(matches!(TrustRoot::from_file(&path), Err(TrustError::TooLarge { .. })));
    }
}
