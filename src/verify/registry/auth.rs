//! Registry credentials and the token flow: `WWW-Authenticate` challenges (Basic and Bearer),
//! credentials from a docker `config.json`, and the cache of Bearer tokens per credential set.
//! Credentials are never logged or put in errors.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// Largest docker config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A username and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

impl Credential {
    /// Who these credentials are, as a cache key: a hash of the username and password (the
    /// password itself is never kept in a key).
    pub fn identity(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.username.as_bytes());
        hash.update([0]);
        hash.update(self.password.as_bytes());
        hash.finalize().into()
    }

    /// The `Authorization: Basic …` value.
    pub fn basic_header(&self) -> String {
        format!("Basic {}", STANDARD.encode(format!("{}:{}", self.username, self.password)))
    }
}

/// Credentials by registry host (`ghcr.io`, `localhost:5000`, `docker.io`).
#[derive(Clone, Default)]
pub struct Keychain {
    by_host: HashMap<String, Credential>,
}

impl fmt::Debug for Keychain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hosts: Vec<_> = self.by_host.keys().collect();
        hosts.sort();
        f.debug_struct("Keychain").field("hosts", &hosts).finish()
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read registry config {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("registry config {path} is larger than 1 MiB")]
    TooLarge { path: String },
    #[error(
        "registry config {path} is not a docker config.json: {error} \
         (expected {{\"auths\": {{\"host\": {{\"auth\": \"base64(user:pass)\"}}}}}})"
    )]
    Parse { path: String, error: String },
    #[error("registry config {path}: the credential for {host} is malformed: {why}")]
    Entry { path: String, host: String, why: &'static str },
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

impl Keychain {
    /// Read a docker `config.json` (`auths` entries; `auth` or `username`/`password`).
    pub fn from_docker_config(path: &Path) -> Result<Self, AuthError> {
        use std::io::Read;
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|error| AuthError::Read { path: name.clone(), error })?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| AuthError::Read { path: name.clone(), error })?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(AuthError::TooLarge { path: name });
        }
        Self::from_docker_config_json(&bytes, &name)
    }

    /// Parse the content of a docker `config.json` (also the `.dockerconfigjson` of a Secret).
    pub fn from_docker_config_json(bytes: &[u8], name: &str) -> Result<Self, AuthError> {
        let config: DockerConfig = serde_json::from_slice(bytes)
            .map_err(|e| AuthError::Parse { path: name.to_owned(), error: e.to_string() })?;
        let mut keychain = Self::default();
        for (key, entry) in config.auths {
            let host = normalise_host(&key);
            let entry_err = |why| AuthError::Entry { path: name.to_owned(), host: host.clone(), why };
            let credential = match (entry.auth, entry.username, entry.password, entry.identity_token) {
                (Some(auth), _, _, _) if !auth.is_empty() => {
                    let decoded = STANDARD.decode(auth.trim()).map_err(|_| entry_err("`auth` is not base64"))?;
                    let text = String::from_utf8(decoded).map_err(|_| entry_err("`auth` is not UTF-8"))?;
                    let (user, pass) = text.split_once(':').ok_or_else(|| entry_err("`auth` is not user:password"))?;
                    Credential { username: user.to_owned(), password: pass.to_owned() }
                }
                (_, Some(username), Some(password), _) => Credential { username, password },
                (_, _, _, Some(_)) => {
                    return Err(entry_err("identity tokens (OAuth refresh tokens) are not supported"));
                }
                _ => continue,
            };
            keychain.by_host.insert(host, credential);
        }
        Ok(keychain)
    }

    /// Add or replace the credential for a host.
    pub fn insert(&mut self, host: &str, credential: Credential) {
        self.by_host.insert(normalise_host(host), credential);
    }

    /// Add every credential of `other`, replacing those for the same hosts.
    pub fn extend(&mut self, other: Keychain) {
        self.by_host.extend(other.by_host);
    }

    /// Whether there is no credential at all.
    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// The credential for a registry host, if any.
    pub fn get(&self, host: &str) -> Option<&Credential> {
        self.by_host.get(&normalise_host(host))
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `https://ghcr.io` → `ghcr.io`.
fn normalise_host(key: &str) -> String {
    let host = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

/// Most tokens kept; expired ones are dropped beyond it, then all.
const MAX_TOKENS: usize = 4096;
/// Tokens are renewed this much before they expire (at most a tenth of their life).
const TOKEN_MARGIN: Duration = Duration::from_secs(5);
/// A token's life when the token endpoint does not say (the distribution token spec's default).
pub const DEFAULT_TOKEN_LIFE: Duration = Duration::from_secs(60);

/// What a Bearer token was issued for: the registry, the repository (the scope asked for) and
/// the credentials it was asked with (None: anonymous). Two views with other credentials never
/// share a token; the same credentials (or none) share one until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    registry: String,
    repository: String,
    identity: Option<[u8; 32]>,
}

impl TokenKey {
    pub fn new(registry: &str, repository: &str, credential: Option<&Credential>) -> Self {
        Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            identity: credential.map(Credential::identity),
        }
    }
}

/// Bearer tokens by credential set, kept until shortly before they expire. One per registry
/// client (shared by its per-namespace credential views), never process-global.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
    /// One token request per credential set at a time: concurrent requests that all got a 401
    /// (discovery fetches tags, referrers and layers at once) wait for the first one's answer.
    fetching: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<Option<LastFetch>>>>>,
}

/// How long a refusal by the token endpoint is remembered for one credential set. Changed
/// credentials (another pull secret, another password) are another set, never held back.
const REFUSED_FOR: Duration = Duration::from_secs(10);

/// The last token request of a credential set: when it ended and its `Authorization` value or
/// why it failed. A failure is shared with the requests sent before it ended; a refusal of the
/// credentials (401/403 from the token endpoint) with every request for [`REFUSED_FOR`].
struct LastFetch {
    at: Instant,
    outcome: Result<String, super::RegistryError>,
    refused: bool,
}

/// Why a token could not be had; `refused` when the token endpoint refused the credentials.
#[derive(Debug)]
pub struct TokenFailure {
    pub error: super::RegistryError,
    pub refused: bool,
}

impl From<super::RegistryError> for TokenFailure {
    fn from(error: super::RegistryError) -> Self {
        Self { error, refused: false }
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache").field("tokens", &self.len()).finish()
    }
}

impl TokenCache {
    /// The `Authorization` value cached for `key`, if it has not expired.
    pub fn get(&self, key: &TokenKey) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.get(key).filter(|(_, until)| *until > Instant::now()).map(|(t, _)| t.clone())
    }

    /// Keep `authorization` for `key` for `life` (what the token endpoint said, `expires_in`)
    /// less a margin.
    pub fn insert(&self, key: TokenKey, authorization: String, life: Duration) {
        let until = Instant::now() + life.saturating_sub(TOKEN_MARGIN.min(life / 10));
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= MAX_TOKENS {
            let now = Instant::now();
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(key, (authorization, until));
    }

    /// The `Authorization` value for a request of `key`'s credential set that was sent at
    /// `sent_at` (with `rejected`, if any, and answered 401): one `fetch` per credential set at a
    /// time; what a concurrent fetch got since `sent_at`, or a token cached meanwhile, is used
    /// instead of fetching again; a recent refusal of the credentials is answered at once.
    pub async fn authorization<F, Fut>(
        &self,
        key: &TokenKey,
        rejected: Option<&str>,
        sent_at: Instant,
        fetch: F,
    ) -> Result<String, super::RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Duration), TokenFailure>>,
    {
        let mut turn = self.fetch_turn(key).await;
        if let Some(last) = &*turn {
            match &last.outcome {
                Ok(fresh) if last.at >= sent_at && Some(fresh.as_str()) != rejected => return Ok(fresh.clone()),
                Err(error) if last.at >= sent_at || (last.refused && last.at.elapsed() < REFUSED_FOR) => {
                    return Err(error.clone());
                }
                _ => {}
            }
        }
        if let Some(fresh) = self.get(key).filter(|f| Some(f.as_str()) != rejected) {
            return Ok(fresh);
        }
        let (outcome, refused) = match fetch().await {
            Ok((token, life)) => {
                let header = format!("Bearer {token}");
                self.insert(key.clone(), header.clone(), life);
                (Ok(header), false)
            }
            Err(TokenFailure { error, refused }) => (Err(error), refused),
        };
        *turn = Some(LastFetch { at: Instant::now(), outcome: outcome.clone(), refused });
        outcome
    }

    /// Wait for the right to fetch the token of `key` (single flight).
    async fn fetch_turn(&self, key: &TokenKey) -> tokio::sync::OwnedMutexGuard<Option<LastFetch>> {
        let lock = {
            let mut fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
            if fetching.len() >= MAX_TOKENS {
                fetching.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            Arc::clone(fetching.entry(key.clone()).or_default())
        };
        lock.lock_owned().await
    }

    /// Tokens kept (expired ones included until they are replaced or dropped).
    pub fn len(&self) -> usize {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no token is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parse `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut rest = params;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        fields.insert(key, value.to_owned());
        rest = remaining.trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: fields.remove("realm")?,
        service: fields.remove("service"),
        scope: fields.remove("scope"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge("Bearer realm=https://ghcr.io/token"),
            Some(Challenge::Bearer { realm: "https://ghcr.io/token".into(), service: None, scope: None })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None, "a bearer challenge needs a realm");
    }

    fn refusal(refused: bool) -> TokenFailure {
        let error = crate::verify::registry::RegistryError::Auth {
            url: "https://r.io/v2/".into(),
            status: 401,
            why: "token endpoint answered 401".into(),
        };
        TokenFailure { error, refused }
    }

    #[tokio::test]
    async fn one_token_request_per_credential_set_at_a_time_and_refusals_remembered() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = TokenCache::default();
        let calls = AtomicUsize::new(0);
        let key = TokenKey::new("r.io", "team/app", None);
        let sent_at = Instant::now();
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(("T".to_owned(), Duration::from_secs(60)))
        };
        let all =
            futures_util::future::join_all((0..10).map(|_| cache.authorization(&key, None, sent_at, fetch))).await;
        assert!(all.iter().all(|a| a.as_deref() == Ok("Bearer T")), "{all:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one fetch for ten concurrent 401s");
        // The token itself rejected: fetched again.
        let again = cache.authorization(&key, Some("Bearer T"), Instant::now(), fetch).await;
        assert_eq!((again.as_deref(), calls.load(Ordering::SeqCst)), (Ok("Bearer T"), 2));

        // A failure that is not a refusal is not kept for requests sent after it.
        let other = TokenKey::new("r.io", "team/other", None);
        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(refusal(false))
        };
        assert!(cache.authorization(&other, None, Instant::now(), failing).await.is_err());
        assert!(cache.authorization(&other, None, Instant::now(), failing).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // A refusal of the credentials is answered without asking again.
        let refused = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(refusal(true))
        };
        assert!(cache.authorization(&other, None, Instant::now(), refused).await.is_err());
        assert!(cache.authorization(&other, None, Instant::now(), refused).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 5, "refused once, remembered");
    }

    #[test]
    fn tokens_are_kept_per_credential_set_until_they_expire() {
        let cache = TokenCache::default();
        let alice = Credential { username: "alice".into(), password: "a".into() };
        let other_password = Credential { username: "alice".into(), password: "b".into() };
        cache.insert(TokenKey::new("r.io", "team/app", Some(&alice)), "Bearer A".into(), Duration::from_secs(60));
        assert_eq!(cache.get(&TokenKey::new("r.io", "team/app", Some(&alice))).as_deref(), Some("Bearer A"));
        // Another password, anonymous, another repository or registry: not this token.
        assert_eq!(cache.get(&TokenKey::new("r.io", "team/app", Some(&other_password))), None);
        assert_eq!(cache.get(&TokenKey::new("r.io", "team/app", None)), None);
        assert_eq!(cache.get(&TokenKey::new("r.io", "team/other", Some(&alice))), None);
        assert_eq!(cache.get(&TokenKey::new("q.io", "team/app", Some(&alice))), None);
        // A token that expires (almost) now is not used.
        cache.insert(TokenKey::new("r.io", "short", None), "Bearer S".into(), Duration::ZERO);
        assert_eq!(cache.get(&TokenKey::new("r.io", "short", None)), None);
        assert!(!format!("{:?}", TokenKey::new("r.io", "x", Some(&alice))).contains("\"a\""));
    }

    #[test]
    fn docker_config() {
        let json = br#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpzM2NyM3Q="},
            "localhost:5443": {"username": "testuser", "password": "testpass"},
            "ghcr.io": {}
        }}"#;
        let k = Keychain::from_docker_config_json(json, "config.json").expect("parses");
        assert_eq!(k.get("docker.io").map(|c| c.username.as_str()), Some("user"));
        assert_eq!(k.get("localhost:5443").map(|c| c.password.as_str()), Some("testpass"));
        assert!(k.get("ghcr.io").is_none());
        let debug = format!("{:?}", k.get("docker.io"));
        assert!(!debug.contains("s3cr3t") && debug.contains("redacted"), "{debug}");
        let bad = Keychain::from_docker_config_json(br#"{"auths": {"x": {"auth": "!!"}}}"#, "c.json");
        let message = bad.expect_err("bad base64").to_string();
        assert!(message.contains("not base64") && !message.contains("!!"), "{message}");
    }
}
