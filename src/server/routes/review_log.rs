//! The one log line per review: who asked for what, what was decided, how long it took, which
//! images, which policies failed and why, and whether the verification cache answered.
//!
//! Text: `INFO portcullis::server::routes::review_log: review uid=… kind=Pod …`; JSON: one
//! object with these fields at the top level (see the README's log format).

use std::time::Duration;

use tracing::info;

use crate::decision::Decision;
use crate::policy::Mode;
use crate::review::Review;

/// Most images and failures listed in one line (a hostile object may have thousands).
const MAX_LISTED: usize = 16;

/// The strictest mode among the policies that applied to the review, `none` if none did.
pub fn mode(decision: &Decision) -> &'static str {
    let rank = |m: Mode| match m {
        Mode::Enforce => 3,
        Mode::Warn => 2,
        Mode::Audit => 1,
    };
    match decision.findings.iter().map(|f| f.mode).max_by_key(|m| rank(*m)) {
        Some(Mode::Enforce) => "enforce",
        Some(Mode::Warn) => "warn",
        Some(Mode::Audit) => "audit",
        None => "none",
    }
}

/// Log the review's line.
pub fn log(review: &Review, webhook: &str, decision: &Decision, mode: &str, elapsed: Duration, cache: &str) {
    let images = review
        .object
        .as_ref()
        .map(|o| crate::workload::images(&review.kind.group, &review.kind.kind, o))
        .unwrap_or_default();
    let images = list(images.iter().map(|i| i.raw.clone()), ", ");
    let failed = list(decision.findings.iter().filter(|f| f.is_problem()).map(|f| format!("{f} [{}]", f.mode)), "; ");
    info!(
        uid = %review.uid,
        webhook,
        kind = %review.kind.kind,
        namespace = review.namespace.as_deref().unwrap_or(""),
        name = %review.name,
        operation = %review.operation,
        user = %review.username,
        decision = decision.label(),
        mode,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        images = %images,
        failed = %failed,
        cache,
        "review"
    );
}

/// At most [`MAX_LISTED`] items joined by `separator`, then how many more there were.
fn list(items: impl Iterator<Item = String>, separator: &str) -> String {
    let items: Vec<String> = items.collect();
    let mut text = items.iter().take(MAX_LISTED).cloned().collect::<Vec<_>>().join(separator);
    if items.len() > MAX_LISTED {
        text.push_str(&format!("{separator}… ({} more)", items.len() - MAX_LISTED));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Finding, Verdict, decide};

    #[test]
    fn the_mode_is_the_strictest_that_applied() {
        let f = |mode| Finding::new("p", mode, "image x", Verdict::Pass);
        assert_eq!(mode(&Decision::allow()), "none");
        assert_eq!(mode(&decide(vec![f(Mode::Audit), f(Mode::Warn)])), "warn");
        assert_eq!(mode(&decide(vec![f(Mode::Audit), f(Mode::Enforce), f(Mode::Warn)])), "enforce");
    }

    #[test]
    fn long_lists_are_cut() {
        let text = list((0..20).map(|i| i.to_string()), ", ");
        assert!(text.starts_with("0, 1, ") && text.ends_with("15, … (4 more)"), "{text}");
        assert_eq!(list(std::iter::empty(), "; "), "");
    }
}
