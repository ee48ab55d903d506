//! The server's Prometheus metrics (names prefixed `portcullis_`).
//!
//! Metrics live in a [`Metrics`] value owned by the server, not in a process-global registry,
//! so two servers in one test process never share counters. It is also the verification layer's
//! [`Observer`]: the caches and the registry client report to it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::exposition::{Format, to_text_004};
use crate::policy::load::LoadStatus;
use crate::verify::observe::{CacheKind, Lookup, Observer, OutcomeClass};

/// Distinct registry hosts given their own label value; the rest are counted as `other` (image
/// references come from the workloads, so their hosts are not ours to bound).
const MAX_HOSTS: usize = 64;

const REVIEW_BUCKETS: [f64; 12] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const REGISTRY_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    decision: String,
    kind: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: &'static str,
    decision: &'static str,
    mode: &'static str,
    kind: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    host: String,
    status: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// One answered review, as metrics count it.
#[derive(Debug, Clone, Copy)]
pub struct ReviewMetric<'a> {
    /// `validate` or `mutate`.
    pub webhook: &'static str,
    /// `allowed`, `warned` or `denied`.
    pub decision: &'static str,
    /// The strictest mode among the policies that applied (`enforce`, `warn`, `audit`), `none`.
    pub mode: &'static str,
    pub kind: &'a str,
    pub operation: &'a str,
    pub elapsed: Duration,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    webhook_reviews: Family<WebhookLabels, Counter>,
    invalid: Family<ReasonLabels, Counter>,
    duration: Histogram,
    policies: Gauge,
    reload_failing: Gauge,
    change_pending: Gauge,
    reloads_ok: Counter<u64, AtomicU64>,
    reloads_failed: Counter<u64, AtomicU64>,
    verifications: Family<OutcomeLabels, Counter>,
    verification_duration: Histogram,
    in_flight: Gauge,
    cache_hits: Family<CacheLabels, Counter>,
    cache_misses: Family<CacheLabels, Counter>,
    cache_joins: Family<CacheLabels, Counter>,
    cache_evictions: Family<CacheLabels, Counter>,
    cache_entries: Family<CacheLabels, Gauge>,
    registry_requests: Family<RequestLabels, Counter>,
    registry_duration: HistogramFamily<HostLabels>,
    registry_retries: Family<HostLabels, Counter>,
    registry_queue_wait: HistogramFamily<HostLabels>,
    last_known_good: Counter<u64, AtomicU64>,
    hosts: Mutex<HashSet<String>>,
    certificate_expiry: Gauge,
    certificate: OnceLock<Box<dyn Fn() -> Option<i64> + Send + Sync>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn registry_histogram() -> Histogram {
    Histogram::new(REGISTRY_BUCKETS)
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("portcullis");
        let reviews = Family::<ReviewLabels, Counter>::default();
        r.register("admission_reviews", "Admission reviews answered, by decision", reviews.clone());
        let webhook_reviews = Family::<WebhookLabels, Counter>::default();
        r.register(
            "webhook_reviews",
            "Admission reviews answered, by webhook (validate, mutate), decision, mode (the strictest of the policies that applied, or none), kind and operation",
            webhook_reviews.clone(),
        );
        let invalid = Family::<ReasonLabels, Counter>::default();
        r.register("admission_invalid_requests", "Requests that were not a valid AdmissionReview", invalid.clone());
        let duration = Histogram::new(REVIEW_BUCKETS);
        r.register("admission_review_duration_seconds", "Time to decide one review", duration.clone());
        let policies = Gauge::default();
        r.register("policies_loaded", "Policies in the set being served", policies.clone());
        let reload_failing = Gauge::default();
        r.register(
            "policy_reload_failing",
            "1 when the last policy reload failed and the last good set is served",
            reload_failing.clone(),
        );
        let change_pending = Gauge::default();
        r.register(
            "policy_change_pending",
            "1 while a change to the policies waits to be seen unchanged by the next check before it loads",
            change_pending.clone(),
        );
        let reloads_ok = Counter::default();
        r.register("policy_reloads_succeeded", "Policy loads that succeeded", reloads_ok.clone());
        let reloads_failed = Counter::default();
        r.register("policy_reloads_failed", "Policy reloads that failed", reloads_failed.clone());
        let verifications = Family::<OutcomeLabels, Counter>::default();
        r.register(
            "verifications",
            "Image verifications run (not served from the cache), by outcome: verified, failed (the evidence does not satisfy the policy) or error (could not be checked)",
            verifications.clone(),
        );
        let verification_duration = Histogram::new(REVIEW_BUCKETS);
        r.register(
            "verification_duration_seconds",
            "Time one verification (not served from the cache) took",
            verification_duration.clone(),
        );
        let in_flight = Gauge::default();
        r.register("verifications_in_flight", "Verifications running now", in_flight.clone());
        let cache_hits = Family::<CacheLabels, Counter>::default();
        r.register(
            "cache_hits",
            "Cache lookups answered by a live entry, by cache (verification, tag)",
            cache_hits.clone(),
        );
        let cache_misses = Family::<CacheLabels, Counter>::default();
        r.register("cache_misses", "Cache lookups that had to compute the entry, by cache", cache_misses.clone());
        let cache_joins = Family::<CacheLabels, Counter>::default();
        r.register(
            "cache_single_flight_joins",
            "Cache lookups that waited for the same entry being computed for another review",
            cache_joins.clone(),
        );
        let cache_evictions = Family::<CacheLabels, Counter>::default();
        r.register(
            "cache_evictions",
            "Cache entries dropped to stay under the size limit, by cache",
            cache_evictions.clone(),
        );
        let cache_entries = Family::<CacheLabels, Gauge>::default();
        r.register("cache_entries", "Entries in the cache, by cache", cache_entries.clone());
        let registry_requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "registry_requests",
            "HTTP requests to registries and their token endpoints, by host and status class (2xx, 3xx, 4xx, 5xx, or error when no answer came)",
            registry_requests.clone(),
        );
        let registry_duration: HistogramFamily<HostLabels> = Family::new_with_constructor(registry_histogram);
        r.register(
            "registry_request_duration_seconds",
            "Time to the response headers of one registry request, by host",
            registry_duration.clone(),
        );
        let registry_retries = Family::<HostLabels, Counter>::default();
        r.register(
            "registry_retries",
            "Registry requests sent again after a 429 or 503 (Retry-After), by host",
            registry_retries.clone(),
        );
        let registry_queue_wait: HistogramFamily<HostLabels> = Family::new_with_constructor(registry_histogram);
        r.register(
            "registry_queue_wait_seconds",
            "Time registry requests waited for a free slot of their host (--registry-concurrency), by host; only requests that waited",
            registry_queue_wait.clone(),
        );
        let last_known_good = Counter::default();
        r.register(
            "last_known_good_admissions",
            "Verifications that could not be checked, answered by the digest's last good verification (--last-known-good)",
            last_known_good.clone(),
        );
        let certificate_expiry = Gauge::default();
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the serving certificate expires, in seconds since the epoch",
            certificate_expiry.clone(),
        );
        Self {
            registry: r,
            reviews,
            webhook_reviews,
            invalid,
            duration,
            policies,
            reload_failing,
            change_pending,
            reloads_ok,
            reloads_failed,
            verifications,
            verification_duration,
            in_flight,
            cache_hits,
            cache_misses,
            cache_joins,
            cache_evictions,
            cache_entries,
            registry_requests,
            registry_duration,
            registry_retries,
            registry_queue_wait,
            last_known_good,
            hosts: Mutex::new(HashSet::new()),
            certificate_expiry,
            certificate: OnceLock::new(),
        }
    }

    /// Where the serving certificate's expiry is read at each scrape (set once).
    pub fn certificate_expiry(&self, not_after: impl Fn() -> Option<i64> + Send + Sync + 'static) {
        let _ = self.certificate.set(Box::new(not_after));
    }

    /// Count one answered `/validate` review (see [`Metrics::record_review`]).
    pub fn review(&self, decision: &'static str, kind: &str, operation: &str, elapsed: Duration) {
        self.record_review(&ReviewMetric { webhook: "validate", decision, mode: "none", kind, operation, elapsed });
    }

    /// Count one answered review.
    pub fn record_review(&self, review: &ReviewMetric<'_>) {
        let labels = ReviewLabels {
            decision: review.decision.to_owned(),
            kind: review.kind.to_owned(),
            operation: review.operation.to_owned(),
        };
        self.reviews.get_or_create(&labels).inc();
        let labels = WebhookLabels {
            webhook: review.webhook,
            decision: review.decision,
            mode: review.mode,
            kind: review.kind.to_owned(),
            operation: review.operation.to_owned(),
        };
        self.webhook_reviews.get_or_create(&labels).inc();
        self.duration.observe(review.elapsed.as_secs_f64());
    }

    /// Count one request that was not a valid review.
    pub fn invalid(&self, reason: &str) {
        self.invalid.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    /// The Prometheus text exposition (0.0.4), with policy gauges taken from `status`.
    pub fn render(&self, status: &LoadStatus) -> String {
        self.render_as(status, Format::Text)
    }

    /// The exposition in `format`, with policy gauges taken from `status`.
    pub fn render_as(&self, status: &LoadStatus, format: Format) -> String {
        self.policies.set(i64::try_from(status.policies).unwrap_or(i64::MAX));
        self.reload_failing.set(i64::from(status.last_error.is_some()));
        self.change_pending.set(i64::from(status.pending_since.is_some()));
        sync_counter(&self.reloads_ok, status.reloads_ok);
        sync_counter(&self.reloads_failed, status.reloads_failed);
        if let Some(expiry) = self.certificate.get().and_then(|f| f()) {
            self.certificate_expiry.set(expiry);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        match format {
            Format::OpenMetrics => out,
            Format::Text => to_text_004(&out),
        }
    }

    /// The label value for a registry host: itself, or `other` past [`MAX_HOSTS`] hosts.
    fn host(&self, host: &str) -> String {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if hosts.contains(host) {
            return host.to_owned();
        }
        if hosts.len() < MAX_HOSTS {
            hosts.insert(host.to_owned());
            return host.to_owned();
        }
        "other".to_owned()
    }
}

impl Observer for Metrics {
    fn registry_request(&self, host: &str, status: Option<u16>, elapsed: Duration) {
        let host = self.host(host);
        let status = match status {
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            Some(_) => "other",
            None => "error",
        };
        self.registry_requests.get_or_create(&RequestLabels { host: host.clone(), status }).inc();
        self.registry_duration.get_or_create(&HostLabels { host }).observe(elapsed.as_secs_f64());
    }

    fn registry_retry(&self, host: &str) {
        self.registry_retries.get_or_create(&HostLabels { host: self.host(host) }).inc();
    }

    fn registry_queue_wait(&self, host: &str, elapsed: Duration) {
        self.registry_queue_wait.get_or_create(&HostLabels { host: self.host(host) }).observe(elapsed.as_secs_f64());
    }

    fn last_known_good(&self) {
        self.last_known_good.inc();
    }

    fn cache_lookup(&self, cache: CacheKind, lookup: Lookup) {
        let family = match lookup {
            Lookup::Hit => &self.cache_hits,
            Lookup::Join => &self.cache_joins,
            Lookup::Miss => &self.cache_misses,
        };
        family.get_or_create(&CacheLabels { cache: cache.label() }).inc();
    }

    fn cache_evicted(&self, cache: CacheKind, entries: usize) {
        self.cache_evictions.get_or_create(&CacheLabels { cache: cache.label() }).inc_by(entries as u64);
    }

    fn cache_size(&self, cache: CacheKind, entries: usize) {
        self.cache_entries.get_or_create(&CacheLabels { cache: cache.label() }).set(entries as i64);
    }

    fn verification_started(&self) {
        self.in_flight.inc();
    }

    fn verification_finished(&self, class: OutcomeClass, elapsed: Duration) {
        self.in_flight.dec();
        self.verifications.get_or_create(&OutcomeLabels { outcome: class.label() }).inc();
        self.verification_duration.observe(elapsed.as_secs_f64());
    }
}

fn sync_counter(counter: &Counter<u64, AtomicU64>, total: u64) {
    let current = counter.inner().load(Ordering::Relaxed);
    if total > current {
        counter.inc_by(total - current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics() {
        let m = Metrics::new();
        m.record_review(&ReviewMetric {
            webhook: "validate",
            decision: "denied",
            mode: "enforce",
            kind: "Pod",
            operation: "CREATE",
            elapsed: Duration::from_millis(3),
        });
        m.invalid("not_json");
        m.registry_request("ghcr.io", Some(429), Duration::from_millis(20));
        m.registry_request("ghcr.io", None, Duration::from_millis(20));
        m.cache_lookup(CacheKind::Tag, Lookup::Join);
        m.certificate_expiry(|| Some(1_900_000_000));
        let status = LoadStatus {
            policies: 3,
            reloads_ok: 2,
            reloads_failed: 1,
            last_error: Some("x".into()),
            ..Default::default()
        };
        let text = m.render(&status);
        assert!(
            text.contains(
                "portcullis_admission_reviews_total{decision=\"denied\",kind=\"Pod\",operation=\"CREATE\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "portcullis_webhook_reviews_total{webhook=\"validate\",decision=\"denied\",mode=\"enforce\",kind=\"Pod\",operation=\"CREATE\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE portcullis_admission_reviews_total counter"), "{text}");
        assert!(text.contains("portcullis_policies_loaded 3"), "{text}");
        assert!(text.contains("portcullis_policy_reload_failing 1"), "{text}");
        assert!(text.contains("portcullis_policy_change_pending 0"), "{text}");
        assert!(text.contains("portcullis_policy_reloads_failed_total 1"), "{text}");
        assert!(text.contains("portcullis_admission_invalid_requests_total{reason=\"not_json\"} 1"), "{text}");
        assert!(text.contains("portcullis_registry_requests_total{host=\"ghcr.io\",status=\"4xx\"} 1"), "{text}");
        assert!(text.contains("portcullis_registry_requests_total{host=\"ghcr.io\",status=\"error\"} 1"), "{text}");
        assert!(text.contains("portcullis_cache_single_flight_joins_total{cache=\"tag\"} 1"), "{text}");
        assert!(text.contains("portcullis_tls_certificate_expiry_timestamp_seconds 1900000000"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            assert!(line.starts_with("portcullis_"), "{line}");
        }
        let open = m.render_as(&status, Format::OpenMetrics);
        assert!(open.ends_with("# EOF\n") && open.contains("# TYPE portcullis_admission_reviews counter"), "{open}");
    }

    #[test]
    fn registry_hosts_are_bounded() {
        let m = Metrics::new();
        for i in 0..MAX_HOSTS + 10 {
            m.registry_request(&format!("r{i}.example"), Some(200), Duration::ZERO);
        }
        let text = m.render(&LoadStatus::default());
        let hosts = text.lines().filter(|l| l.starts_with("portcullis_registry_requests_total{")).count();
        assert_eq!(hosts, MAX_HOSTS + 1, "{text}");
        assert!(text.contains("portcullis_registry_requests_total{host=\"other\",status=\"2xx\"} 10"), "{text}");
    }
}
