//! Typed verdicts: what the judgement of a policy's requirements against the evidence found
//! for a digest concluded, per authority and artifact. Messages are rendered from these types
//! once, in [`render`] (webhook message, CLI text and the CLI's JSON `failure` object).
//!
//! The verification of one artifact (signature or attestation) against one authority runs in
//! numbered steps; a failure names the step it came from:
//!
//! 1. **Discover**: the artifacts found at the digest's tags and referrers ([`Denial::NoSignatures`],
//!    [`AttestationFound::Nothing`]). Registry trouble is [`Unchecked::Registry`], never "unsigned".
//! 2. **Parse**: the envelope, payload and bundle can be read ([`Failure::Malformed`],
//!    [`Failure::UnsupportedFormat`]).
//! 3. **Bind**: the signed payload is about this digest and is of the expected kind
//!    ([`Failure::DigestMismatch`], [`Failure::PayloadTypeMismatch`], [`Failure::PredicateTypeMismatch`]).
//! 4. **Material**: the authority's key, or a certificate for a keyless authority
//!    ([`Failure::KeyUnavailable`], [`Failure::NoCertificate`], [`Failure::MaterialMismatch`],
//!    [`Failure::TrustRootUnusable`]).
//! 5. **Log**: a transparency log entry where one is required, verified ([`Failure::NoLogEntry`],
//!    [`Failure::LogEntryInvalid`]).
//! 6. **Certificate and time**: the chain to the trusted root, valid at the verified signing time
//!    ([`Failure::CertificateRejected`], [`Failure::CertificateNotValidAt`], [`Failure::TimestampInvalid`]).
//! 7. **Signature**: the signature over the payload ([`Failure::WrongKey`], [`Failure::BadSignature`],
//!    [`Failure::ArtifactMismatch`]).
//! 8. **Identity**: the certificate's identity is one the authority accepts ([`Failure::IdentityMismatch`]).
//! 9. **Conditions** (attestations): every condition holds ([`Failure::ConditionFailed`]; a condition
//!    that cannot be evaluated, [`Failure::ConditionError`], makes the requirement unchecked).
//! 10. **Count**: the authorities satisfied by distinct signers meet `require`
//!     ([`Denial::RequirementNotMet`]).

use serde::Serialize;

use super::bundle::BundleError;
use super::discovery::Location;
use super::signers::SignerIdentity;
use crate::image::Digest;
use crate::policy::Require;

pub mod render;
#[cfg(test)]
mod tests;

/// What carried a signature or attestation (for messages that depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Carrier {
    /// A legacy simple-signing layer checked against a key authority.
    KeySignature,
    /// A legacy simple-signing layer checked against a keyless authority.
    KeylessSignature,
    /// A legacy DSSE attestation layer.
    Attestation,
    /// A Sigstore bundle.
    Bundle,
}

/// Why one artifact did not satisfy one authority (a failed check: the evidence was read and
/// judged). Serialized as `{"class": "<kebab-case variant>", …fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "class", rename_all = "kebab-case")]
pub enum Failure {
    /// Step 2: the artifact cannot be read as what it claims to be.
    Malformed { what: String },
    /// Step 2: a format, version, log entry kind, key type or digest algorithm this build
    /// does not verify.
    UnsupportedFormat { what: String },
    /// Step 3: the payload signs another digest (`found`: the one it names, if any);
    /// `statement`: an in-toto statement (else a simple-signing payload).
    DigestMismatch { expected: String, found: Option<String>, statement: bool },
    /// Step 3: a simple-signing payload of another `critical.type`.
    PayloadTypeMismatch { expected: String, found: String },
    /// Step 3 (signatures) or 9 (attestations): a statement of another predicateType.
    PredicateTypeMismatch { expected: String, found: String },
    /// Step 4: the authority's public key could not be had.
    KeyUnavailable { why: String },
    /// Step 4: a keyless authority, and the artifact carries no certificate.
    NoCertificate { carrier: Carrier },
    /// Step 4: the verification material does not fit the authority (a certificate for a key
    /// authority, a root certificate in the chain…).
    MaterialMismatch { detail: String },
    /// Step 4: the authority's trusted root cannot be used.
    TrustRootUnusable { detail: String },
    /// Step 5: a transparency log entry is required and there is none.
    NoLogEntry { carrier: Carrier },
    /// Step 5: the log entry does not verify (SET, inclusion proof, entry bound to the envelope).
    LogEntryInvalid { detail: String },
    /// Step 6: the certificate does not chain to the trusted root (or its SCT is invalid).
    CertificateRejected { detail: String },
    /// Step 6: the certificate was not valid at the verified signing time.
    CertificateNotValidAt { detail: String },
    /// Step 6: a signed timestamp does not verify.
    TimestampInvalid { detail: String },
    /// Step 7: the signature does not verify with the authority's key (another key signed, or
    /// the payload was changed).
    WrongKey { detail: String },
    /// Step 7: the signature does not verify with the certificate's key (changed after signing).
    BadSignature { detail: String },
    /// Step 7: the signed artifact is not the one given.
    ArtifactMismatch { detail: String },
    /// Step 8: the certificate names another identity than the authority accepts.
    IdentityMismatch { expected: String, found: String },
    /// Step 9: a condition of the attestation requirement is false.
    ConditionFailed { message: String },
    /// Step 9: a condition could not be evaluated: the requirement could not be checked.
    ConditionError { message: String },
}

impl Failure {
    /// The failure class of a bundle that did not verify. `keyless`: whether the authority
    /// is keyless (a bad signature is then a changed payload, not another key).
    pub fn from_bundle(error: BundleError, keyless: bool) -> Self {
        let detail = error.to_string();
        #[allow(unreachable_patterns)] // BundleError may gain variants; they fall to the catch-all.
        match error {
            BundleError::IdentityMismatch { expected, found } => Self::IdentityMismatch { expected, found },
            BundleError::Signature(_) if keyless => Self::BadSignature { detail },
            BundleError::Signature(_) => Self::WrongKey { detail },
            BundleError::Key(_) => Self::KeyUnavailable { why: detail },
            BundleError::Certificate(_) => Self::CertificateRejected { detail },
            BundleError::CertificateNotValidAt(_) => Self::CertificateNotValidAt { detail },
            BundleError::NoLogEntry => Self::NoLogEntry { carrier: Carrier::Bundle },
            BundleError::TransparencyLog(_) => Self::LogEntryInvalid { detail },
            BundleError::Timestamp(_) => Self::TimestampInvalid { detail },
            BundleError::NoVerifiedTimestamp(_) | BundleError::TimestampAuthorityNotTrusted(_) => {
                Self::TimestampInvalid { detail }
            }
            BundleError::RootInChain { .. } => Self::CertificateRejected { detail },
            BundleError::ArtifactMismatch(_) => Self::ArtifactMismatch { detail },
            BundleError::Material(_) => Self::MaterialMismatch { detail },
            BundleError::TrustRoot(_) => Self::TrustRootUnusable { detail },
            BundleError::Malformed(_) => Self::Malformed { what: detail },
            BundleError::UnsupportedVersion(_)
            | BundleError::Unsupported(_)
            | BundleError::UnsupportedEntry { .. }
            | BundleError::ArtifactRequired(_) => Self::UnsupportedFormat { what: detail },
            _ => Self::UnsupportedFormat { what: detail },
        }
    }

    /// The class name (as in the JSON `failure.class`).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::UnsupportedFormat { .. } => "unsupported-format",
            Self::DigestMismatch { .. } => "digest-mismatch",
            Self::PayloadTypeMismatch { .. } => "payload-type-mismatch",
            Self::PredicateTypeMismatch { .. } => "predicate-type-mismatch",
            Self::KeyUnavailable { .. } => "key-unavailable",
            Self::NoCertificate { .. } => "no-certificate",
            Self::MaterialMismatch { .. } => "material-mismatch",
            Self::TrustRootUnusable { .. } => "trust-root-unusable",
            Self::NoLogEntry { .. } => "no-log-entry",
            Self::LogEntryInvalid { .. } => "log-entry-invalid",
            Self::CertificateRejected { .. } => "certificate-rejected",
            Self::CertificateNotValidAt { .. } => "certificate-not-valid-at",
            Self::TimestampInvalid { .. } => "timestamp-invalid",
            Self::WrongKey { .. } => "wrong-key",
            Self::BadSignature { .. } => "bad-signature",
            Self::ArtifactMismatch { .. } => "artifact-mismatch",
            Self::IdentityMismatch { .. } => "identity-mismatch",
            Self::ConditionFailed { .. } => "condition-failed",
            Self::ConditionError { .. } => "condition-error",
        }
    }

    /// An artifact that cannot be read.
    pub fn malformed(what: impl Into<String>) -> Self {
        Self::Malformed { what: what.into() }
    }

    /// A format this build does not verify.
    pub fn unsupported(what: impl Into<String>) -> Self {
        Self::UnsupportedFormat { what: what.into() }
    }
}

/// One artifact that did not satisfy one authority, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tried {
    /// Where the artifact was found; None when the authority's key was missing before any
    /// artifact was looked at (rendered `key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The authority judged (named in attestation messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(flatten)]
    pub failure: Failure,
}

/// An authority the signatures did not satisfy, and why, per artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorityUnmet {
    pub authority: String,
    /// Empty: nothing to check (no signature artifact at all).
    pub tried: Vec<Tried>,
}

/// What was found for one attestation requirement that was not met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestationFound {
    /// Step 1: no attestation for the digest at the places looked.
    Nothing { looked: Vec<String> },
    /// Attestations were found; none met the requirement.
    Tried(Vec<Tried>),
}

/// An attestation requirement that is not met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationUnmet {
    pub name: String,
    pub predicate_type: String,
    pub digest: Digest,
    pub found: AttestationFound,
}

impl AttestationUnmet {
    /// Whether a condition could not be evaluated (the requirement is then unchecked).
    pub fn could_not_check(&self) -> bool {
        matches!(&self.found, AttestationFound::Tried(tried)
            if tried.iter().any(|t| matches!(t.failure, Failure::ConditionError { .. })))
    }
}

/// Why an image does not satisfy a policy: the payload of [`super::Outcome::Failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Step 1: no signature at all for the digest.
    NoSignatures { digest: Digest, require: Require, total: usize, looked: Vec<String> },
    /// Step 10: signatures were found, too few authorities are satisfied by distinct signers.
    RequirementNotMet(Box<RequirementNotMet>),
    /// Attestation requirements that are not met.
    Attestations(Vec<AttestationUnmet>),
    /// A platform manifest of an index (`platforms: every-platform`) is not satisfied.
    Platform { platform: String, digest: Digest, denial: Box<Denial> },
    /// The index cannot be verified platform by platform (too many, nested…).
    PlatformsUnverifiable { reason: String },
}

/// Signatures found that do not meet `require`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementNotMet {
    pub digest: Digest,
    pub require: Require,
    /// Authorities counted (each satisfied by a signer no other counted authority used).
    pub counted: usize,
    pub total: usize,
    /// Distinct signers that satisfied any authority.
    pub signers: usize,
    /// The authorities some signature satisfied.
    pub satisfied: Vec<String>,
    /// The identities that satisfied them (sorted, distinct).
    pub identities: Vec<SignerIdentity>,
    /// The authorities no signature satisfied, and why.
    pub unmet: Vec<AuthorityUnmet>,
}

/// Why an image could not be checked: the payload of [`super::Outcome::Error`]. Never a
/// statement that the image is unsigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unchecked {
    /// The registry answered with an error or could not be reached.
    Registry { error: super::registry::RegistryError },
    /// The verification did not finish before the review deadline; `slow` names the call that
    /// was still waiting (registry request, slot, another review's verification), when known.
    Timeout { slow: Option<String> },
    /// An authority's trusted root could not be used.
    TrustedRoot { authority: String, detail: String },
    /// The workload's imagePullSecrets could not be read.
    PullSecrets { detail: String },
    /// The tag could not be resolved to a digest.
    TagResolution { detail: String },
    /// An attestation condition could not be evaluated.
    Conditions(Vec<AttestationUnmet>),
    /// This verifier cannot check signatures at all (a build or mode without registry access).
    Unavailable { detail: String },
}

impl Unchecked {
    /// Whether this is "could not reach" (registry, API server, deadline), which
    /// `--last-known-good` may answer; never a trusted root that does not load or a condition
    /// that cannot be evaluated, which a retry later would not change.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Registry { .. } | Self::Timeout { .. } | Self::PullSecrets { .. } | Self::TagResolution { .. }
        )
    }

    /// The HTTP status of a registry error, if it had one (an authentication failure has the
    /// registry's 401 or 403).
    pub fn status(&self) -> Option<u16> {
        use super::registry::RegistryError::{Auth, Status};
        match self {
            Self::Registry { error: Status { status, .. } | Auth { status, .. } } => Some(*status),
            _ => None,
        }
    }
}

/// What satisfied one requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Satisfied {
    /// An authority, by this signer, with the artifact found there.
    Authority { authority: String, signer: SignerIdentity, location: Location },
    /// An attestation requirement, by a statement signed by `signer`, found there.
    Attestation { name: String, predicate_type: String, signer: String, location: Location },
}

/// Why an image satisfies a policy: the payload of [`super::Outcome::Verified`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The policy has no authorities: nothing to verify.
    NothingRequired,
    /// The digest (and `platforms` platform manifests) met every requirement, by these.
    Checked { digest: Digest, platforms: usize, by: Vec<Satisfied> },
    /// Not checked now (`unchecked`), admitted on the digest's last good verification under the
    /// same policy `ago_secs` ago, within the `--last-known-good` window.
    LastKnownGood { ago_secs: u64, window_secs: u64, unchecked: Box<Unchecked> },
}
