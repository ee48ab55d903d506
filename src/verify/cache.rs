//! A cache of verification outcomes in front of a [`Verifier`], with single-flight: concurrent
//! reviews of the same image under the same policy share one verification (a Deployment rollout
//! admits many Pods with one image, and registries rate-limit).
//!
//! Only digest-pinned references are cached (a tag can move), keyed by the policy's fingerprint
//! and the reference. Verified outcomes live `ttl`; failures live `ttl / 10` (a signature pushed
//! a moment later is seen soon); errors (registry or log trouble) are never cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{BoxFuture, Outcome, Verifier, VerifyRequest};

/// Most entries kept; the oldest are dropped beyond it.
const MAX_ENTRIES: usize = 10_000;

type Key = (u64, String);
type Slot = Arc<OnceCell<(Outcome, Instant)>>;

/// A caching, single-flight verifier.
pub struct CachedVerifier {
    inner: Arc<dyn Verifier>,
    ttl: Duration,
    slots: Mutex<HashMap<Key, Slot>>,
}

impl CachedVerifier {
    pub fn new(inner: Arc<dyn Verifier>, ttl: Duration) -> Self {
        Self { inner, ttl, slots: Mutex::new(HashMap::new()) }
    }

    fn slot(&self, key: &Key) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(slot) = slots.get(key) {
            match slot.get() {
                Some((_, expires)) if *expires <= now => {}
                _ => return Arc::clone(slot),
            }
        }
        if slots.len() >= MAX_ENTRIES {
            slots.retain(|_, s| s.get().is_none_or(|(_, expires)| *expires > now));
            if slots.len() >= MAX_ENTRIES {
                slots.clear();
            }
        }
        let slot: Slot = Arc::new(OnceCell::new());
        slots.insert(key.clone(), Arc::clone(&slot));
        slot
    }

    fn forget(&self, key: &Key, slot: &Slot) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(key);
        }
    }
}

impl Verifier for CachedVerifier {
    fn resolve<'a>(
        &'a self,
        image: &'a crate::image::ImageRef,
        pull: Option<&'a super::pull_secrets::PullContext>,
    ) -> BoxFuture<'a, Result<crate::image::Digest, String>> {
        // Never cached: a tag moves.
        self.inner.resolve(image, pull)
    }

    fn verify<'a>(&'a self, request: VerifyRequest<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if self.ttl.is_zero() || request.image.digest().is_none() {
                return self.inner.verify(request).await;
            }
            let key = (request.policy.fingerprint, request.image.to_string());
            let slot = self.slot(&key);
            let (outcome, _) = slot
                .get_or_init(|| async {
                    let outcome = self.inner.verify(request).await;
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
    }

    impl Verifier for Counting {
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
        let inner =
            Arc::new(Counting { calls: AtomicUsize::new(0), outcome: Outcome::Verified { detail: "ok".into() } });
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
    async fn errors_are_not_cached_and_tags_are_not_cached() {
        let inner = Arc::new(Counting { calls: AtomicUsize::new(0), outcome: Outcome::Error { reason: "503".into() } });
        let cache = CachedVerifier::new(inner.clone(), Duration::from_secs(300));
        let (p, image) = (policy(""), ImageRef::parse(PINNED).expect("ref"));
        cache.verify(VerifyRequest { image: &image, policy: &p, pull: None }).await;
        cache.verify(VerifyRequest { image: &image, policy: &p, pull: None }).await;
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
        let tagged = ImageRef::parse("ghcr.io/acme/app:v1").expect("ref");
        let ok = Arc::new(Counting { calls: AtomicUsize::new(0), outcome: Outcome::Verified { detail: "ok".into() } });
        let cache = CachedVerifier::new(ok.clone(), Duration::from_secs(300));
        cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: None }).await;
        cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: None }).await;
        assert_eq!(ok.calls.load(Ordering::SeqCst), 2);
    }
}
