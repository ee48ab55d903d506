//! HTTP routes: `POST /validate`, `POST /mutate` (digest pinning), `GET /healthz`, `GET /readyz`,
//! `GET /metrics`.
//!
//! `/validate` takes an `admission.k8s.io/v1` AdmissionReview and answers one with the request's
//! uid. A body that is not a review we can answer gets a 4xx with a plain-text reason (the API
//! server then applies the webhook's failurePolicy); it never crashes the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::watch;
use tracing::{Instrument, info_span, warn};

use crate::engine::Engine;
use crate::policy::load::LoadStatus;
use crate::review::{Review, ReviewError};
use crate::telemetry::{Metrics, ReviewMetric};
use crate::verify::observe::ReviewScope;

mod review_log;

/// Largest AdmissionReview body accepted (the API server caps objects at 3 MiB; UPDATE
/// reviews carry two).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// Timeout assumed when the API server sends none (its own default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    pub status: watch::Receiver<LoadStatus>,
}

/// The webhook's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let status = state.status.borrow().clone();
    // A failed reload keeps serving the last good set: still ready, but say so.
    // A change waiting for the next check to confirm it is stable is said too (it is normal for
    // one reload interval; for longer, something keeps rewriting the files).
    let body = match (&status.last_error, status.pending_since) {
        (None, None) => format!("ok: {} policies loaded\n", status.policies),
        (None, Some(since)) => format!(
            "ok: {} policies loaded; a policy change seen {}s ago loads once it is unchanged at the next check\n",
            status.policies,
            since.elapsed().map_or(0, |d| d.as_secs())
        ),
        (Some(error), _) => format!(
            "ok (degraded): serving the last good set of {} policies; the latest policy reload failed: {error}\n",
            status.policies
        ),
    };
    (StatusCode::OK, body).into_response()
}

/// Prometheus text format 0.0.4, or OpenMetrics when the scraper's `Accept` prefers it.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = crate::telemetry::negotiate(accept);
    let status = state.status.borrow().clone();
    let text = state.metrics.render_as(&status, format);
    ([(header::CONTENT_TYPE, format.content_type())], text).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: portcullis serves POST /validate, POST /mutate, GET /healthz, /readyz, /metrics\n",
    )
        .into_response()
}

async fn validate(State(state): State<AppState>, request: Request) -> Response {
    handle(state, request, Webhook::Validate).await
}

async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    handle(state, request, Webhook::Mutate).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Webhook {
    Validate,
    Mutate,
}

async fn handle(state: AppState, request: Request, webhook: Webhook) -> Response {
    let started = Instant::now();
    if request.extensions().get::<super::ClientCertificate>() == Some(&super::ClientCertificate::Missing) {
        return (
            StatusCode::FORBIDDEN,
            "this server takes reviews only from clients with a certificate of its --client-ca (the API \
             server's admission kubeconfig)\n",
        )
            .into_response();
    }
    let timeout = match request.uri().query().and_then(timeout_param) {
        Some(Ok(t)) => t,
        Some(Err(raw)) => {
            warn!(timeout = %raw, "ignoring unparseable ?timeout=; using the default");
            DEFAULT_TIMEOUT
        }
        None => DEFAULT_TIMEOUT,
    };
    let body = match read_body(request.into_body()).await {
        Ok(body) => body,
        Err(response) => {
            state.metrics.invalid("body");
            return response;
        }
    };
    let review = match Review::from_slice(&body) {
        Ok(review) => review,
        Err(error) => {
            state.metrics.invalid(invalid_reason(&error));
            warn!(%error, "rejected a request that is not a valid AdmissionReview");
            return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
        }
    };
    let deadline = tokio::time::Instant::now() + budget(timeout);
    let webhook_name = if webhook == Webhook::Mutate { "mutate" } else { "validate" };
    // Other events of the review (registry retries, warnings) carry its uid; the one line per
    // review below is logged outside the span, so its fields appear once.
    let span = info_span!("review", webhook = webhook_name, uid = %review.uid);
    let scope = ReviewScope::new(Some(deadline));
    let tally = std::sync::Arc::clone(&scope.tally);
    let (mut decision, patch) = match webhook {
        Webhook::Validate => (scope.clone().run(state.engine.review(&review, deadline)).instrument(span).await, None),
        Webhook::Mutate => {
            let mutation = scope.clone().run(state.engine.mutate(&review, deadline)).instrument(span).await;
            let patch = crate::engine::patch(&mutation.pins);
            (mutation.decision, Some(patch))
        }
    };
    // Warnings from verification itself (an admission on the last known good verification).
    decision.warnings.extend(scope.take_warnings());
    let elapsed = started.elapsed();
    let mode = review_log::mode(&decision);
    review_log::log(&review, webhook_name, &decision, mode, elapsed, tally.summary());
    state.metrics.record_review(&ReviewMetric {
        webhook: webhook_name,
        decision: decision.label(),
        mode,
        kind: &review.kind.kind,
        operation: &review.operation,
        elapsed,
    });
    match patch {
        None => axum::Json(review.respond_review(&decision)).into_response(),
        Some(patch) => axum::Json(review.respond_mutation(&decision, patch)).into_response(),
    }
}

/// The time the engine gets: the API server's timeout minus a margin for the response to
/// travel back (10 %, between 250 ms and 2 s).
pub fn budget(timeout: Duration) -> Duration {
    let margin = (timeout / 10).clamp(Duration::from_millis(250), Duration::from_secs(2));
    timeout.saturating_sub(margin)
}

/// `timeout=10s` from a query string: None if absent, Err(raw) if it does not parse.
fn timeout_param(query: &str) -> Option<Result<Duration, String>> {
    let raw = query.split('&').find_map(|pair| pair.strip_prefix("timeout="))?;
    Some(crate::duration::parse(raw).map_err(|_| raw.to_owned()))
}

/// How much of an oversized body is read (and dropped) before answering `413`, and for how long:
/// an HTTP/2 client that is still sending when the answer comes gets its stream reset, and Go's
/// client (the API server's) then reports a reset instead of the `413`.
const MAX_DRAIN_BYTES: usize = 4 * MAX_BODY_BYTES;
const MAX_DRAIN_TIME: Duration = Duration::from_secs(5);

async fn read_body(mut body: Body) -> Result<axum::body::Bytes, Response> {
    use http_body_util::BodyExt;
    let mut bytes = Vec::new();
    let mut too_large = false;
    let mut seen = 0usize;
    let drain_until = tokio::time::Instant::now() + MAX_DRAIN_TIME;
    loop {
        let frame = if too_large {
            match tokio::time::timeout_at(drain_until, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => break,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = frame else { break };
        let frame = frame
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}\n")).into_response())?;
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen > MAX_BODY_BYTES {
            too_large = true;
            bytes = Vec::new();
            if seen > MAX_DRAIN_BYTES {
                break;
            }
        } else {
            bytes.extend_from_slice(&data);
        }
    }
    if too_large {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the AdmissionReview body is larger than the {} MiB limit\n", MAX_BODY_BYTES >> 20),
        )
            .into_response());
    }
    Ok(bytes.into())
}

fn invalid_reason(error: &ReviewError) -> &'static str {
    match error {
        ReviewError::NotJson(_) => "not_json",
        ReviewError::NotAnObject => "not_an_object",
        ReviewError::WrongApiVersion(_) => "wrong_api_version",
        ReviewError::WrongKind(_) => "wrong_kind",
        ReviewError::MissingRequest => "missing_request",
        ReviewError::MissingUid => "missing_uid",
        ReviewError::Malformed(_) => "malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets() {
        assert_eq!(budget(Duration::from_secs(10)), Duration::from_secs(9));
        assert_eq!(budget(Duration::from_secs(30)), Duration::from_secs(28));
        assert_eq!(budget(Duration::from_secs(1)), Duration::from_millis(750));
        assert_eq!(budget(Duration::from_millis(100)), Duration::ZERO);
    }

    #[test]
    fn timeout_params() {
        assert_eq!(timeout_param("timeout=5s"), Some(Ok(Duration::from_secs(5))));
        assert_eq!(timeout_param("a=b&timeout=30s"), Some(Ok(Duration::from_secs(30))));
        assert_eq!(timeout_param("timeout=forever"), Some(Err("forever".to_owned())));
        assert_eq!(timeout_param("a=b"), None);
    }
}
