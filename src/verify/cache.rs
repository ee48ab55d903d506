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
//!
//! With `--last-known-good` ([`known_good`]), a digest that cannot be checked now is answered by
//! its last good verification within that window, with a warning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

mod known_good;
#[cfg(test)]
mod tests;

use self::known_good::KnownGood;
use super::observe::{self, CacheKind, Lookup, Observer, OutcomeClass};
use super::pull_secrets::PullContext;
use super::verdict::{Unchecked, Verification};
use super::{BoxFuture, Outcome, Verifier, VerifyRequest};
use crate::image::{Digest, ImageRef};

/// Most entries kept; the oldest are dropped beyond it.
const MAX_ENTRIES: usize = 10_000;

/// How long a tag → digest resolution is reused unless told otherwise.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(30);

type Key = (u64, String);
/// A single-flight slot: the value once computed, with when it expires.
type Expiring<T> = Arc<OnceCell<(T, Instant)>>;
type Slot = Expiring<Outcome>;
/// `registry/repository:tag` and the credentials view (namespace, pull secrets, service account).
type TagKey = (String, Option<(String, Vec<String>, String)>);
type TagSlot = Expiring<Result<Digest, Unchecked>>;

/// A caching, single-flight verifier.
pub struct CachedVerifier {
    inner: Arc<dyn Verifier>,
    ttl: Duration,
    slots: Mutex<HashMap<Key, Slot>>,
    tag_ttl: Duration,
    tags: Mutex<HashMap<TagKey, TagSlot>>,
    observer: Arc<dyn Observer>,
    known_good: Option<KnownGood>,
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
            known_good: None,
        }
    }

    /// Admit a digest that cannot be checked now if it was verified under the same policy
    /// within `window` and has not failed since (zero: never).
    pub fn with_last_known_good(mut self, window: Duration) -> Self {
        self.known_good = (!window.is_zero()).then(|| KnownGood::new(window));
        self
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

    /// A fresh verification of a digest, remembered for `--last-known-good`.
    async fn verify_digest(&self, key: &Key, request: VerifyRequest<'_>) -> Outcome {
        let outcome = self.verify_uncached(request).await;
        if let Some(known_good) = &self.known_good {
            known_good.record(key, &outcome);
        }
        outcome
    }

    /// An outcome that could not be checked, answered by the digest's last good verification
    /// within the `--last-known-good` window, with a warning for the review; else unchanged.
    fn or_last_known_good(&self, key: &Key, request: VerifyRequest<'_>, outcome: Outcome) -> Outcome {
        let (Outcome::Error { reason, .. }, Some(known_good)) = (&outcome, &self.known_good) else {
            return outcome;
        };
        if !reason.is_unreachable() {
            return outcome;
        }
        let Some(ago) = known_good.verified_within(key) else {
            return outcome;
        };
        self.observer.last_known_good();
        let warning = format!(
            "{} admitted on its last known good verification under policy {}, {} s ago (--last-known-good {} s): \
             it could not be checked now: {reason}",
            request.image,
            request.policy.name,
            ago.as_secs(),
            known_good.window.as_secs()
        );
        tracing::warn!(image = %request.image, policy = %request.policy.name, %reason, "admitted on the last known good verification");
        observe::warn(warning);
        Outcome::Verified {
            detail: Verification::LastKnownGood {
                ago_secs: ago.as_secs(),
                window_secs: known_good.window.as_secs(),
                unchecked: Box::new(reason.clone()),
            },
        }
    }

    /// Reuse tag resolutions for `ttl` (zero: resolve every time).
    pub fn with_tag_ttl(mut self, ttl: Duration) -> Self {
        self.tag_ttl = ttl;
        self
    }

    /// The digest `image`'s tag points at, resolved at most once per `tag_ttl` and credentials
    /// view; concurrent callers share one resolution. Failures are not cached.
    async fn resolve_tag(&self, image: &ImageRef, pull: Option<&PullContext>) -> Result<Digest, Unchecked> {
        if self.tag_ttl.is_zero() {
            return self.inner.resolve(image, pull).await;
        }
        let view = pull.map(|p| (p.namespace.clone(), p.secrets.clone(), p.service_account.clone()));
        let key: TagKey = (format!("{}:{}", image.name(), image.tag().unwrap_or("latest")), view);
        let (slot, lookup, evicted, size) = slot_in(&self.tags, &key);
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
            let size = forget_in(&self.tags, &key, &slot);
            self.observer.cache_size(CacheKind::Tag, size);
        }
        result
    }

    fn slot(&self, key: &Key) -> (Slot, Lookup) {
        let (slot, lookup, evicted, size) = slot_in(&self.slots, key);
        self.looked_up(CacheKind::Verification, lookup, evicted, size);
        (slot, lookup)
    }

    fn forget(&self, key: &Key, slot: &Slot) {
        let size = forget_in(&self.slots, key, slot);
        self.observer.cache_size(CacheKind::Verification, size);
    }
}

/// The single-flight slot of `key` in `map`: the live one (a hit, or a join while it is being
/// computed), else a fresh one in its place (a miss; room made first). With the entries evicted
/// and the map's size after.
fn slot_in<K: Clone + Eq + std::hash::Hash, T>(
    map: &Mutex<HashMap<K, Expiring<T>>>,
    key: &K,
) -> (Expiring<T>, Lookup, usize, usize) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    match map.get(key) {
        Some(slot) if slot.get().is_none_or(|(_, expires)| *expires > now) => {
            let lookup = if slot.initialized() { Lookup::Hit } else { Lookup::Join };
            (Arc::clone(slot), lookup, 0, map.len())
        }
        _ => {
            let evicted = make_room(&mut map, now, |s: &Expiring<T>| s.get().map(|(_, at)| *at));
            let slot = Arc::new(OnceCell::new());
            map.insert(key.clone(), Arc::clone(&slot));
            (slot, Lookup::Miss, evicted, map.len())
        }
    }
}

/// Drop `slot` from `map` if it is still `key`'s (a result not to be kept); the map's size.
fn forget_in<K: Eq + std::hash::Hash, V>(map: &Mutex<HashMap<K, Arc<V>>>, key: &K, slot: &Arc<V>) -> usize {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if map.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
        map.remove(key);
    }
    map.len()
}

/// Keep a map under [`MAX_ENTRIES`]: drop expired entries, then, if that is not enough, the
/// tenth of the entries that expire soonest (never one still being computed: `expires` is
/// `None` for those). A flood of new digests therefore costs the oldest results, not the whole
/// cache. Returns how many entries were dropped.
fn make_room<K, V>(map: &mut HashMap<K, V>, now: Instant, expires: impl Fn(&V) -> Option<Instant>) -> usize {
    if map.len() < MAX_ENTRIES {
        return 0;
    }
    let before = map.len();
    map.retain(|_, v| expires(v).is_none_or(|at| at > now));
    if map.len() >= MAX_ENTRIES {
        let mut times: Vec<Instant> = map.values().filter_map(&expires).collect();
        let drop = (MAX_ENTRIES / 10).min(times.len());
        if drop > 0 {
            let (_, cutoff, _) = times.select_nth_unstable(drop - 1);
            let cutoff = *cutoff;
            map.retain(|_, v| expires(v).is_none_or(|at| at > cutoff));
        }
    }
    before - map.len()
}

impl Verifier for CachedVerifier {
    fn resolve<'a>(
        &'a self,
        image: &'a crate::image::ImageRef,
        pull: Option<&'a super::pull_secrets::PullContext>,
    ) -> BoxFuture<'a, Result<crate::image::Digest, Unchecked>> {
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
                    Err(reason) => return Outcome::Error { reason },
                };
                return self.verify(VerifyRequest { image: &pinned, ..request }).await;
            };
            let fingerprint = request.policy.fingerprint ^ self.inner.cache_salt(request.policy).rotate_left(1);
            let key = (fingerprint, format!("{}@{digest}", request.image.name()));
            if self.ttl.is_zero() {
                let outcome = self.verify_digest(&key, request).await;
                return self.or_last_known_good(&key, request, outcome);
            }
            let (slot, lookup) = self.slot(&key);
            // Joining another review's verification: a denial for time names that wait.
            let joined = (lookup == Lookup::Join).then(|| {
                observe::call(|| format!("the verification of {} already running for another review", request.image))
            });
            let (outcome, _) = slot
                .get_or_init(|| async {
                    let outcome = self.verify_digest(&key, request).await;
                    let life = match &outcome {
                        Outcome::Verified { .. } => self.ttl,
                        Outcome::Failed { .. } => self.ttl / 10,
                        Outcome::Error { .. } => Duration::ZERO,
                    };
                    (outcome, Instant::now() + life)
                })
                .await
                .clone();
            if let Some(joined) = joined {
                joined.done();
            }
            if matches!(outcome, Outcome::Error { .. }) {
                self.forget(&key, &slot);
            }
            self.or_last_known_good(&key, request, outcome)
        })
    }
}
