//! Findings + modes → one decision (pure). This is the only place that decides between
//! fail-open and fail-closed: in `enforce`, a failed check AND a check that could not be made
//! (registry down, log unreachable, expression error, not implemented) both deny; in `warn` they
//! allow with a warning; in `audit` they allow with an audit annotation.

use std::collections::BTreeMap;
use std::fmt;

use crate::policy::Mode;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The check passed.
    Pass,
    /// The check ran and failed (unsigned, wrong digest, rule false…).
    Fail(String),
    /// The check could not be made (registry or log error, expression error, timeout,
    /// not implemented). Never reported as "unsigned".
    Error(String),
}

/// One check of one policy against one subject (an image, or the object itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub policy: String,
    pub mode: Mode,
    /// What was checked, e.g. `image ghcr.io/acme/app:v1 (spec.containers[0].image)`.
    pub subject: String,
    pub verdict: Verdict,
    /// The typed failure class behind a failed or unchecked verification, as JSON
    /// (`{"class": "identity-mismatch", …}`), for machine-readable output. The message in
    /// `verdict` is rendered from the same value.
    pub failure: Option<serde_json::Value>,
}

impl Finding {
    pub fn new(policy: impl Into<String>, mode: Mode, subject: impl Into<String>, verdict: Verdict) -> Self {
        Self { policy: policy.into(), mode, subject: subject.into(), verdict, failure: None }
    }

    /// The same finding, with its typed failure class.
    pub fn with_failure(mut self, failure: Option<serde_json::Value>) -> Self {
        self.failure = failure;
        self
    }

    /// Whether this finding is a problem (anything but a pass).
    pub fn is_problem(&self) -> bool {
        self.verdict != Verdict::Pass
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Pass => write!(f, "policy {:?}: {}: passed", self.policy, self.subject),
            Verdict::Fail(why) => write!(f, "policy {:?}: {}: {why}", self.policy, self.subject),
            Verdict::Error(why) => {
                write!(f, "policy {:?}: {}: could not be checked: {why}", self.policy, self.subject)
            }
        }
    }
}

/// What to answer the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why the request was denied (one line per enforced failure).
    pub message: Option<String>,
    /// Warnings returned to the client (`warn` mode).
    pub warnings: Vec<String>,
    /// Audit annotations (`audit` mode), keyed by policy name.
    pub audit_annotations: BTreeMap<String, String>,
    /// Every finding, passes included, for logs and the CLI.
    pub findings: Vec<Finding>,
}

impl Decision {
    /// Allow with nothing to report.
    pub fn allow() -> Self {
        Self { allowed: true, ..Self::default() }
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match (self.allowed, self.warnings.is_empty()) {
            (false, _) => "denied",
            (true, false) => "warned",
            (true, true) => "allowed",
        }
    }
}

/// Fold findings into a decision.
pub fn decide(findings: Vec<Finding>) -> Decision {
    let mut denials = Vec::new();
    let mut warnings = Vec::new();
    let mut audit: BTreeMap<String, String> = BTreeMap::new();
    for finding in findings.iter().filter(|f| f.is_problem()) {
        match finding.mode {
            Mode::Enforce => denials.push(finding.to_string()),
            Mode::Warn => warnings.push(finding.to_string()),
            Mode::Audit => {
                let entry = audit.entry(finding.policy.clone()).or_default();
                if !entry.is_empty() {
                    entry.push_str("; ");
                }
                entry.push_str(&finding.to_string());
            }
        }
    }
    let message = (!denials.is_empty()).then(|| {
        if denials.len() == 1 {
            format!("portcullis denied the request: {}", denials[0])
        } else {
            format!("portcullis denied the request ({} problems):\n- {}", denials.len(), denials.join("\n- "))
        }
    });
    Decision { allowed: denials.is_empty(), message, warnings, audit_annotations: audit, findings }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(mode: Mode, verdict: Verdict) -> Finding {
        Finding::new("p", mode, "image docker.io/library/nginx:1", verdict)
    }

    #[test]
    fn enforce_fails_closed_on_failures_and_errors() {
        for verdict in [Verdict::Fail("unsigned".into()), Verdict::Error("registry returned 503".into())] {
            let d = decide(vec![f(Mode::Enforce, verdict.clone())]);
            assert!(!d.allowed, "{verdict:?}");
            let message = d.message.expect("message");
            assert!(message.contains("policy \"p\""), "{message}");
            assert!(message.contains("nginx:1"), "{message}");
        }
        let d = decide(vec![f(Mode::Enforce, Verdict::Error("registry returned 503".into()))]);
        assert!(d.message.expect("m").contains("could not be checked: registry returned 503"));
    }

    #[test]
    fn warn_and_audit_allow() {
        let d = decide(vec![f(Mode::Warn, Verdict::Fail("unsigned".into()))]);
        assert!(d.allowed);
        assert_eq!(d.warnings.len(), 1);
        assert_eq!(d.label(), "warned");
        let d = decide(vec![
            f(Mode::Audit, Verdict::Fail("unsigned".into())),
            f(Mode::Audit, Verdict::Error("timeout".into())),
        ]);
        assert!(d.allowed);
        assert!(d.warnings.is_empty());
        let note = d.audit_annotations.get("p").expect("annotation");
        assert!(note.contains("unsigned") && note.contains("timeout"), "{note}");
    }

    #[test]
    fn passes_and_nothing_allow() {
        assert!(decide(vec![]).allowed);
        let d = decide(vec![f(Mode::Enforce, Verdict::Pass)]);
        assert!(d.allowed && d.message.is_none());
        assert_eq!(d.findings.len(), 1);
    }

    #[test]
    fn several_denials_are_listed() {
        let d = decide(vec![f(Mode::Enforce, Verdict::Fail("a".into())), f(Mode::Enforce, Verdict::Fail("b".into()))]);
        let m = d.message.expect("m");
        assert!(m.contains("2 problems") && m.contains("- policy"), "{m}");
    }
}
