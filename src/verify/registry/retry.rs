//! When to send a request again: a registry answering 429 (rate limited) or 503 (unavailable)
//! says how long to wait in `Retry-After` (seconds or an HTTP date). The wait is taken only if
//! it ends before the review's deadline (with room for the retried request); without a
//! `Retry-After`, a short pause.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio::time::Instant;

/// Most retries of one request.
pub const MAX_RETRIES: u32 = 3;
/// The pause when the registry gives no `Retry-After`.
const DEFAULT_WAIT: Duration = Duration::from_millis(500);
/// The longest wait taken outside a review (CLI), whatever `Retry-After` says.
const MAX_WAIT_WITHOUT_DEADLINE: Duration = Duration::from_secs(10);
/// Time kept for the retried request itself.
const ROOM: Duration = Duration::from_millis(100);

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Hand it to the caller.
    Answer,
    /// Wait this long, then send the request again.
    Wait(Duration),
    /// The registry asks for a wait the review has no time for (`left`: what the review had;
    /// None outside a review, where at most 10 s are waited).
    PastDeadline { wait: Duration, left: Option<Duration> },
}

/// The plan for an answer with `status` and `headers`, `deadline` being the review's.
pub fn plan(status: StatusCode, headers: &HeaderMap, deadline: Option<Instant>) -> Plan {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return Plan::Answer;
    }
    let wait = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, chrono::Utc::now()))
        .unwrap_or(DEFAULT_WAIT);
    match deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if wait + ROOM < left { Plan::Wait(wait) } else { Plan::PastDeadline { wait, left: Some(left) } }
        }
        None if wait <= MAX_WAIT_WITHOUT_DEADLINE => Plan::Wait(wait),
        None => Plan::PastDeadline { wait, left: None },
    }
}

/// `Retry-After: 3` or `Retry-After: Sun, 29 Nov 2026 11:30:00 GMT` (a date in the past: 0).
fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, retry_after.parse().expect("header"));
        h
    }

    #[test]
    fn parses_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc2822("Sun, 29 Nov 2026 11:30:00 GMT").expect("date").to_utc();
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("Sun, 29 Nov 2026 11:30:07 GMT", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Sun, 29 Nov 2026 11:29:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_only_within_the_deadline() {
        let deadline = Some(Instant::now() + Duration::from_secs(5));
        assert_eq!(plan(StatusCode::OK, &headers("1"), deadline), Plan::Answer);
        assert_eq!(plan(StatusCode::NOT_FOUND, &headers("1"), deadline), Plan::Answer);
        assert_eq!(plan(StatusCode::INTERNAL_SERVER_ERROR, &headers("1"), deadline), Plan::Answer);
        assert_eq!(plan(StatusCode::TOO_MANY_REQUESTS, &headers("1"), deadline), Plan::Wait(Duration::from_secs(1)));
        assert_eq!(plan(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), deadline), Plan::Wait(DEFAULT_WAIT));
        assert_eq!(
            plan(StatusCode::TOO_MANY_REQUESTS, &headers("30"), deadline),
            Plan::PastDeadline { wait: Duration::from_secs(30), left: Some(Duration::from_secs(5)) }
        );
        // A wait that ends exactly at the deadline leaves no time for the request: not taken.
        assert!(matches!(plan(StatusCode::TOO_MANY_REQUESTS, &headers("5"), deadline), Plan::PastDeadline { .. }));
        // Outside a review, at most 10 s.
        assert_eq!(plan(StatusCode::TOO_MANY_REQUESTS, &headers("10"), None), Plan::Wait(Duration::from_secs(10)));
        assert!(matches!(
            plan(StatusCode::TOO_MANY_REQUESTS, &headers("11"), None),
            Plan::PastDeadline { left: None, .. }
        ));
    }
}
