//! What verification reports about itself, for metrics and logs, without knowing about either.
//!
//! The caches and the registry client call an [`Observer`] (the server's metrics implement it;
//! the default does nothing). A review runs inside a [`ReviewScope`] (a task-local): its deadline
//! reaches every registry call (a `Retry-After` longer than the time left is not waited for), and
//! the caches tally what they did for it, so the review's log line can say whether it was served
//! from the cache.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Which cache an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheKind {
    /// Verification outcomes by policy and digest.
    Verification,
    /// Tag → digest resolutions.
    Tag,
}

impl CacheKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Verification => "verification",
            Self::Tag => "tag",
        }
    }
}

/// What a cache lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A live entry.
    Hit,
    /// Another review is computing this entry now; this one waits for it (single flight).
    Join,
    /// Nothing usable: computed now.
    Miss,
}

/// The class of a verification's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    Verified,
    Failed,
    Error,
}

impl OutcomeClass {
    pub fn label(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Failed => "failed",
            Self::Error => "error",
        }
    }
}

/// Receives events from the caches and the registry client. Every method defaults to nothing.
pub trait Observer: Send + Sync {
    /// One HTTP request to a registry (or its token endpoint) ended: `status` is None when no
    /// answer came (connection error, timeout).
    fn registry_request(&self, host: &str, status: Option<u16>, elapsed: Duration) {
        let _ = (host, status, elapsed);
    }
    /// A request is sent again after a 429 or 503.
    fn registry_retry(&self, host: &str) {
        let _ = host;
    }
    fn cache_lookup(&self, cache: CacheKind, lookup: Lookup) {
        let _ = (cache, lookup);
    }
    /// Entries dropped to stay under the size limit (expired ones first).
    fn cache_evicted(&self, cache: CacheKind, entries: usize) {
        let _ = (cache, entries);
    }
    fn cache_size(&self, cache: CacheKind, entries: usize) {
        let _ = (cache, entries);
    }
    /// A verification (not served from the cache) started.
    fn verification_started(&self) {}
    fn verification_finished(&self, class: OutcomeClass, elapsed: Duration) {
        let _ = (class, elapsed);
    }
}

/// The observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ignore;

impl Observer for Ignore {}

/// The default observer.
pub fn ignore() -> Arc<dyn Observer> {
    Arc::new(Ignore)
}

/// What the caches did for one review.
#[derive(Debug, Default)]
pub struct Tally {
    hits: AtomicU32,
    joins: AtomicU32,
    misses: AtomicU32,
}

impl Tally {
    fn record(&self, lookup: Lookup) {
        let counter = match lookup {
            Lookup::Hit => &self.hits,
            Lookup::Join => &self.joins,
            Lookup::Miss => &self.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(hits, joins, misses)`.
    pub fn counts(&self) -> (u32, u32, u32) {
        (self.hits.load(Ordering::Relaxed), self.joins.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// For the review's log line: `none` (no cache lookup), `hit` (all hits), `miss` (no hit),
    /// or `partial`. A single-flight join counts as a hit (nothing was fetched for this review).
    pub fn summary(&self) -> &'static str {
        match self.counts() {
            (0, 0, 0) => "none",
            (_, _, 0) => "hit",
            (0, 0, _) => "miss",
            _ => "partial",
        }
    }
}

/// The review a verification runs for.
#[derive(Debug, Clone)]
pub struct ReviewScope {
    pub deadline: Option<Instant>,
    pub tally: Arc<Tally>,
}

tokio::task_local! {
    static SCOPE: ReviewScope;
}

impl ReviewScope {
    pub fn new(deadline: Option<Instant>) -> Self {
        Self { deadline, tally: Arc::default() }
    }

    /// Run `fut` inside this scope.
    pub fn run<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        SCOPE.scope(self, fut)
    }
}

/// The deadline of the review being served, if any.
pub fn deadline() -> Option<Instant> {
    SCOPE.try_with(|s| s.deadline).ok().flatten()
}

tokio::task_local! {
    static REVIEW_TIME: chrono::DateTime<chrono::Utc>;
}

/// The time of the review being decided (`now` in conditions): the clock, unless the review
/// runs inside [`at_review_time`] (a `policy test` case that fixes its time).
pub fn review_time() -> chrono::DateTime<chrono::Utc> {
    REVIEW_TIME.try_with(|t| *t).unwrap_or_else(|_| chrono::Utc::now())
}

/// Run `fut` as a review made at `time`.
pub fn at_review_time<F: Future>(time: chrono::DateTime<chrono::Utc>, fut: F) -> impl Future<Output = F::Output> {
    REVIEW_TIME.scope(time, fut)
}

/// Tally a cache lookup for the review being served (nothing outside a review).
pub(crate) fn tally(lookup: Lookup) {
    let _ = SCOPE.try_with(|s| s.tally.record(lookup));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_scope_carries_the_deadline_and_the_tally() {
        assert_eq!(deadline(), None);
        tally(Lookup::Hit); // outside a review: ignored
        let at = Instant::now() + Duration::from_secs(5);
        let scope = ReviewScope::new(Some(at));
        let seen = scope.clone().run(async {
            tally(Lookup::Hit);
            tally(Lookup::Miss);
            deadline()
        });
        assert_eq!(seen.await, Some(at));
        assert_eq!(scope.tally.counts(), (1, 0, 1));
        assert_eq!(scope.tally.summary(), "partial");
        assert_eq!(ReviewScope::new(None).tally.summary(), "none");
    }
}
