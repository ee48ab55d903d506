//! `portcullis verify IMAGE`: the CI command. The same engine, verifier and policies as the
//! webhook decide; exit 0 allowed, 1 denied, 2 could not decide.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use super::registry_args::RegistryArgs;
use super::{EXIT_ALLOWED, EXIT_DENIED, EXIT_ERROR};
use crate::decision::{Decision, Verdict};
use crate::engine::{Engine, Settings, Unmatched};
use crate::policy::cel::CelEnv;
use crate::policy::load::PolicyDir;
use crate::policy::matcher::{Glob, Selector};
use crate::policy::{
    Attestation, Authority, AuthorityKind, DigestRule, Identity, ImagePolicy, KeyRef, Mode, Platforms, PolicySet,
    Require, Source, SubjectMatch, TransparencyLog,
};
use crate::review::Review;

const EXAMPLES: &str = "\
Examples:
  # Key-signed image (cosign sign --key cosign.key)
  portcullis verify ghcr.io/acme/app@sha256:… --key cosign.pub

  # Keyless, signed in GitHub Actions
  portcullis verify ghcr.io/acme/app:v1.2.3 \\
      --certificate-identity-regexp '^https://github.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/v.*$' \\
      --certificate-oidc-issuer https://token.actions.githubusercontent.com

  # Signed and with a signed CycloneDX SBOM attestation
  portcullis verify ghcr.io/acme/app@sha256:… --key cosign.pub --attestation cyclonedx

  # The cluster's own policies, as the webhook would decide for a Pod in namespace prod
  portcullis verify ghcr.io/acme/app@sha256:… --policy policies/ --namespace prod

Exit codes: 0 allowed, 1 denied, 2 could not decide (registry or log error, bad flags).";

/// Flags of `portcullis verify`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct VerifyArgs {
    /// The image reference to verify.
    pub image: String,
    #[command(flatten)]
    pub expect: ExpectArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// What to verify against: a key, a keyless identity, or policy files.
#[derive(Debug, Args)]
pub struct ExpectArgs {
    /// Public key (PEM) the image must be signed with.
    #[arg(long, conflicts_with_all = ["certificate_identity", "certificate_identity_regexp", "policy"])]
    pub key: Option<PathBuf>,
    /// Exact certificate identity (SAN: URI or email) of a keyless signature.
    #[arg(long, requires = "certificate_oidc_issuer", conflicts_with = "policy")]
    pub certificate_identity: Option<String>,
    /// Certificate identity as a regular expression (always anchored).
    #[arg(long, requires = "certificate_oidc_issuer", conflicts_with_all = ["certificate_identity", "policy"])]
    pub certificate_identity_regexp: Option<String>,
    /// OIDC issuer of the keyless certificate.
    #[arg(long)]
    pub certificate_oidc_issuer: Option<String>,
    /// Accept signatures without a transparency log entry (key-based only).
    #[arg(long, requires = "key")]
    pub insecure_ignore_tlog: bool,
    /// Also require a signed attestation of this predicate type (short name such as
    /// cyclonedx, spdxjson, slsaprovenance1, vuln, or a URI); repeatable. With --policy, the
    /// applying policies must require it.
    #[arg(long = "attestation", value_name = "TYPE")]
    pub attestations: Vec<String>,
    /// Verify against these policy files (a file or a directory) instead of flags.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Namespace the image is checked for (which policies match).
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Time allowed for the whole verification.
    #[arg(long, default_value = "30s", value_parser = super::serve::parse_duration)]
    pub timeout: Duration,
}

/// Run `portcullis verify`.
pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let VerifyArgs { image, expect, registry } = args;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let verifier = registry.verifier()?;
    let timeout = expect.timeout;
    let namespace = expect.namespace.clone();
    let set = policy_set(expect)?;
    if set.images.is_empty() {
        bail!("no ImagePolicy to verify against: pass --key, --certificate-identity[-regexp] or --policy");
    }
    let settings = Settings { own_namespace: None, unmatched: Unmatched::Deny };
    let engine = Engine::fixed(set, Arc::new(verifier), settings);
    let review = Review::for_image(&image, &namespace);
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
    let could_not_decide = !decision.allowed
        && decision
            .findings
            .iter()
            .filter(|f| f.mode == Mode::Enforce && f.is_problem())
            .all(|f| matches!(f.verdict, Verdict::Error(_)));
    match (decision.allowed, could_not_decide) {
        (true, _) => {
            println!("allowed: {image}");
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

fn policy_set(expect: ExpectArgs) -> anyhow::Result<PolicySet> {
    let ExpectArgs {
        key,
        certificate_identity,
        certificate_identity_regexp,
        certificate_oidc_issuer,
        insecure_ignore_tlog,
        attestations,
        policy,
        namespace: _,
        timeout: _,
    } = expect;
    let mut required = Vec::new();
    for name in &attestations {
        let uri = crate::policy::predicate_type_uri(name)
            .with_context(|| format!("--attestation {name:?} is neither a known short name nor a URI"))?;
        required.push(Attestation {
            name: name.clone(),
            predicate_type: uri,
            authorities: Vec::new(),
            conditions: Vec::new(),
        });
    }
    if let Some(path) = policy {
        let set = if path.is_dir() {
            PolicyDir::new(&path).load().map(|(set, _)| set)
        } else {
            crate::policy::load::load_file(&path, &CelEnv::new())
        };
        let set = set.with_context(|| format!("cannot load policies from {}", path.display()))?;
        for attestation in &required {
            let covered = set
                .images
                .iter()
                .any(|p| p.attestations.iter().any(|a| a.predicate_type == attestation.predicate_type));
            if !covered {
                bail!(
                    "--attestation {}: no policy in {} requires a {} attestation",
                    attestation.name,
                    path.display(),
                    attestation.predicate_type
                );
            }
        }
        return Ok(set);
    }
    let kind = match (key, certificate_identity, certificate_identity_regexp) {
        (Some(path), None, None) => AuthorityKind::Key(KeyRef::File(path)),
        (None, identity, regexp) if identity.is_some() || regexp.is_some() => {
            let issuer = certificate_oidc_issuer.context("--certificate-oidc-issuer is required for keyless")?;
            let subject = match (identity, regexp) {
                (Some(exact), None) => SubjectMatch::Exact(exact),
                (None, Some(re)) => SubjectMatch::RegExp(
                    crate::policy::compile::anchored(&re)
                        .with_context(|| format!("--certificate-identity-regexp {re:?}"))?,
                ),
                _ => bail!("use one of --certificate-identity and --certificate-identity-regexp"),
            };
            AuthorityKind::Keyless(Identity { issuer, subject, github: None, issuer_regexp: None })
        }
        _ => return Ok(PolicySet::default()),
    };
    let authority = Authority {
        name: "cli".to_owned(),
        kind,
        transparency_log: if insecure_ignore_tlog { TransparencyLog::Skip } else { TransparencyLog::Required },
        trusted_root: None,
        files: Default::default(),
    };
    let policy = ImagePolicy {
        name: "command-line".to_owned(),
        source: Source { file: "(flags)".to_owned(), line: 0 },
        fingerprint: 0,
        mode: Mode::Enforce,
        selector: Selector::default(),
        images: vec![Glob::new("**")?],
        exclude_images: Vec::new(),
        allowed_images: None,
        digest: DigestRule::AllowTags,
        platforms: Platforms::Index,
        require: Require::Any,
        authorities: vec![authority],
        attestations: required,
    };
    let mut set = PolicySet { images: vec![policy], resources: Vec::new() };
    // The key is read now, like a policy's key file, never while verifying.
    crate::policy::load::read_authority_files(&mut set).context("--key")?;
    Ok(set)
}
