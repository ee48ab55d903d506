//! What an operator sees: `/metrics` parsed by a Prometheus text-format parser after real
//! reviews, the one JSON log line per review, and a rate-limited registry (429 with
//! `Retry-After`, through a throttling proxy) retried within the review's deadline.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use portcullis::telemetry::{LogArgs, LogFormat};
use prometheus_parse::{Scrape, Value as Sample};
use serde_json::Value;
use tower::ServiceExt;

use super::support::{Kind, Pusher, Signer, TestRegistry};
use super::{cached_app, post, review, tag_policy};

/// `GET path` with an optional `Accept`: (content type, body).
async fn get(app: &Router, path: &str, accept: Option<&str>) -> (String, String) {
    let mut request = axum::http::Request::get(path);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = app.clone().oneshot(request.body(Body::empty()).expect("request")).await.expect("answer");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (content_type, String::from_utf8(body.to_vec()).expect("utf-8"))
}

/// A registry with `team/app:v1` signed and `team/bad:v1` unsigned, and the key's directory.
async fn signed_registry() -> (TestRegistry, tempfile::TempDir) {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let push = Pusher::new(&registry.host);
    let signer = Signer::new();
    let (digest, _) = push.image("team/app", "v1", "signed").await;
    push.sign_legacy("team/app", &digest, &signer).await;
    push.image("team/bad", "v1", "unsigned").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("release.pub"), signer.public_pem()).expect("key");
    (registry, dir)
}

fn sample<'s>(scrape: &'s Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'s prometheus_parse::Sample> {
    scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, name, labels).map(|s| &s.value) {
        Some(Sample::Counter(v) | Sample::Gauge(v)) => *v,
        other => panic!("{name}{labels:?}: {other:?}"),
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_after_reviews() {
    let (registry, dir) = signed_registry().await;
    let host = registry.host.clone();
    let (app, _) = cached_app(&host, &tag_policy(&host), dir.path(), Duration::from_secs(30));
    let good = format!("{host}/team/app:v1");
    let bad = format!("{host}/team/bad:v1");
    assert_eq!(post(&app, "/validate", &review(&[&good])).await["response"]["allowed"], true);
    assert_eq!(post(&app, "/validate", &review(&[&good, &good])).await["response"]["allowed"], true);
    assert_eq!(post(&app, "/mutate", &review(&[&good])).await["response"]["allowed"], true);
    assert_eq!(post(&app, "/validate", &review(&[&bad])).await["response"]["allowed"], false);

    let (content_type, text) = get(&app, "/metrics", None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    // Every sample is typed: a counter declared under another name than its samples' (what
    // OpenMetrics does) would parse as untyped here, as in Prometheus.
    // (This parser leaves a histogram's `_sum` and `_count` untyped; Prometheus does not.)
    let histograms: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" histogram")).collect();
    let of_histogram =
        |name: &str| histograms.iter().any(|h| name.strip_prefix(h).is_some_and(|s| s == "_sum" || s == "_count"));
    let untyped: Vec<_> =
        scrape.samples.iter().filter(|s| matches!(s.value, Sample::Untyped(_)) && !of_histogram(&s.metric)).collect();
    assert!(untyped.is_empty(), "untyped samples: {untyped:?}\n{text}");
    let kinds: HashMap<&str, &'static str> = scrape
        .samples
        .iter()
        .map(|s| {
            let kind = match s.value {
                Sample::Counter(_) => "counter",
                Sample::Gauge(_) => "gauge",
                Sample::Histogram(_) => "histogram",
                Sample::Summary(_) => "summary",
                Sample::Untyped(_) => "untyped",
            };
            (s.metric.as_str(), kind)
        })
        .collect();
    for (name, kind) in [
        ("portcullis_admission_reviews_total", "counter"),
        ("portcullis_webhook_reviews_total", "counter"),
        ("portcullis_admission_review_duration_seconds", "histogram"),
        ("portcullis_verifications_total", "counter"),
        ("portcullis_verification_duration_seconds", "histogram"),
        ("portcullis_verifications_in_flight", "gauge"),
        ("portcullis_cache_hits_total", "counter"),
        ("portcullis_cache_misses_total", "counter"),
        ("portcullis_cache_entries", "gauge"),
        ("portcullis_registry_requests_total", "counter"),
        ("portcullis_registry_request_duration_seconds", "histogram"),
        ("portcullis_policies_loaded", "gauge"),
        ("portcullis_policy_reload_failing", "gauge"),
        ("portcullis_policy_reloads_succeeded_total", "counter"),
    ] {
        assert_eq!(kinds.get(name), Some(&kind), "{name}\n{text}");
        assert!(scrape.docs.contains_key(name), "{name} has no HELP under its own name\n{text}");
    }
    let reviews = "portcullis_webhook_reviews_total";
    let validate = [("webhook", "validate"), ("decision", "allowed"), ("mode", "enforce"), ("kind", "Deployment")];
    assert_eq!(value(&scrape, reviews, &validate), 2.0, "{text}");
    assert_eq!(value(&scrape, reviews, &[("webhook", "mutate"), ("operation", "CREATE")]), 1.0, "{text}");
    assert_eq!(value(&scrape, reviews, &[("decision", "denied"), ("mode", "enforce")]), 1.0, "{text}");
    // The original series keep their labels.
    let denied = [("decision", "denied"), ("kind", "Deployment"), ("operation", "CREATE")];
    assert_eq!(value(&scrape, "portcullis_admission_reviews_total", &denied), 1.0, "{text}");
    let labels = sample(&scrape, "portcullis_admission_reviews_total", &denied).map(|s| s.labels.len());
    assert_eq!(labels, Some(3), "{text}");
    // One verification per digest: the signed one, then the unsigned one; the rest were cached.
    assert_eq!(value(&scrape, "portcullis_verifications_total", &[("outcome", "verified")]), 1.0, "{text}");
    assert_eq!(value(&scrape, "portcullis_verifications_total", &[("outcome", "failed")]), 1.0, "{text}");
    assert_eq!(value(&scrape, "portcullis_verifications_in_flight", &[]), 0.0, "{text}");
    assert!(value(&scrape, "portcullis_cache_hits_total", &[("cache", "verification")]) >= 1.0, "{text}");
    assert!(value(&scrape, "portcullis_cache_hits_total", &[("cache", "tag")]) >= 1.0, "{text}");
    assert_eq!(value(&scrape, "portcullis_cache_misses_total", &[("cache", "tag")]), 2.0, "{text}");
    assert_eq!(value(&scrape, "portcullis_cache_entries", &[("cache", "verification")]), 2.0, "{text}");
    assert!(value(&scrape, "portcullis_registry_requests_total", &[("host", &host), ("status", "2xx")]) > 0.0);
    assert!(
        matches!(sample(&scrape, "portcullis_registry_request_duration_seconds", &[("host", &host)]).map(|s| &s.value),
            Some(Sample::Histogram(buckets)) if !buckets.is_empty()),
        "{text}"
    );
    assert_eq!(value(&scrape, "portcullis_policies_loaded", &[]), 1.0, "{text}");

    // OpenMetrics only for a scraper that prefers it (Prometheus's default Accept).
    let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let (content_type, open) = get(&app, "/metrics", Some(prometheus)).await;
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(open.ends_with("# EOF\n") && open.contains("# TYPE portcullis_admission_reviews counter\n"), "{open}");
    let (content_type, _) = get(&app, "/metrics", Some("text/plain")).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
}

/// A shared buffer the log subscriber writes to.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
    }
}

fn logging(format: LogFormat, to: &Captured) -> tracing::subscriber::DefaultGuard {
    let args = LogArgs { log_format: format, log_level: "info".to_owned() };
    let to = to.clone();
    let subscriber = portcullis::telemetry::subscriber(&args, move || to.clone(), false).expect("subscriber");
    let guard = tracing::subscriber::set_default(subscriber);
    // Callsite interest is process-wide: a callsite first hit by another test thread while this
    // subscriber was being registered may have cached "never". Recompute it with this one in place.
    tracing::callsite::rebuild_interest_cache();
    guard
}

/// The test runs on one thread (current-thread runtime), so the thread-local subscriber sees
/// every event of the reviews.
#[tokio::test]
async fn one_flat_json_log_line_per_review() {
    let (registry, dir) = signed_registry().await;
    let host = registry.host.clone();
    let (app, _) = cached_app(&host, &tag_policy(&host), dir.path(), Duration::from_secs(30));
    let (good, bad) = (format!("{host}/team/app:v1"), format!("{host}/team/bad:v1"));
    let captured = Captured::default();
    {
        let _guard = logging(LogFormat::Json, &captured);
        post(&app, "/validate", &review(&[&good])).await;
        post(&app, "/validate", &review(&[&good])).await;
        post(&app, "/validate", &review(&[&good, &bad])).await;
        // Any other event of a review carries the review's span, once.
        tracing::info_span!("review", webhook = "validate", uid = "u-1").in_scope(|| tracing::info!("inside"));
    }
    let lines: Vec<Value> =
        captured.text().lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let reviews: Vec<&Value> = lines.iter().filter(|l| l["message"] == "review").collect();
    assert_eq!(reviews.len(), 3, "one line per review: {lines:#?}");
    for line in &reviews {
        // The object's name, not the span's; no span repeated.
        assert_eq!(line["name"], "web", "{line}");
        assert_eq!(line["uid"], "pin-1", "{line}");
        assert_eq!(
            (&line["kind"], &line["namespace"], &line["operation"]),
            (&"Deployment".into(), &"prod".into(), &"CREATE".into())
        );
        assert_eq!(
            (&line["user"], &line["webhook"], &line["mode"]),
            (&"dev".into(), &"validate".into(), &"enforce".into())
        );
        assert!(line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{line}");
        assert!(line["images"].as_str().is_some_and(|i| i.contains(&good)), "{line}");
        assert!(line.get("span").is_none() && line.get("spans").is_none(), "{line}");
    }
    assert_eq!((&reviews[0]["decision"], &reviews[0]["cache"]), (&"allowed".into(), &"miss".into()), "{}", reviews[0]);
    assert_eq!((&reviews[0]["failed"], &reviews[1]["cache"]), (&"".into(), &"hit".into()), "{}", reviews[1]);
    let denied = reviews[2];
    assert_eq!((&denied["decision"], &denied["cache"]), (&"denied".into(), &"partial".into()), "{denied}");
    let failed = denied["failed"].as_str().expect("failed");
    assert!(failed.contains("policy \"tags\"") && failed.contains(&bad) && failed.contains("[enforce]"), "{failed}");
    assert!(!failed.contains(&format!("{good} ")), "only the failures are listed: {failed}");
    let inside = lines.iter().find(|l| l["message"] == "inside").expect("inside");
    assert_eq!(inside["span"], serde_json::json!({"name": "review", "webhook": "validate", "uid": "u-1"}), "{inside}");
    assert!(inside.get("spans").is_none(), "{inside}");

    // The text format: the same fields on one line.
    let text = Captured::default();
    {
        let _guard = logging(LogFormat::Text, &text);
        post(&app, "/validate", &review(&[&bad])).await;
    }
    let text = text.text();
    let line = text.lines().find(|l| l.contains(" review ")).unwrap_or_else(|| panic!("{text}"));
    for field in
        ["uid=pin-1", "kind=Deployment", "name=web", "user=dev", "decision=\"denied\"", "cache=\"hit\"", "failed="]
    {
        assert!(line.contains(field), "{field}: {line}");
    }
}

/// A proxy in front of a registry that answers the next `refuse` requests with `status` and
/// `Retry-After: retry_after`, then forwards.
struct Throttle {
    upstream: String,
    refuse: AtomicUsize,
    status: StatusCode,
    retry_after: Mutex<String>,
    client: reqwest::Client,
}

impl Throttle {
    async fn start(upstream: &str, status: StatusCode) -> (Arc<Self>, String) {
        let throttle = Arc::new(Self {
            upstream: upstream.to_owned(),
            refuse: AtomicUsize::new(0),
            status,
            retry_after: Mutex::new("1".to_owned()),
            client: reqwest::Client::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let app = Router::new().fallback(forward).with_state(Arc::clone(&throttle));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (throttle, host)
    }

    fn refuse(&self, requests: usize, retry_after: &str) {
        *self.retry_after.lock().expect("lock") = retry_after.to_owned();
        self.refuse.store(requests, Ordering::SeqCst);
    }
}

async fn forward(State(t): State<Arc<Throttle>>, request: Request) -> Response {
    if t.refuse.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        let wait = t.retry_after.lock().expect("lock").clone();
        return (t.status, [("retry-after", wait)], "slow down\n").into_response();
    }
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut upstream = t.client.request(request.method().clone(), format!("http://{}{path}", t.upstream));
    for name in ["accept", "authorization"] {
        if let Some(value) = request.headers().get(name) {
            upstream = upstream.header(name, value.as_bytes());
        }
    }
    let answer = upstream.send().await.expect("upstream");
    let mut response = Response::builder().status(answer.status().as_u16());
    for name in ["content-type", "docker-content-digest", "www-authenticate"] {
        if let Some(value) = answer.headers().get(name) {
            response = response.header(name, HeaderValue::from_bytes(value.as_bytes()).expect("header"));
        }
    }
    let body = answer.bytes().await.expect("body");
    response.body(Body::from(body)).expect("response")
}

#[tokio::test]
async fn a_rate_limited_registry_is_retried_within_the_deadline() {
    let (registry, dir) = signed_registry().await;
    for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::SERVICE_UNAVAILABLE] {
        let (throttle, host) = Throttle::start(&registry.host, status).await;
        let (app, _) = cached_app(&host, &tag_policy(&host), dir.path(), Duration::from_secs(30));
        // Two refusals asking for a second each: the review waits them out and verifies.
        throttle.refuse(2, "1");
        let started = Instant::now();
        let answer = post(&app, "/validate?timeout=10s", &review(&[&format!("{host}/team/app:v1")])).await;
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After was honoured: {:?}", started.elapsed());
        let (_, text) = get(&app, "/metrics", None).await;
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
        assert_eq!(value(&scrape, "portcullis_registry_retries_total", &[("host", &host)]), 2.0, "{text}");
        // The refusals are counted with the rest of their class (404s of absent signature tags
        // are 4xx too).
        let refused = value(&scrape, "portcullis_registry_requests_total", &[("host", &host), ("status", "4xx")]);
        let unavailable = sample(&scrape, "portcullis_registry_requests_total", &[("host", &host), ("status", "5xx")]);
        match status {
            StatusCode::TOO_MANY_REQUESTS => assert!(refused >= 2.0 && unavailable.is_none(), "{text}"),
            _ => assert_eq!(
                value(&scrape, "portcullis_registry_requests_total", &[("host", &host), ("status", "5xx")]),
                2.0
            ),
        }

        // A wait longer than the review has left is not taken: the denial comes at once and
        // says which call was refused and why it was not retried.
        throttle.refuse(1, "30");
        let started = Instant::now();
        let answer = post(&app, "/validate?timeout=3s", &review(&[&format!("{host}/team/bad:v1")])).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
        let message = answer["response"]["status"]["message"].as_str().expect("message");
        assert!(message.contains(&format!("registry answered {}", status.as_u16())), "{message}");
        assert!(message.contains("retry after 30000 ms") && message.contains("ms left"), "{message}");
        assert!(message.contains("/team/bad/manifests/v1"), "the slow call is named: {message}");
    }
    let _ = std::io::stderr().flush();
}
