//! An OCI registry client: shared, concurrent (`&self`), with size limits and digest checks on
//! everything it reads. Anonymous, Basic and Bearer-token (`WWW-Authenticate`) auth; custom CA
//! bundles; plain HTTP only for registries listed as insecure.
//!
//! A registry error is an error (with the URL and status), never "no signature".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use sha2::{Digest as _, Sha256};

pub mod auth;
pub mod bound;
pub mod layout;
mod retry;

use self::auth::{Challenge, Credential, Keychain, TokenCache, TokenFailure, TokenKey, parse_challenge};
use super::observe::{self, Observer};
use crate::image::Digest;

/// Media types of manifests and indexes.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest or index read (the distribution spec recommends 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest blob read (signature payloads, bundles, attestations with SBOMs).
pub const MAX_BLOB_BYTES: usize = 32 * 1024 * 1024;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// `host:port` of registries reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM) trusted for registry TLS.
    pub ca_pem: Vec<Vec<u8>>,
    /// Credentials by registry host.
    pub keychain: Keychain,
    /// Per-request timeout (default 10 s).
    pub timeout: Option<Duration>,
    /// Most requests in flight to one registry host (default [`bound::DEFAULT_CONCURRENCY`]).
    pub concurrency: Option<usize>,
}

/// What went wrong talking to a registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry request {url} failed: {error}")]
    Transport { url: String, error: String },
    #[error("registry answered {status} for {url}{detail}")]
    Status { url: String, status: u16, detail: String },
    /// The registry answered `status` (401, or 401/403 with credentials) and no authorization
    /// that it accepts could be had.
    #[error("{url}: authentication failed ({why})")]
    Auth { url: String, status: u16, why: String },
    #[error("{url}: the response is larger than the {limit}-byte limit")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: content digest {actual} does not match the requested {expected}")]
    DigestMismatch { url: String, expected: String, actual: String },
    #[error("{url}: {why}")]
    Invalid { url: String, why: String },
    #[error("cannot build the registry client: {0}")]
    Client(String),
    #[error(
        "no request slot for {host} before the review's deadline: waited {waited_ms} ms for one of its {limit} \
         request slots, all in flight (--registry-concurrency)"
    )]
    Busy { host: String, limit: usize, waited_ms: u64 },
}

/// A fetched manifest: its bytes, media type and (checked) digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl Manifest {
    /// Parse the manifest JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.bytes)
    }

    /// Whether this is an image index / manifest list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }
}

/// An OCI registry client.
pub struct Registry {
    http: reqwest::Client,
    config: RegistryConfig,
    tokens: Arc<TokenCache>,
    requests: Arc<AtomicU64>,
    observer: Arc<dyn Observer>,
    /// Serve everything from this OCI layout instead of the network (`policy test` evidence).
    layout: Option<Arc<layout::Layout>>,
    slots: Arc<bound::HostSlots>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("insecure", &self.config.insecure).finish()
    }
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout.unwrap_or(Duration::from_secs(10)))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
        for pem in &config.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| RegistryError::Client(e.to_string()))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| RegistryError::Client(e.to_string()))?;
        let slots = Arc::new(bound::HostSlots::new(config.concurrency.unwrap_or(bound::DEFAULT_CONCURRENCY)));
        Ok(Self {
            http,
            config,
            tokens: Arc::new(TokenCache::default()),
            requests: Arc::new(AtomicU64::new(0)),
            observer: observe::ignore(),
            layout: None,
            slots,
        })
    }

    /// A client that reads an OCI image layout directory instead of any registry: every
    /// repository of every host is the layout; digests and size limits are checked as for a
    /// registry. Never touches the network.
    pub fn from_layout(dir: &std::path::Path) -> Result<Self, RegistryError> {
        let mut registry = Self::new(RegistryConfig::default())?;
        registry.layout = Some(Arc::new(layout::Layout::open(dir)?));
        Ok(registry)
    }

    /// Report every request (host, status, latency) and retry to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// The same client (connections, CAs, insecure list, request counter, token cache) with
    /// `extra` credentials added over the configured ones. Tokens are cached per registry,
    /// repository and credentials: a token fetched with one namespace's pull secrets is never
    /// used for a view without those same credentials.
    pub fn with_credentials(&self, extra: Keychain) -> Self {
        let mut config = self.config.clone();
        config.keychain.extend(extra);
        Self {
            http: self.http.clone(),
            config,
            tokens: Arc::clone(&self.tokens),
            requests: Arc::clone(&self.requests),
            observer: Arc::clone(&self.observer),
            layout: self.layout.clone(),
            slots: Arc::clone(&self.slots),
        }
    }

    /// HTTP requests sent so far (for benchmarks).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The base URL of a registry's API.
    fn base(&self, registry: &str) -> String {
        let host = if registry == crate::image::DOCKER_HUB { "registry-1.docker.io" } else { registry };
        let scheme = if self.config.insecure.iter().any(|h| h == registry) { "http" } else { "https" };
        format!("{scheme}://{host}/v2")
    }

    /// Resolve a tag (or check a digest) to the manifest digest: HEAD first, GET if the registry
    /// gives no `Docker-Content-Digest`.
    pub async fn resolve(&self, registry: &str, repository: &str, reference: &str) -> Result<Digest, RegistryError> {
        if let Some(layout) = &self.layout {
            return layout.resolve(reference);
        }
        let url = format!("{}/{repository}/manifests/{reference}", self.base(registry));
        {
            let (_slot, call) = self.start(registry, "HEAD", &url).await?;
            let response = self.send(registry, repository, reqwest::Method::HEAD, &url, MANIFEST_ACCEPT).await?;
            call.done();
            if response.status() == StatusCode::OK
                && let Some(digest) = header_digest(response.headers())
            {
                return Ok(digest);
            }
            if response.status() != StatusCode::OK && response.status() != StatusCode::METHOD_NOT_ALLOWED {
                return Err(status_error(&url, response.status(), ""));
            }
        }
        match self.manifest(registry, repository, reference).await? {
            Some(m) => Ok(m.digest),
            None => Err(status_error(&url, StatusCode::NOT_FOUND, "")),
        }
    }

    /// Fetch a manifest by tag or digest; `None` if the registry says 404. A digest reference is
    /// checked against the content.
    pub async fn manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, RegistryError> {
        if let Some(layout) = &self.layout {
            return layout.manifest(reference);
        }
        let url = format!("{}/{repository}/manifests/{reference}", self.base(registry));
        let (_slot, call) = self.start(registry, "GET", &url).await?;
        let response = self.send(registry, repository, reqwest::Method::GET, &url, MANIFEST_ACCEPT).await?;
        if response.status() == StatusCode::NOT_FOUND {
            call.done();
            return Ok(None);
        }
        if !response.status().is_success() {
            let status = response.status();
            let body = read_limited(response, &url, 4096).await.unwrap_or_default();
            return Err(status_error(&url, status, &String::from_utf8_lossy(&body)));
        }
        let header_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let claimed = header_digest(response.headers());
        let bytes = read_limited(response, &url, MAX_MANIFEST_BYTES).await?;
        call.done();
        let actual = sha256_digest(&bytes);
        if let Ok(expected) = Digest::parse(reference)
            && expected != actual
        {
            return Err(mismatch(&url, &expected, &actual));
        }
        if let Some(claimed) = claimed
            && claimed.algorithm() == "sha256"
            && claimed != actual
        {
            return Err(mismatch(&url, &claimed, &actual));
        }
        let media_type = header_type
            .filter(|t| !t.is_empty() && t != "application/json")
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_owned))
            })
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        Ok(Some(Manifest { media_type, digest: actual, bytes }))
    }

    /// Fetch a blob, refusing more than `limit` bytes and content whose sha256 is not `digest`.
    pub async fn blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        if let Some(layout) = &self.layout {
            return layout.blob(digest, limit);
        }
        let url = format!("{}/{repository}/blobs/{digest}", self.base(registry));
        let (_slot, call) = self.start(registry, "GET", &url).await?;
        let response = self.send(registry, repository, reqwest::Method::GET, &url, "*/*").await?;
        if !response.status().is_success() {
            return Err(status_error(&url, response.status(), ""));
        }
        let bytes = read_limited(response, &url, limit).await?;
        call.done();
        let actual = sha256_digest(&bytes);
        if digest.algorithm() != "sha256" || &actual != digest {
            return Err(mismatch(&url, digest, &actual));
        }
        Ok(bytes)
    }

    /// The OCI 1.1 referrers of a manifest: `Ok(Some(index))` from the referrers API, `Ok(None)`
    /// when the registry has no referrers API (404), so the caller uses the fallback tag.
    pub async fn referrers_api(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<serde_json::Value>, RegistryError> {
        if let Some(layout) = &self.layout {
            return layout.referrers(digest);
        }
        let url = format!("{}/{repository}/referrers/{digest}", self.base(registry));
        let (_slot, call) = self.start(registry, "GET", &url).await?;
        let response = self.send(registry, repository, reqwest::Method::GET, &url, OCI_INDEX).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let bytes = read_limited(response, &url, MAX_MANIFEST_BYTES).await?;
                call.done();
                let index: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| RegistryError::Invalid { url: url.clone(), why: format!("referrers index: {e}") })?;
                Ok(Some(index))
            }
            status => Err(status_error(&url, status, "")),
        }
    }

    /// Take one of `registry`'s request slots (waiting within the review's deadline) and record
    /// the call for the review, so a denial for time can name it; both end when dropped.
    async fn start(
        &self,
        registry: &str,
        method: &str,
        url: &str,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, observe::CallGuard), RegistryError> {
        let slot = self.slots.acquire(registry, self.observer.as_ref()).await?;
        Ok((slot, observe::call(|| format!("{method} {url}"))))
    }

    /// Send a request, following one auth challenge (Basic or Bearer token flow).
    async fn send(
        &self,
        registry: &str,
        repository: &str,
        method: reqwest::Method,
        url: &str,
        accept: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let credential = self.config.keychain.get(registry);
        let key = TokenKey::new(registry, repository, credential);
        let cached = self.tokens.get(&key);
        let sent_at = Instant::now();
        let response = self.request(registry, method.clone(), url, accept, cached.as_deref()).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
            .ok_or_else(|| RegistryError::Auth {
                url: url.to_owned(),
                status: 401,
                why: "401 without a usable WWW-Authenticate challenge".to_owned(),
            })?;
        let authorization = match challenge {
            Challenge::Basic => match credential {
                Some(c) => c.basic_header(),
                None => {
                    return Err(RegistryError::Auth {
                        url: url.to_owned(),
                        status: 401,
                        why: format!(
                            "the registry wants credentials and none are configured for {registry} (--registry-config)"
                        ),
                    });
                }
            },
            Challenge::Bearer { realm, service, scope } => {
                let scope = scope.unwrap_or_else(|| format!("repository:{repository}:pull"));
                self.tokens
                    .authorization(&key, cached.as_deref(), sent_at, || {
                        self.fetch_token(url, &realm, service.as_deref(), &scope, credential)
                    })
                    .await?
            }
        };
        let retry = self.request(registry, method, url, accept, Some(&authorization)).await?;
        if retry.status() == StatusCode::UNAUTHORIZED || retry.status() == StatusCode::FORBIDDEN {
            return Err(RegistryError::Auth {
                url: url.to_owned(),
                status: retry.status().as_u16(),
                why: format!(
                    "{} with credentials{}",
                    retry.status().as_u16(),
                    if credential.is_some() { "" } else { " (none configured)" }
                ),
            });
        }
        Ok(retry)
    }

    /// One request, sent again after a 429 or 503 while the review's deadline allows the wait
    /// the registry asks for (`Retry-After`), at most [`retry::MAX_RETRIES`] times.
    async fn request(
        &self,
        registry: &str,
        method: reqwest::Method,
        url: &str,
        accept: &str,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut retries = 0;
        loop {
            let response = self.request_once(registry, method.clone(), url, accept, authorization).await?;
            if retries >= retry::MAX_RETRIES {
                return Ok(response);
            }
            let wait = match retry::plan(response.status(), response.headers(), observe::deadline()) {
                retry::Plan::Answer => return Ok(response),
                retry::Plan::Wait(wait) => wait,
                retry::Plan::PastDeadline { wait, left } => {
                    let left = match left {
                        Some(left) => format!("the review has {} ms left", left.as_millis()),
                        None => "longer than the 10 s waited outside a review".to_owned(),
                    };
                    return Err(RegistryError::Status {
                        url: url.to_owned(),
                        status: response.status().as_u16(),
                        detail: format!(" (it asked to retry after {} ms; {left})", wait.as_millis()),
                    });
                }
            };
            retries += 1;
            self.observer.registry_retry(registry);
            tracing::debug!(%url, status = response.status().as_u16(), wait_ms = wait.as_millis(), "registry asked to retry");
            drop(response);
            tokio::time::sleep(wait).await;
        }
    }

    async fn request_once(
        &self,
        registry: &str,
        method: reqwest::Method,
        url: &str,
        accept: &str,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut request = self.http.request(method, url).header(ACCEPT, accept);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        let started = Instant::now();
        let result = request.send().await;
        self.observer.registry_request(registry, result.as_ref().ok().map(|r| r.status().as_u16()), started.elapsed());
        result.map_err(|e| RegistryError::Transport { url: url.to_owned(), error: error_chain(&e) })
    }

    async fn fetch_token(
        &self,
        url: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credential: Option<&Credential>,
    ) -> Result<(String, Duration), TokenFailure> {
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let realm_url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Auth {
            url: url.to_owned(),
            status: 401,
            why: format!("token realm {realm:?} is not a URL: {e}"),
        })?;
        if realm_url.scheme() != "https" && !self.config.insecure.iter().any(|h| realm_url.authority() == h) {
            return Err(RegistryError::Auth {
                url: url.to_owned(),
                status: 401,
                why: format!("token realm {realm} is not HTTPS and its host is not an --insecure-registry"),
            }
            .into());
        }
        let mut realm_url = realm_url;
        {
            let mut query = realm_url.query_pairs_mut();
            query.append_pair("scope", scope);
            if let Some(service) = service {
                query.append_pair("service", service);
            }
        }
        let mut request = self.http.get(realm_url);
        if let Some(c) = credential {
            request = request.header(AUTHORIZATION, c.basic_header());
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let response = request.send().await;
        let host = realm_url_host(realm);
        self.observer.registry_request(&host, response.as_ref().ok().map(|r| r.status().as_u16()), started.elapsed());
        let response = response.map_err(|e| RegistryError::Auth {
            url: url.to_owned(),
            status: 401,
            why: format!("token request to {realm} failed: {}", error_chain(&e)),
        })?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let error = RegistryError::Auth {
                url: url.to_owned(),
                status: 401,
                why: format!("token endpoint {realm} answered {status}"),
            };
            // Refused credentials stay refused: remembered briefly for this credential set.
            return Err(TokenFailure { error, refused: status == 401 || status == 403 });
        }
        let bytes = read_limited(response, realm, 64 * 1024).await?;
        let parsed: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Auth {
            url: url.to_owned(),
            status: 401,
            why: format!("token endpoint {realm} sent no token: {e}"),
        })?;
        let token =
            parsed.token.or(parsed.access_token).filter(|t| !t.is_empty()).ok_or_else(|| RegistryError::Auth {
                url: url.to_owned(),
                status: 401,
                why: format!("token endpoint {realm} sent an empty token"),
            })?;
        // The spec's default life when the endpoint says none; the cache renews a little early.
        let lifetime = parsed.expires_in.map_or(auth::DEFAULT_TOKEN_LIFE, Duration::from_secs);
        Ok((token, lifetime))
    }
}

/// The `host[:port]` of a token realm, as metrics label it.
fn realm_url_host(realm: &str) -> String {
    reqwest::Url::parse(realm).map(|u| u.authority().to_owned()).unwrap_or_default()
}

/// Read a body, refusing more than `limit` bytes (Content-Length first, then while streaming).
async fn read_limited(mut response: reqwest::Response, url: &str, limit: usize) -> Result<Vec<u8>, RegistryError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(RegistryError::TooLarge { url: url.to_owned(), limit });
    }
    let mut bytes = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| RegistryError::Transport { url: url.to_owned(), error: error_chain(&e) })?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(RegistryError::TooLarge { url: url.to_owned(), limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The sha256 digest of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    Digest::sha256(Sha256::digest(bytes).into())
}

fn header_digest(headers: &HeaderMap) -> Option<Digest> {
    headers.get("docker-content-digest").and_then(|v| v.to_str().ok()).and_then(|v| Digest::parse(v.trim()).ok())
}

fn status_error(url: &str, status: StatusCode, body: &str) -> RegistryError {
    let body = body.trim();
    let detail = if body.is_empty() {
        String::new()
    } else {
        let cut = body.floor_char_boundary(200);
        format!(": {}", &body[..cut])
    };
    RegistryError::Status { url: url.to_owned(), status: status.as_u16(), detail }
}

fn mismatch(url: &str, expected: &Digest, actual: &Digest) -> RegistryError {
    RegistryError::DigestMismatch { url: url.to_owned(), expected: expected.to_string(), actual: actual.to_string() }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
