//! A cache of verification outcomes in front of a [`Verifier`], with single-flight: concurrent
//! reviews of the same image under the same policy share one verification (a Deployment rollout
//! admits many Pods with one image, and registries rate-limit).
//!
//! Verification outcomes are cached per digest, keyed by the policy's fingerprint and the image's
//! `name@digest`. Verified outcomes live `ttl`; failures live `ttl / 10` (a signature pushed a
//! moment later is seen soon); errors (registry or log trouble) are never cached.
//!
//! Tags are resolved to digests through a second, short-lived cache (`tag_ttl`, 30 s by default),
//! single-flight as well, keyed by the tag AND the credentials view it was resolved with
//! (namespace, imagePullSecrets, service account): one namespace's credentials never resolve a
//! tag for another. The digest then goes through the digest-keyed cache, so a burst of reviews of
//! a new tag costs one resolution and one verification. A moved tag is seen after `tag_ttl`;
//! `digest: require` and `pin` close that window entirely.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::observe::{self, CacheKind, Lookup, Observer, OutcomeClass};
use super::pull_secrets::PullContext;
use super::{BoxFuture, Outcome, Verifier, VerifyRequest};
use crate::image::{Digest, ImageRef};

/// Most entries kept; the oldest are dropped beyond it.
const MAX_ENTRIES: usize = 10_000;

/// How long a tag → digest resolution is reused unless told otherwise.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(30);

type Key = (u64, String);
type Slot = Arc<OnceCell<(Outcome, Instant)>>;
/// `registry/repository:tag` and the credentials view (namespace, pull secrets, service account).
type TagKey = (String, Option<(String, Vec<String>, String)>);
type TagSlot = Arc<OnceCell<(Result<Digest, String>, Instant)>>;

/// A caching, single-flight verifier.
pub struct CachedVerifier {
    inner: Arc<dyn Verifier>,
    ttl: Duration,
    slots: Mutex<HashMap<Key, Slot>>,
    tag_ttl: Duration,
    tags: Mutex<HashMap<TagKey, TagSlot>>,
    observer: Arc<dyn Observer>,
}

impl CachedVerifier {
    pub fn new(inner: Arc<dyn Verifier>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            slots: Mutex::new(HashMap::new()),
            tag_ttl: DEFAULT_TAG_TTL,
            tags: Mutex::new(HashMap::new()),
            observer: observe::ignore(),
        }
    }

    /// Report lookups, evictions, sizes and verifications to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    fn looked_up(&self, cache: CacheKind, lookup: Lookup, evicted: usize, size: usize) {
        observe::tally(lookup);
        self.observer.cache_lookup(cache, lookup);
        if evicted > 0 {
            self.observer.cache_evicted(cache, evicted);
        }
        self.observer.cache_size(cache, size);
    }

    /// One verification by the inner verifier, counted and timed.
    async fn verify_uncached(&self, request: VerifyRequest<'_>) -> Outcome {
        let started = Instant::now();
        self.observer.verification_started();
        let outcome = self.inner.verify(request).await;
        let class = match &outcome {
            Outcome::Verified { .. } => OutcomeClass::Verified,
            Outcome::Failed { .. } => OutcomeClass::Failed,
            Outcome::Error { .. } => OutcomeClass::Error,
        };
        self.observer.verification_finished(class, started.elapsed());
        outcome
    }

    /// Reuse tag resolutions for `ttl` (zero: resolve every time).
    pub fn with_tag_ttl(mut self, ttl: Duration) -> Self {
        self.tag_ttl = ttl;
        self
    }

    /// The digest `image`'s tag points at, resolved at most once per `tag_ttl` and credentials
    /// view; concurrent callers share one resolution. Failures are not cached.
    async fn resolve_tag(&self, image: &ImageRef, pull: Option<&PullContext>) -> Result<Digest, String> {
        if self.tag_ttl.is_zero() {
            return self.inner.resolve(image, pull).await;
        }
        let view = pull.map(|p| (p.namespace.clone(), p.secrets.clone(), p.service_account.clone()));
        let key: TagKey = (format!("{}:{}", image.name(), image.tag().unwrap_or("latest")), view);
        let (slot, lookup, evicted, size) = {
            let mut tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match tags.get(&key) {
                Some(slot) if slot.get().is_none_or(|(_, expires)| *expires > now) => {
                    let lookup = if slot.initialized() { Lookup::Hit } else { Lookup::Join };
                    (Arc::clone(slot), lookup, 0, tags.len())
                }
                _ => {
                    let evicted = make_room(&mut tags, now, |s: &TagSlot| s.get().map(|(_, expires)| *expires));
                    let slot: TagSlot = Arc::new(OnceCell::new());
                    tags.insert(key.clone(), Arc::clone(&slot));
                    (slot, Lookup::Miss, evicted, tags.len())
                }
            }
        };
        self.looked_up(CacheKind::Tag, lookup, evicted, size);
        let (result, _) = slot
            .get_or_init(|| async {
                let result = self.inner.resolve(image, pull).await;
                let life = if result.is_ok() { self.tag_ttl } else { Duration::ZERO };
                (result, Instant::now() + life)
            })
            .await
            .clone();
        if result.is_err() {
            let mut tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
            if tags.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                tags.remove(&key);
            }
            self.observer.cache_size(CacheKind::Tag, tags.len());
        }
        result
    }

    fn slot(&self, key: &Key) -> Slot {
        let (slot, lookup, evicted, size) = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match slots.get(key) {
                Some(slot) if slot.get().is_none_or(|(_, expires)| *expires > now) => {
                    let lookup = if slot.initialized() { Lookup::Hit } else { Lookup::Join };
                    (Arc::clone(slot), lookup, 0, slots.len())
                }
                _ => {
                    let evicted = make_room(&mut slots, now, |s: &Slot| s.get().map(|(_, expires)| *expires));
                    let slot: Slot = Arc::new(OnceCell::new());
                    slots.insert(key.clone(), Arc::clone(&slot));
                    (slot, Lookup::Miss, evicted, slots.len())
                }
            }
        };
        self.looked_up(CacheKind::Verification, lookup, evicted, size);
        slot
    }

    fn forget(&self, key: &Key, slot: &Slot) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(key);
        }
        self.observer.cache_size(CacheKind::Verification, slots.len());
    }
}

/// Keep a map under [`MAX_ENTRIES`]: drop expired entries, then everything if that is not
/// enough. Returns how many entries were dropped.
fn make_room<K, V>(map: &mut HashMap<K, V>, now: Instant, expires: impl Fn(&V) -> Option<Instant>) -> usize {
    if map.len() < MAX_ENTRIES {
        return 0;
    }
    let before = map.len();
    map.retain(|_, v| expires(v).is_none_or(|at| at > now));
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    before - map.len()
}

impl Verifier for CachedVerifier {
    fn resolve<'a>(
        &'a self,
        image: &'a crate::image::ImageRef,
        pull: Option<&'a super::pull_secrets::PullContext>,
    ) -> BoxFuture<'a, Result<crate::image::Digest, String>> {
        Box::pin(self.resolve_tag(image, pull))
    }

    fn verify<'a>(&'a self, request: VerifyRequest<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Some(digest) = request.image.digest() else {
                if self.tag_ttl.is_zero() {
                    return self.verify_uncached(request).await;
                }
                // A tag: resolve it (cached), then verify that digest (cached).
                let pinned = match self.resolve_tag(request.image, request.pull).await {
                    Ok(digest) => request.image.with_digest(digest),
                    Err(detail) => {
                        return Outcome::Error { reason: super::verdict::Unchecked::TagResolution { detail } };
                    }
                };
                return self.verify(VerifyRequest { image: &pinned, ..request }).await;
            };
            if self.ttl.is_zero() {
                return self.verify_uncached(request).await;
            }
            let fingerprint = request.policy.fingerprint ^ self.inner.cache_salt(request.policy).rotate_left(1);
            let key = (fingerprint, format!("{}@{digest}", request.image.name()));
            let slot = self.slot(&key);
            let (outcome, _) = slot
                .get_or_init(|| async {
                    let outcome = self.verify_uncached(request).await;
                    let life = match &outcome {
                        Outcome::Verified { .. } => self.ttl,
                        Outcome::Failed { .. } => self.ttl / 10,
                        Outcome::Error { .. } => Duration::ZERO,
                    };
                    (outcome, Instant::now() + life)
                })
                .await
                .clone();
            if matches!(outcome, Outcome::Error { .. }) {
                self.forget(&key, &slot);
            }
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::image::ImageRef;
    use crate::policy::cel::CelEnv;
    use crate::policy::compile::parse_file;
    use crate::policy::{ImagePolicy, Policy};

    struct Counting {
        calls: AtomicUsize,
        outcome: Outcome,
        resolves: AtomicUsize,
    }

    fn counting(outcome: Outcome) -> Arc<Counting> {
        Arc::new(Counting { calls: AtomicUsize::new(0), outcome, resolves: AtomicUsize::new(0) })
    }

    impl Verifier for Counting {
        fn resolve<'a>(
            &'a self,
            _image: &'a ImageRef,
            _pull: Option<&'a PullContext>,
        ) -> BoxFuture<'a, Result<Digest, String>> {
            self.resolves.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Digest::parse(&PINNED[PINNED.len() - 71..]).map_err(|e| e.to_string())
            })
        }

        fn verify<'a>(&'a self, _request: VerifyRequest<'a>) -> BoxFuture<'a, Outcome> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let outcome = self.outcome.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                outcome
            })
        }
    }

    fn policy(text_extra: &str) -> ImagePolicy {
        let text = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: p}}\nspec:\n  images: ['**']{text_extra}\n  authorities: [{{name: k, key: {{publicKeyFile: k.pub}}}}]\n"
        );
        match parse_file(&text, "p.yaml", std::path::Path::new("."), &CelEnv::new()).expect("policy").remove(0) {
            Policy::Image(p) => p,
            Policy::Resource(_) => panic!("image policy"),
        }
    }

    const PINNED: &str = "ghcr.io/acme/app@sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270";

    #[tokio::test(start_paused = true)]
    async fn concurrent_reviews_share_one_verification_until_it_expires() {
        let inner = counting(Outcome::Verified { detail: crate::verify::verdict::Verification::NothingRequired });
        let cache = CachedVerifier::new(inner.clone(), Duration::from_secs(300));
        let (p, image) = (policy(""), ImageRef::parse(PINNED).expect("ref"));
        let request = VerifyRequest { image: &image, policy: &p, pull: None };
        let outcomes = futures_util::future::join_all((0..20).map(|_| cache.verify(request))).await;
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Verified { .. })));
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1, "single flight");
        cache.verify(request).await;
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1, "cached");
        // An edited policy is another key.
        let edited = policy("\n  platforms: every-platform");
        cache.verify(VerifyRequest { image: &image, policy: &edited, pull: None }).await;
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_secs(301)).await;
        cache.verify(request).await;
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3, "expired");
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_not_cached_and_tags_resolve_once_per_ttl() {
        let inner = counting(Outcome::Error {
            reason: crate::verify::verdict::Unchecked::Unavailable { detail: "503".into() },
        });
        let cache = CachedVerifier::new(inner.clone(), Duration::from_secs(300));
        let (p, image) = (policy(""), ImageRef::parse(PINNED).expect("ref"));
        cache.verify(VerifyRequest { image: &image, policy: &p, pull: None }).await;
        cache.verify(VerifyRequest { image: &image, policy: &p, pull: None }).await;
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
        let tagged = ImageRef::parse("ghcr.io/acme/app:v1").expect("ref");
        let ok = counting(Outcome::Verified { detail: crate::verify::verdict::Verification::NothingRequired });
        let cache = CachedVerifier::new(ok.clone(), Duration::from_secs(300));
        let outcomes = futures_util::future::join_all(
            (0..10).map(|_| cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: None })),
        )
        .await;
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Verified { .. })), "{outcomes:?}");
        assert_eq!(ok.resolves.load(Ordering::SeqCst), 1, "one resolution, shared");
        assert_eq!(ok.calls.load(Ordering::SeqCst), 1, "then one verification of the digest");
        // The digest it resolved to is the digest cache's entry.
        cache.verify(VerifyRequest { image: &ImageRef::parse(PINNED).expect("ref"), policy: &p, pull: None }).await;
        assert_eq!(ok.calls.load(Ordering::SeqCst), 1);
        // Another credentials view resolves for itself.
        let view = |ns: &str| PullContext {
            namespace: ns.into(),
            secrets: vec!["regcred".into()],
            service_account: "default".into(),
        };
        let (a, b) = (view("team-a"), view("team-b"));
        cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: Some(&a) }).await;
        cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: Some(&a) }).await;
        cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: Some(&b) }).await;
        assert_eq!(ok.resolves.load(Ordering::SeqCst), 3, "one per credentials view");
        // After the tag TTL, the tag is resolved again.
        tokio::time::advance(DEFAULT_TAG_TTL + Duration::from_secs(1)).await;
        cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: None }).await;
        assert_eq!(ok.resolves.load(Ordering::SeqCst), 4, "expired");
        // With a zero tag TTL, every review resolves.
        let uncached = counting(Outcome::Verified { detail: crate::verify::verdict::Verification::NothingRequired });
        let cache = CachedVerifier::new(uncached.clone(), Duration::from_secs(300)).with_tag_ttl(Duration::ZERO);
        cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: None }).await;
        cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: None }).await;
        assert_eq!(uncached.calls.load(Ordering::SeqCst), 2);
    }
}
