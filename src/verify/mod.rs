//! Signature and attestation verification, behind the [`Verifier`] trait.
//!
//! The engine asks a `Verifier` whether an image satisfies a policy's `authorities` and
//! `attestations`. A failed check is an [`Outcome`], never an `Err`: `Failed` when a signature is
//! missing or wrong, `Error` when it could not be checked (registry or log trouble).

pub mod bundle;
pub mod dsse;
pub mod identity;
pub mod keys;
pub mod trust;

use std::future::Future;
use std::pin::Pin;

pub mod attest;
pub mod cache;
pub mod cluster;
pub mod cosign;
pub mod discovery;
pub mod image;
pub mod judge;
pub mod key_secrets;
pub mod observe;
pub mod platforms;
pub mod pull_secrets;
pub mod registry;
pub mod signers;
pub mod verdict;

use crate::image::ImageRef;
use crate::policy::ImagePolicy;

/// A boxed, sendable future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to verify: one image against one policy's authorities and attestations.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    pub image: &'a ImageRef,
    pub policy: &'a ImagePolicy,
    /// Where the workload's imagePullSecrets are (None outside admission).
    pub pull: Option<&'a pull_secrets::PullContext>,
}

/// The result of verifying one image against one policy: typed verdicts (see [`verdict`]),
/// rendered to messages by their `Display` and `to_json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The requirements are met; `detail` says by what (authority, signer, location).
    Verified { detail: verdict::Verification },
    /// Checked, and the requirements are not met: why, per authority and location.
    Failed { reason: verdict::Denial },
    /// Could not be checked (registry error with status, timeout, condition error).
    Error { reason: verdict::Unchecked },
}

/// Checks signatures and attestations. Shared by the webhook, `portcullis verify` and tests.
pub trait Verifier: Send + Sync {
    fn verify<'a>(&'a self, request: VerifyRequest<'a>) -> BoxFuture<'a, Outcome>;

    /// The version of the cluster state `policy`'s verification depends on (keys from
    /// Secrets), part of the verification cache key: when it changes, old results are not
    /// reused. 0 when nothing outside the policy is used.
    fn cache_salt(&self, policy: &ImagePolicy) -> u64 {
        let _ = policy;
        0
    }

    /// The digest a tag points at now (for `digest: pin`, and before verifying a tag); Err says
    /// why it could not be had, typed like any other check that could not be made
    /// ([`verdict::Unchecked::Registry`] with the registry's status when the registry failed).
    fn resolve<'a>(
        &'a self,
        image: &'a ImageRef,
        pull: Option<&'a pull_secrets::PullContext>,
    ) -> BoxFuture<'a, Result<crate::image::Digest, verdict::Unchecked>> {
        let _ = (image, pull);
        let detail = "this verifier cannot resolve tags to digests".to_owned();
        Box::pin(async { Err(verdict::Unchecked::TagResolution { detail }) })
    }
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
        Box::pin(async move { Outcome::Error { reason: verdict::Unchecked::Unavailable { detail: reason } } })
    }
}
