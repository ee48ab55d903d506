//! Signature and attestation verification, behind the [`Verifier`] trait.
//!
//! The engine asks a `Verifier` whether an image satisfies a policy's `authorities` and
//! `attestations`. A failed check is an [`Outcome`], never an `Err`: `Failed` when a signature is
//! missing or wrong, `Error` when it could not be checked (registry or log trouble).

use std::future::Future;
use std::pin::Pin;

use crate::image::ImageRef;
use crate::policy::ImagePolicy;

/// A boxed, sendable future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to verify: one image against one policy's authorities and attestations.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    pub image: &'a ImageRef,
    pub policy: &'a ImagePolicy,
}

/// The result of verifying one image against one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The requirements are met; `detail` says by what (authority, location).
    Verified { detail: String },
    /// Checked, and the requirements are not met: why, per authority and location.
    Failed { reason: String },
    /// Could not be checked (registry error with status, log error, timeout).
    Error { reason: String },
}

/// Checks signatures and attestations. Shared by the webhook, `portcullis verify` and tests.
pub trait Verifier: Send + Sync {
    fn verify<'a>(&'a self, request: VerifyRequest<'a>) -> BoxFuture<'a, Outcome>;
}

/// The verifier of a build without signature support: every request is answered with an
/// error saying so, which `enforce` policies turn into a denial (fail-closed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unsupported;

impl Verifier for Unsupported {
    fn verify<'a>(&'a self, request: VerifyRequest<'a>) -> BoxFuture<'a, Outcome> {
        let what = match (request.policy.authorities.is_empty(), request.policy.attestations.is_empty()) {
            (false, true) => "signature",
            (true, false) => "attestation",
            _ => "signature and attestation",
        };
        let reason = format!(
            "{what} requirements are not yet verifiable: this portcullis build does not verify \
             cosign signatures yet"
        );
        Box::pin(async move { Outcome::Error { reason } })
    }
}
