//! Logs (tracing, text or JSON) and Prometheus metrics (names prefixed `portcullis_`).
//!
//! Metrics live in a [`Metrics`] value owned by the server, not in a process-global registry,
//! so two servers in one test process never share counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::policy::load::LoadStatus;

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Logging flags shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, global = true, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `portcullis=debug`.
    #[arg(long, global = true, env = "PORTCULLIS_LOG", default_value = "info")]
    pub log_level: String,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid --log-level {0:?}: {1}; use e.g. `info` or `portcullis=debug`")]
    Filter(String, String),
}

/// Install the global tracing subscriber (logs go to stderr).
pub fn init(args: &LogArgs) -> Result<(), TelemetryError> {
    let LogArgs { log_format, log_level } = args;
    let filter = EnvFilter::try_new(log_level).map_err(|e| TelemetryError::Filter(log_level.clone(), e.to_string()))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second init (tests) keeps the first subscriber.
    let _ = match log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    decision: String,
    kind: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    invalid: Family<ReasonLabels, Counter>,
    duration: Histogram,
    policies: Gauge,
    reload_failing: Gauge,
    change_pending: Gauge,
    reloads_ok: Counter<u64, AtomicU64>,
    reloads_failed: Counter<u64, AtomicU64>,
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

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register("admission_reviews", "Admission reviews answered, by decision", reviews.clone());
        let invalid = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "admission_invalid_requests",
            "Requests that were not a valid AdmissionReview",
            invalid.clone(),
        );
        let buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let duration = Histogram::new(buckets);
        registry.register("admission_review_duration_seconds", "Time to decide one review", duration.clone());
        let policies = Gauge::default();
        registry.register("policies_loaded", "Policies in the set being served", policies.clone());
        let reload_failing = Gauge::default();
        registry.register(
            "policy_reload_failing",
            "1 when the last policy reload failed and the last good set is served",
            reload_failing.clone(),
        );
        let change_pending = Gauge::default();
        registry.register(
            "policy_change_pending",
            "1 while a change to the policies waits to be seen unchanged by the next check before it loads",
            change_pending.clone(),
        );
        let reloads_ok = Counter::default();
        registry.register("policy_reloads_succeeded", "Policy loads that succeeded", reloads_ok.clone());
        let reloads_failed = Counter::default();
        registry.register("policy_reloads_failed", "Policy reloads that failed", reloads_failed.clone());
        Self {
            registry,
            reviews,
            invalid,
            duration,
            policies,
            reload_failing,
            change_pending,
            reloads_ok,
            reloads_failed,
        }
    }

    /// Count one answered review.
    pub fn review(&self, decision: &str, kind: &str, operation: &str, elapsed: Duration) {
        let labels =
            ReviewLabels { decision: decision.to_owned(), kind: kind.to_owned(), operation: operation.to_owned() };
        self.reviews.get_or_create(&labels).inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Count one request that was not a valid review.
    pub fn invalid(&self, reason: &str) {
        self.invalid.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    /// The Prometheus text exposition, with policy gauges taken from `status`.
    pub fn render(&self, status: &LoadStatus) -> String {
        self.policies.set(i64::try_from(status.policies).unwrap_or(i64::MAX));
        self.reload_failing.set(i64::from(status.last_error.is_some()));
        self.change_pending.set(i64::from(status.pending_since.is_some()));
        sync_counter(&self.reloads_ok, status.reloads_ok);
        sync_counter(&self.reloads_failed, status.reloads_failed);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
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
        m.review("denied", "Pod", "CREATE", Duration::from_millis(3));
        m.invalid("not_json");
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
        assert!(text.contains("portcullis_policies_loaded 3"), "{text}");
        assert!(text.contains("portcullis_policy_reload_failing 1"), "{text}");
        assert!(text.contains("portcullis_policy_change_pending 0"), "{text}");
        assert!(text.contains("portcullis_policy_reloads_failed_total 1"), "{text}");
        assert!(text.contains("portcullis_admission_invalid_requests_total{reason=\"not_json\"} 1"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            assert!(line.starts_with("portcullis_"), "{line}");
        }
    }
}
