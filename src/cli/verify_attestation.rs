//! `portcullis verify-attestation IMAGE --type T`: the CI check of an attestation alone, with
//! cosign's flags. Unlike `verify --attestation`, no image signature is required: images that are
//! attested but not signed (`cosign attest` only) are verified. The same engine and verifier as
//! the webhook decide; exit 0 verified, 1 denied, 2 could not decide.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use super::registry_args::RegistryArgs;
use super::verify::CertificateClaimArgs;
use super::{EXIT_ALLOWED, EXIT_DENIED, EXIT_ERROR};
use crate::decision::{Decision, Verdict};
use crate::engine::{Engine, Settings, Unmatched};
use crate::policy::cel::CelEnv;
use crate::policy::{Attestation, AuthorityKind, Condition, KeyRef, PolicySet, Require, TransparencyLog};
use crate::review::Review;

const EXAMPLES: &str = "\
Examples:
  # A CycloneDX SBOM attested by key (cosign attest --key cosign.key --type cyclonedx)
  portcullis verify-attestation ghcr.io/acme/app@sha256:… --key cosign.pub --type cyclonedx

  # SLSA provenance attested keyless in GitHub Actions, with a condition on the predicate
  portcullis verify-attestation ghcr.io/acme/app:v1.2.3 --type slsaprovenance1 \\
      --certificate-identity-regexp '^https://github.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/v.*$' \\
      --certificate-oidc-issuer https://token.actions.githubusercontent.com \\
      --condition \"predicate.buildDefinition.buildType.startsWith('https://actions.github.io/')\"

  # A GitHub artifact attestation of a private repository (gh attestation verify --owner acme
  # --signer-workflow acme/app/.github/workflows/release.yml): GitHub's instance, timestamped
  portcullis verify-attestation ghcr.io/acme/app@sha256:… --type slsaprovenance1 \\
      --certificate-identity-regexp '^https://github\\.com/acme/app/\\.github/workflows/release\\.yml@.*$' \\
      --certificate-oidc-issuer https://token.actions.githubusercontent.com \\
      --trusted-root github --use-signed-timestamps

Conditions are CEL over `predicate`, `statement`, `image` and `sbom` (as in policies); every one
must hold for ONE attestation.
Exit codes: 0 verified, 1 denied, 2 could not decide (registry or log error, bad flags).";

/// Flags of `portcullis verify-attestation` (cosign's names).
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct VerifyAttestationArgs {
    /// The image reference.
    pub image: String,
    /// The predicate type: a short name (cyclonedx, spdxjson, slsaprovenance, slsaprovenance1,
    /// vuln, custom, …) or a URI.
    #[arg(long = "type", value_name = "TYPE")]
    pub predicate_type: String,
    /// Public key (PEM) the attestation must be signed with.
    #[arg(long, conflicts_with_all = ["certificate_identity", "certificate_identity_regexp"])]
    pub key: Option<PathBuf>,
    /// Exact certificate identity (SAN: URI or email) of a keyless attestation.
    #[arg(long)]
    pub certificate_identity: Option<String>,
    /// Certificate identity as a regular expression (always anchored).
    #[arg(long, conflicts_with = "certificate_identity")]
    pub certificate_identity_regexp: Option<String>,
    /// OIDC issuer of the keyless certificate.
    #[arg(long, conflicts_with = "certificate_oidc_issuer_regexp")]
    pub certificate_oidc_issuer: Option<String>,
    /// OIDC issuer as a regular expression (always anchored).
    #[arg(long)]
    pub certificate_oidc_issuer_regexp: Option<String>,
    #[command(flatten)]
    pub claims: CertificateClaimArgs,
    /// Accept attestations without a transparency log entry (key-based only).
    #[arg(long, requires = "key")]
    pub insecure_ignore_tlog: bool,
    /// No transparency log entry needed, but a verified RFC 3161 timestamp from a timestamp
    /// authority of the trusted root: GitHub's artifact attestations for private repositories,
    /// with `--trusted-root github`.
    #[arg(long, conflicts_with = "insecure_ignore_tlog")]
    pub use_signed_timestamps: bool,
    /// A CEL condition the attestation must meet (repeatable; all must hold for one attestation).
    #[arg(long = "condition", value_name = "EXPR")]
    pub conditions: Vec<String>,
    /// Time allowed for the whole verification.
    #[arg(long, default_value = "30s", value_parser = super::serve::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Run `portcullis verify-attestation`.
pub fn run(args: VerifyAttestationArgs) -> anyhow::Result<ExitCode> {
    let set = policy_set(&args)?;
    let VerifyAttestationArgs { image, timeout, registry, .. } = args;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let verifier = registry.verifier()?;
    let settings = Settings { own_namespace: None, unmatched: Unmatched::Deny };
    let engine = Engine::fixed(set, Arc::new(verifier), settings);
    let review = Review::for_image(&image, "default");
    let decision = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + timeout;
        engine.review(&review, deadline).await
    });
    Ok(ExitCode::from(report(&image, &decision)))
}

fn report(image: &str, decision: &Decision) -> u8 {
    for finding in &decision.findings {
        let mark = match finding.verdict {
            Verdict::Pass => "ok  ",
            Verdict::Fail(_) => "FAIL",
            Verdict::Error(_) => "ERR ",
        };
        println!("{mark} {finding}");
    }
    let errors_only =
        decision.findings.iter().filter(|f| f.is_problem()).all(|f| matches!(f.verdict, Verdict::Error(_)));
    match (decision.allowed, errors_only) {
        (true, _) => {
            println!("verified: {image}");
            EXIT_ALLOWED
        }
        (false, false) => {
            println!("denied: {image}");
            EXIT_DENIED
        }
        (false, true) => {
            println!("could not decide: {image}");
            EXIT_ERROR
        }
    }
}

/// One enforcing policy over every image: no image signature required (`require: none`), one
/// attestation of `--type`, signed by the one authority the flags describe, with the conditions.
fn policy_set(args: &VerifyAttestationArgs) -> anyhow::Result<PolicySet> {
    let predicate_type = crate::policy::predicate_type_uri(&args.predicate_type)
        .with_context(|| format!("--type {:?} is neither a known short name nor a URI", args.predicate_type))?;
    let env = CelEnv::new();
    let mut conditions = Vec::new();
    for source in &args.conditions {
        let expression = env.compile(source).with_context(|| format!("--condition {source:?}"))?;
        conditions.push(Condition { expression, message: None });
    }
    let kind = match (&args.key, &args.certificate_identity, &args.certificate_identity_regexp) {
        (Some(path), None, None) => AuthorityKind::Key(KeyRef::File(path.clone())),
        (None, identity, regexp) if identity.is_some() || regexp.is_some() || args.claims.given() => {
            let (issuer, issuer_regexp) = match (&args.certificate_oidc_issuer, &args.certificate_oidc_issuer_regexp) {
                (Some(exact), None) => (exact.clone(), None),
                (None, Some(re)) => {
                    let compiled = crate::policy::compile::anchored(re)
                        .with_context(|| format!("--certificate-oidc-issuer-regexp {re:?}"))?;
                    (re.clone(), Some(compiled))
                }
                _ => bail!("keyless needs one of --certificate-oidc-issuer and --certificate-oidc-issuer-regexp"),
            };
            let subject = if identity.is_some() || regexp.is_some() {
                Some(super::verify::subject_from_flags(identity.clone(), regexp.clone())?)
            } else {
                None
            };
            AuthorityKind::Keyless(args.claims.identity(issuer, issuer_regexp, subject)?)
        }
        _ => bail!(
            "give --key, or --certificate-identity[-regexp] (or certificate claims) with --certificate-oidc-issuer[-regexp]"
        ),
    };
    let attestation =
        Attestation { name: args.predicate_type.clone(), predicate_type, authorities: Vec::new(), conditions };
    let tlog = match (args.insecure_ignore_tlog, args.use_signed_timestamps) {
        (true, _) => TransparencyLog::Skip,
        (false, true) => TransparencyLog::Timestamp,
        (false, false) => TransparencyLog::Required,
    };
    super::verify::command_line_policies(kind, tlog, Require::None, vec![attestation])
}
