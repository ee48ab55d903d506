//! What verification reports about itself, for metrics and logs, without knowing about either.
//!
//! The caches and the registry client call an [`Observer`] (the server's metrics implement it;
//! the default does nothing). A review runs inside a [`ReviewScope`] (a task-local): its deadline
//! reaches every registry call (a `Retry-After` longer than the time left is not waited for), and
//! the caches tally what they did for it, so the review's log line can say whether it was served
//! from the cache.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// A registry request waited `elapsed` for one of its host's connection slots
    /// (`--registry-concurrency`); reported only when it had to wait.
    fn registry_queue_wait(&self, host: &str, elapsed: Duration) {
        let _ = (host, elapsed);
    }
    /// A digest that could not be checked was admitted on its last good verification
    /// (`--last-known-good`).
    fn last_known_good(&self) {}
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

/// The registry calls (and waits) of one review: those still open and the slowest one that
/// ended, so a review cut by its deadline can say which call was slow.
#[derive(Debug, Default)]
pub struct Calls {
    next: AtomicU64,
    state: Mutex<CallState>,
}

#[derive(Debug, Default)]
struct CallState {
    open: Vec<(u64, String, Instant)>,
    /// What, how long, and whether it was answered.
    slowest: Option<(String, Duration, bool)>,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, CallState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slow call, in words: the oldest still open, else the slowest that ended.
    pub fn slowest(&self) -> Option<String> {
        let state = self.lock();
        let now = Instant::now();
        if let Some((_, what, started)) = state.open.iter().min_by_key(|(_, _, started)| *started) {
            return Some(format!("{what} had not ended after {} ms", now.duration_since(*started).as_millis()));
        }
        state.slowest.as_ref().map(|(what, took, answered)| {
            if *answered {
                format!("the slowest registry call, {what}, took {} ms", took.as_millis())
            } else {
                format!("{what} got no answer within {} ms", took.as_millis())
            }
        })
    }
}

/// One open call of a review; ends when dropped (unanswered unless [`CallGuard::done`]).
#[derive(Debug)]
pub struct CallGuard {
    id: u64,
    calls: Option<Arc<Calls>>,
    answered: bool,
}

impl CallGuard {
    /// The call got its answer.
    pub fn done(mut self) {
        self.answered = true;
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let Some(calls) = &self.calls else { return };
        let mut state = calls.lock();
        let Some(at) = state.open.iter().position(|(id, _, _)| *id == self.id) else { return };
        let (_, what, started) = state.open.swap_remove(at);
        let took = started.elapsed();
        if state.slowest.as_ref().is_none_or(|(_, slowest, _)| took > *slowest) {
            state.slowest = Some((what, took, self.answered));
        }
    }
}

/// The review a verification runs for.
#[derive(Debug, Clone)]
pub struct ReviewScope {
    pub deadline: Option<Instant>,
    pub tally: Arc<Tally>,
    pub calls: Arc<Calls>,
    warnings: Arc<Mutex<Vec<String>>>,
}

tokio::task_local! {
    static SCOPE: ReviewScope;
}

impl ReviewScope {
    pub fn new(deadline: Option<Instant>) -> Self {
        Self { deadline, tally: Arc::default(), calls: Arc::default(), warnings: Arc::default() }
    }

    /// The warnings verification added for this review (e.g. an admission on the last known
    /// good verification), taken out.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
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

/// Record a call (`what`: e.g. `GET https://…`) of the review being served until the guard
/// drops; outside a review, nothing.
pub(crate) fn call(what: impl FnOnce() -> String) -> CallGuard {
    let calls = SCOPE.try_with(|s| Arc::clone(&s.calls)).ok();
    let id = calls.as_ref().map_or(0, |calls| {
        let id = calls.next.fetch_add(1, Ordering::Relaxed);
        calls.lock().open.push((id, what(), Instant::now()));
        id
    });
    CallGuard { id, calls, answered: false }
}

/// The slow call of the review being served, in words (for a denial for time).
pub fn slow_call() -> Option<String> {
    SCOPE.try_with(|s| s.calls.slowest()).ok().flatten()
}

/// Add a warning to the review being served's response (nothing outside a review).
pub(crate) fn warn(text: String) {
    let _ = SCOPE.try_with(|s| s.warnings.lock().unwrap_or_else(|p| p.into_inner()).push(text));
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

    #[tokio::test(start_paused = true)]
    async fn the_scope_names_the_slow_call() {
        let scope = ReviewScope::new(None);
        assert_eq!(scope.calls.slowest(), None);
        let inside = scope.clone().run(async {
            let quick = call(|| "GET /quick".to_owned());
            tokio::time::advance(Duration::from_millis(10)).await;
            quick.done();
            let slow = call(|| "GET /slow".to_owned());
            tokio::time::advance(Duration::from_millis(300)).await;
            let open = slow_call();
            slow.done();
            let cut = call(|| "GET /cut".to_owned());
            tokio::time::advance(Duration::from_millis(500)).await;
            drop(cut);
            (open, slow_call())
        });
        let (open, ended) = inside.await;
        assert_eq!(open.as_deref(), Some("GET /slow had not ended after 300 ms"));
        assert_eq!(ended.as_deref(), Some("GET /cut got no answer within 500 ms"));
        // Outside a review nothing is recorded.
        drop(call(|| "GET /outside".to_owned()));
        assert_eq!(slow_call(), None);
    }
}
