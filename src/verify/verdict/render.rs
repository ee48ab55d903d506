//! Every message about a verification, rendered from the typed verdicts: the webhook's denial
//! message, the CLI's text, and the CLI's JSON `failure` object all come from here.

use std::fmt;

use serde_json::{Value, json};

use super::{
    AttestationFound, AttestationUnmet, AuthorityUnmet, Carrier, Denial, Failure, RequirementNotMet, Satisfied, Tried,
    Unchecked, Verification,
};
use crate::policy::Require;
use crate::verify::cosign::COSIGN_SIGN_PREDICATE;
use crate::verify::signers::describe_require;

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { what } | Self::UnsupportedFormat { what } => f.write_str(what),
            Self::KeyUnavailable { why } => f.write_str(why),
            Self::MaterialMismatch { detail }
            | Self::TrustRootUnusable { detail }
            | Self::LogEntryInvalid { detail }
            | Self::CertificateRejected { detail }
            | Self::CertificateNotValidAt { detail }
            | Self::TimestampInvalid { detail }
            | Self::WrongKey { detail }
            | Self::BadSignature { detail }
            | Self::ArtifactMismatch { detail } => f.write_str(detail),
            Self::DigestMismatch { expected, statement: true, .. } => {
                write!(f, "the signed statement is about another digest, not {expected}")
            }
            Self::DigestMismatch { expected, found, statement: false } => {
                write!(f, "the payload signs digest {}, not {expected}", found.as_deref().unwrap_or("(none)"))
            }
            Self::PayloadTypeMismatch { expected, found } => {
                write!(f, "the payload type is {found:?}, not {expected:?}")
            }
            Self::PredicateTypeMismatch { expected, found } if expected == COSIGN_SIGN_PREDICATE => {
                write!(f, "the bundle is an attestation ({found}), not a signature ({expected})")
            }
            Self::PredicateTypeMismatch { expected, found } => {
                write!(f, "signed predicateType is {found}, not {expected}")
            }
            Self::NoCertificate { carrier: Carrier::Attestation } => {
                f.write_str("the attestation carries no certificate: it is not keyless")
            }
            Self::NoCertificate { .. } => {
                f.write_str("the signature carries no certificate: it is not a keyless signature")
            }
            Self::NoLogEntry { carrier } => f.write_str(match carrier {
                Carrier::KeySignature => {
                    "the signature has no transparency log entry (no Rekor bundle annotation) and the authority \
                     requires one; sign with the log, or set transparencyLog: skip"
                }
                Carrier::KeylessSignature => {
                    "the keyless signature has no transparency log entry (no Rekor bundle annotation); keyless \
                     signatures are only trusted with a logged signing time"
                }
                Carrier::Attestation => {
                    "the attestation has no transparency log entry (no Rekor bundle annotation) and the authority \
                     requires one"
                }
                Carrier::Bundle => crate::verify::bundle::NO_LOG_ENTRY,
            }),
            Self::IdentityMismatch { expected, found } => {
                write!(f, "certificate identity mismatch: expected {expected}, but the certificate carries {found}")
            }
            Self::ConditionFailed { message } => write!(f, "condition failed: {message}"),
            Self::ConditionError { message } => f.write_str(message),
        }
    }
}

impl fmt::Display for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}")?,
            None => f.write_str("key")?,
        }
        match &self.authority {
            Some(authority) => write!(f, " (authority {authority:?}): {}", self.failure),
            None => write!(f, ": {}", self.failure),
        }
    }
}

fn joined<T: fmt::Display>(items: &[T], separator: &str) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(separator)
}

impl fmt::Display for AuthorityUnmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tried.is_empty() {
            write!(f, "authority {:?}: no signature to check", self.authority)
        } else {
            write!(f, "authority {:?}: {}", self.authority, joined(&self.tried, "; "))
        }
    }
}

impl fmt::Display for AttestationUnmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attestation {:?} ({}) not satisfied: ", self.name, self.predicate_type)?;
        match &self.found {
            AttestationFound::Nothing { looked } => {
                write!(f, "no attestation found for {} (looked at {})", self.digest, looked.join(", "))
            }
            AttestationFound::Tried(tried) => f.write_str(&joined(tried, "; ")),
        }
    }
}

impl fmt::Display for RequirementNotMet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let required = describe_require(self.require, self.total);
        let mut parts = Vec::new();
        if !self.satisfied.is_empty() {
            let names: Vec<String> = self.satisfied.iter().map(|n| format!("{n:?}")).collect();
            let noun = if self.signers == 1 { "signer" } else { "signers" };
            parts.push(format!(
                "{} distinct {noun} satisfied authorities {} ({}); a signer counts for one authority only",
                self.signers,
                names.join(", "),
                joined(&self.identities, ", ")
            ));
        }
        parts.extend(self.unmet.iter().map(ToString::to_string));
        write!(f, "requires {required}; {} counted: {}: {}", self.counted, self.digest, parts.join(" | "))
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSignatures { digest, require, total, looked } => write!(
                f,
                "requires {}, 0 satisfied: no signatures found for {digest} (looked at {})",
                describe_require(*require, *total),
                looked.join(", ")
            ),
            Self::RequirementNotMet(unmet) => unmet.fmt(f),
            Self::Attestations(unmet) => f.write_str(&joined(unmet, " | ")),
            Self::Platform { platform, digest, denial } => write!(f, "platform {platform} ({digest}): {denial}"),
            Self::PlatformsUnverifiable { reason } => f.write_str(reason),
        }
    }
}

impl fmt::Display for Unchecked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry { error } => write!(f, "registry error (not a signature failure): {error}"),
            Self::Timeout { slow: None } => f.write_str("verification did not finish before the review deadline"),
            Self::Timeout { slow: Some(slow) } => {
                write!(f, "verification did not finish before the review deadline: {slow}")
            }
            Self::TrustedRoot { authority, detail } => write!(f, "authority {authority:?}: trusted root: {detail}"),
            Self::PullSecrets { detail } => write!(f, "imagePullSecrets: {detail}"),
            Self::TagResolution { detail } | Self::Unavailable { detail } => f.write_str(detail),
            Self::Conditions(unmet) => f.write_str(&joined(unmet, " | ")),
        }
    }
}

impl fmt::Display for Satisfied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Authority { authority, signer, location } => {
                write!(f, "authority {authority:?} by {signer} at {location}")
            }
            Self::Attestation { name, predicate_type, signer, location } => {
                write!(f, "attestation {name:?} ({predicate_type}) signed by {signer} at {location}")
            }
        }
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NothingRequired => f.write_str("no authorities to check"),
            Self::Checked { digest, platforms, by } => {
                write!(f, "{digest}")?;
                if *platforms > 0 {
                    write!(f, " and its {platforms} platform manifests")?;
                }
                write!(f, ": {}", joined(by, "; "))
            }
            Self::LastKnownGood { ago_secs, window_secs, unchecked } => write!(
                f,
                "admitted on its last known good verification, {ago_secs} s ago (--last-known-good {window_secs} s): \
                 it could not be checked now: {unchecked}"
            ),
        }
    }
}

/// `require` as JSON: `"any"`, `"all"`, `{"atLeast": N}` or `"none"`.
fn require_json(require: Require) -> Value {
    match require {
        Require::Any => json!("any"),
        Require::All => json!("all"),
        Require::AtLeast(n) => json!({ "atLeast": n }),
        Require::None => json!("none"),
    }
}

fn attestation_json(unmet: &AttestationUnmet) -> Value {
    let mut value = json!({
        "name": unmet.name,
        "predicateType": unmet.predicate_type,
        "digest": unmet.digest.to_string(),
    });
    match &unmet.found {
        AttestationFound::Nothing { looked } => {
            value["class"] = json!("no-attestations");
            value["looked"] = json!(looked);
        }
        AttestationFound::Tried(tried) => {
            value["class"] = json!("not-satisfied");
            value["tried"] = json!(tried);
        }
    }
    value
}

impl Denial {
    /// The JSON `failure` object: `{"class": "…", …}`.
    pub fn to_json(&self) -> Value {
        match self {
            Self::NoSignatures { digest, require, total, looked } => json!({
                "class": "no-signatures",
                "digest": digest.to_string(),
                "require": require_json(*require),
                "total": total,
                "looked": looked,
            }),
            Self::RequirementNotMet(unmet) => json!({
                "class": "requirement-not-met",
                "digest": unmet.digest.to_string(),
                "require": require_json(unmet.require),
                "counted": unmet.counted,
                "total": unmet.total,
                "signers": unmet.signers,
                "satisfied": unmet.satisfied,
                "identities": unmet.identities.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "authorities": unmet.unmet,
            }),
            Self::Attestations(unmet) => json!({
                "class": "attestations-not-satisfied",
                "requirements": unmet.iter().map(attestation_json).collect::<Vec<_>>(),
            }),
            Self::Platform { platform, digest, denial } => json!({
                "class": "platform-not-satisfied",
                "platform": platform,
                "digest": digest.to_string(),
                "failure": denial.to_json(),
            }),
            Self::PlatformsUnverifiable { reason } => json!({ "class": "platforms-unverifiable", "reason": reason }),
        }
    }
}

impl Unchecked {
    /// The JSON `failure` object of a check that could not be made.
    pub fn to_json(&self) -> Value {
        let detail = self.to_string();
        match self {
            Self::Registry { .. } => json!({ "class": "registry-error", "status": self.status(), "detail": detail }),
            Self::Timeout { .. } => json!({ "class": "timeout", "detail": detail }),
            Self::TrustedRoot { authority, .. } => {
                json!({ "class": "trusted-root-error", "authority": authority, "detail": detail })
            }
            Self::PullSecrets { .. } => json!({ "class": "pull-secrets-error", "detail": detail }),
            Self::TagResolution { .. } => json!({ "class": "tag-resolution-error", "detail": detail }),
            Self::Conditions(unmet) => json!({
                "class": "condition-error",
                "requirements": unmet.iter().map(attestation_json).collect::<Vec<_>>(),
            }),
            Self::Unavailable { .. } => json!({ "class": "unavailable", "detail": detail }),
        }
    }
}
