//! Tests of the verification and tag caches and of `--last-known-good`.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::image::ImageRef;
use crate::policy::cel::CelEnv;
use crate::policy::compile::parse_file;
use crate::policy::{ImagePolicy, Policy};
use crate::verify::verdict::{Denial, Unchecked};

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
    ) -> BoxFuture<'a, Result<Digest, Unchecked>> {
        self.resolves.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Digest::parse(&PINNED[PINNED.len() - 71..]).map_err(|e| Unchecked::TagResolution { detail: e.to_string() })
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
    let inner = counting(Outcome::Verified { detail: Verification::NothingRequired });
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
    let inner = counting(Outcome::Error { reason: Unchecked::Unavailable { detail: "503".into() } });
    let cache = CachedVerifier::new(inner.clone(), Duration::from_secs(300));
    let (p, image) = (policy(""), ImageRef::parse(PINNED).expect("ref"));
    cache.verify(VerifyRequest { image: &image, policy: &p, pull: None }).await;
    cache.verify(VerifyRequest { image: &image, policy: &p, pull: None }).await;
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    let tagged = ImageRef::parse("ghcr.io/acme/app:v1").expect("ref");
    let ok = counting(Outcome::Verified { detail: Verification::NothingRequired });
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
    let uncached = counting(Outcome::Verified { detail: Verification::NothingRequired });
    let cache = CachedVerifier::new(uncached.clone(), Duration::from_secs(300)).with_tag_ttl(Duration::ZERO);
    cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: None }).await;
    cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: None }).await;
    assert_eq!(uncached.calls.load(Ordering::SeqCst), 2);
}

/// A verifier whose outcome the test changes (the registry going down, a signature replaced).
struct Switch {
    outcome: std::sync::Mutex<Outcome>,
    calls: AtomicUsize,
}

impl Switch {
    fn new(outcome: Outcome) -> Arc<Self> {
        Arc::new(Self { outcome: std::sync::Mutex::new(outcome), calls: AtomicUsize::new(0) })
    }

    fn set(&self, outcome: Outcome) {
        *self.outcome.lock().expect("lock") = outcome;
    }
}

impl Verifier for Switch {
    fn verify<'a>(&'a self, _request: VerifyRequest<'a>) -> BoxFuture<'a, Outcome> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let outcome = self.outcome.lock().expect("lock").clone();
        Box::pin(async move { outcome })
    }
}

fn verified() -> Outcome {
    Outcome::Verified { detail: Verification::NothingRequired }
}

fn unreachable() -> Outcome {
    Outcome::Error {
        reason: Unchecked::Registry {
            error: crate::verify::registry::RegistryError::Transport {
                url: "https://ghcr.io/v2/".into(),
                error: "connection refused".into(),
            },
        },
    }
}

/// Verify inside a review scope: the outcome and the review's warnings.
async fn in_review(cache: &CachedVerifier, request: VerifyRequest<'_>) -> (Outcome, Vec<String>) {
    let scope = observe::ReviewScope::new(None);
    let outcome = scope.clone().run(cache.verify(request)).await;
    (outcome, scope.take_warnings())
}

#[tokio::test(start_paused = true)]
async fn last_known_good_answers_errors_within_the_window_only() {
    let inner = Switch::new(verified());
    let window = Duration::from_secs(600);
    let cache = CachedVerifier::new(inner.clone(), Duration::from_secs(60)).with_last_known_good(window);
    let (p, image) = (policy(""), ImageRef::parse(PINNED).expect("ref"));
    let request = VerifyRequest { image: &image, policy: &p, pull: None };
    assert_eq!(in_review(&cache, request).await, (verified(), vec![]));
    inner.set(unreachable());
    // Past the cache TTL the digest is checked again, and cannot be.
    tokio::time::advance(Duration::from_secs(61)).await;
    let (outcome, warnings) = in_review(&cache, request).await;
    assert!(matches!(outcome, Outcome::Verified { .. }), "{outcome:?}");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("last known good") && warnings[0].contains("61 s ago"), "{warnings:?}");
    assert!(warnings[0].contains("connection refused") && warnings[0].contains(PINNED), "{warnings:?}");
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2, "the registry is tried each time");
    // A cache hit does not extend the window; past it, the error stands.
    tokio::time::advance(window - Duration::from_secs(60)).await;
    let (outcome, warnings) = in_review(&cache, request).await;
    assert_eq!((outcome, warnings), (unreachable(), vec![]));
    // Another policy (fingerprint) has no good standing of its own.
    let other = policy("\n  platforms: every-platform");
    inner.set(verified());
    let _ = in_review(&cache, request).await; // verified again: good standing renewed
    inner.set(unreachable());
    let (outcome, _) = in_review(&cache, VerifyRequest { image: &image, policy: &other, pull: None }).await;
    assert_eq!(outcome, unreachable());
}

#[tokio::test(start_paused = true)]
async fn last_known_good_answers_only_what_could_not_be_reached() {
    let inner = Switch::new(verified());
    let cache = CachedVerifier::new(inner.clone(), Duration::ZERO).with_last_known_good(Duration::from_secs(600));
    let (p, image) = (policy(""), ImageRef::parse(PINNED).expect("ref"));
    let request = VerifyRequest { image: &image, policy: &p, pull: None };
    assert_eq!(in_review(&cache, request).await.0, verified());
    // A trusted root that does not load is not an outage: a retry later would not change it.
    let broken_root =
        Outcome::Error { reason: Unchecked::TrustedRoot { authority: "k".into(), detail: "not JSON".into() } };
    inner.set(broken_root.clone());
    assert_eq!(in_review(&cache, request).await, (broken_root, vec![]));
    // A registry that cannot be reached is.
    inner.set(unreachable());
    let (outcome, warnings) = in_review(&cache, request).await;
    assert!(
        matches!(&outcome, Outcome::Verified { detail: Verification::LastKnownGood { unchecked, .. } } if unchecked.is_unreachable()),
        "{outcome:?}"
    );
    assert_eq!(warnings.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn last_known_good_is_off_by_default_and_never_follows_a_failure() {
    let (p, image) = (policy(""), ImageRef::parse(PINNED).expect("ref"));
    let request = VerifyRequest { image: &image, policy: &p, pull: None };
    // Off: an error after a verification stays an error (cache disabled, so each review checks).
    let inner = Switch::new(verified());
    let cache = CachedVerifier::new(inner.clone(), Duration::ZERO);
    assert_eq!(in_review(&cache, request).await.0, verified());
    inner.set(unreachable());
    assert_eq!(in_review(&cache, request).await, (unreachable(), vec![]));
    // On, with the cache disabled too: verified, then a real failure, then unreachable → error.
    let inner = Switch::new(verified());
    let cache = CachedVerifier::new(inner.clone(), Duration::ZERO).with_last_known_good(Duration::from_secs(600));
    assert_eq!(in_review(&cache, request).await.0, verified());
    let failed = Outcome::Failed { reason: Denial::PlatformsUnverifiable { reason: "no signature by key k".into() } };
    inner.set(failed.clone());
    assert_eq!(in_review(&cache, request).await.0, failed);
    inner.set(unreachable());
    assert_eq!(in_review(&cache, request).await, (unreachable(), vec![]));
    // An error is never good standing either.
    let inner = Switch::new(unreachable());
    let cache = CachedVerifier::new(inner.clone(), Duration::ZERO).with_last_known_good(Duration::from_secs(600));
    assert_eq!(in_review(&cache, request).await.0, unreachable());
    assert_eq!(in_review(&cache, request).await.0, unreachable());
}

#[tokio::test(start_paused = true)]
async fn a_review_joining_another_reviews_verification_records_that_wait() {
    let inner = counting(verified());
    let cache = CachedVerifier::new(inner.clone(), Duration::from_secs(300));
    let (p, image) = (policy(""), ImageRef::parse(PINNED).expect("ref"));
    let request = VerifyRequest { image: &image, policy: &p, pull: None };
    let scope = observe::ReviewScope::new(None);
    let (first, second) = tokio::join!(cache.verify(request), scope.clone().run(cache.verify(request)));
    assert_eq!((first, second), (verified(), verified()));
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    let slow = scope.calls.slowest().expect("the joining review recorded its wait");
    assert!(slow.contains("already running for another review") && slow.contains("took 50 ms"), "{slow}");
}

#[test]
fn a_full_cache_drops_the_soonest_to_expire_tenth_not_everything() {
    let now = Instant::now();
    let mut map: HashMap<usize, Option<Instant>> =
        (0..MAX_ENTRIES).map(|i| (i, Some(now + Duration::from_secs(1 + i as u64)))).collect();
    // One still being computed: never dropped.
    map.insert(0, None);
    let dropped = make_room(&mut map, now, |v| *v);
    assert_eq!(dropped, MAX_ENTRIES / 10);
    assert_eq!(map.len(), MAX_ENTRIES - MAX_ENTRIES / 10);
    assert!(map.contains_key(&0), "an entry in flight is kept");
    assert!(!map.contains_key(&1) && map.contains_key(&(MAX_ENTRIES - 1)), "the soonest to expire go first");
    // Expired entries go before any live one.
    let mut map: HashMap<usize, Option<Instant>> =
        (0..MAX_ENTRIES).map(|i| (i, Some(if i % 2 == 0 { now } else { now + Duration::from_secs(60) }))).collect();
    assert_eq!(make_room(&mut map, now, |v| *v), MAX_ENTRIES / 2);
}

/// A verifier whose registry answers `status` for every tag.
struct Unresolvable {
    status: u16,
    resolves: AtomicUsize,
}

impl Verifier for Unresolvable {
    fn resolve<'a>(&'a self, _: &'a ImageRef, _: Option<&'a PullContext>) -> BoxFuture<'a, Result<Digest, Unchecked>> {
        self.resolves.fetch_add(1, Ordering::SeqCst);
        let error = crate::verify::registry::RegistryError::Status {
            url: "https://ghcr.io/v2/acme/app/manifests/v1".into(),
            status: self.status,
            detail: String::new(),
        };
        Box::pin(async move { Err(Unchecked::Registry { error }) })
    }

    fn verify<'a>(&'a self, _request: VerifyRequest<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async { verified() })
    }
}

#[tokio::test(start_paused = true)]
async fn a_tag_that_does_not_resolve_keeps_the_registrys_status_and_is_not_cached() {
    let p = policy("");
    let tagged = ImageRef::parse("ghcr.io/acme/app:v1").expect("ref");
    for status in [503, 401, 404] {
        let inner = Arc::new(Unresolvable { status, resolves: AtomicUsize::new(0) });
        let cache = CachedVerifier::new(inner.clone(), Duration::from_secs(300));
        for _ in 0..2 {
            let Outcome::Error { reason } =
                cache.verify(VerifyRequest { image: &tagged, policy: &p, pull: None }).await
            else {
                panic!("a tag that does not resolve is an error")
            };
            assert_eq!(reason.status(), Some(status), "{reason}");
            assert_eq!(reason.to_json()["class"], "registry-error", "{reason}");
            assert!(reason.to_string().contains(&format!("registry answered {status}")), "{reason}");
            // `digest: pin` gets the same typed reason.
            let pinned = cache.resolve(&tagged, None).await.expect_err("no digest");
            assert_eq!(pinned, reason);
        }
        assert_eq!(inner.resolves.load(Ordering::SeqCst), 4, "failures are not cached");
    }
}
