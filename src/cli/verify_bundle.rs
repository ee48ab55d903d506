//! `portcullis verify-bundle`: verify one Sigstore bundle, the way the webhook does.
//!
//! Follows the `verify-bundle` command of the sigstore-conformance CLI protocol: exit 0 when the
//! bundle verifies, 1 when it does not, 2 when the inputs cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{EXIT_ALLOWED, EXIT_DENIED};
use crate::policy::{Identity, SubjectMatch, TransparencyLog};
use crate::verify::bundle::{Artifact, Content, Signer, verify_bundle};
use crate::verify::dsse::decode_sha256;
use crate::verify::trust::TrustRoot;

const EXAMPLES: &str = "\
Examples:
  # Keyless: the certificate identity and its OIDC issuer
  portcullis verify-bundle --bundle app.sigstore.json \\
      --certificate-identity https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1 \\
      --certificate-oidc-issuer https://token.actions.githubusercontent.com app.tar.gz

  # By key, against a digest, with a private instance's trusted root
  portcullis verify-bundle --bundle app.sigstore.json --key cosign.pub \\
      --trusted-root trusted_root.json sha256:0123…";

/// Flags of `portcullis verify-bundle`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct VerifyBundleArgs {
    /// The Sigstore bundle (.sigstore.json).
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,
    /// The certificate's subject (SAN URI or email), matched exactly.
    #[arg(long, value_name = "ID", requires = "certificate_oidc_issuer", conflicts_with = "key")]
    pub certificate_identity: Option<String>,
    /// The OIDC issuer recorded in the certificate.
    #[arg(long, value_name = "URL", requires = "certificate_identity")]
    pub certificate_oidc_issuer: Option<String>,
    /// A PEM public key, for bundles signed by key.
    #[arg(long, value_name = "PEM_FILE", required_unless_present = "certificate_identity")]
    pub key: Option<PathBuf>,
    /// A trusted_root.json, or `github` (built in); default: the embedded Sigstore public-good root.
    #[arg(long, value_name = "FILE", conflicts_with = "staging")]
    pub trusted_root: Option<PathBuf>,
    /// Use the embedded Sigstore staging root instead of the public-good one.
    #[arg(long)]
    pub staging: bool,
    /// No transparency log entry needed, but a verified RFC 3161 timestamp from a timestamp
    /// authority of the trusted root (GitHub's artifact attestations: `--trusted-root github`).
    #[arg(long)]
    pub use_signed_timestamps: bool,
    /// The artifact: a file path, or `sha256:<hex>`.
    #[arg(value_name = "FILE_OR_DIGEST")]
    pub artifact: String,
}

/// Verify and report: "OK …" on stdout, or the reason on stderr.
pub fn run(args: VerifyBundleArgs) -> anyhow::Result<ExitCode> {
    let bundle =
        std::fs::read(&args.bundle).with_context(|| format!("cannot read bundle {}", args.bundle.display()))?;
    let trust = match (&args.trusted_root, args.staging) {
        (Some(path), _) => TrustRoot::named_or_file(path)?,
        (None, true) => TrustRoot::staging()?,
        (None, false) => TrustRoot::production()?,
    };
    let artifact_bytes;
    let artifact = match args.artifact.strip_prefix("sha256:") {
        Some(hex) => Artifact::Sha256(
            decode_sha256(hex).with_context(|| format!("{:?} is not sha256:<64 hex digits>", args.artifact))?,
        ),
        None => {
            artifact_bytes =
                std::fs::read(&args.artifact).with_context(|| format!("cannot read artifact {}", args.artifact))?;
            Artifact::Bytes(&artifact_bytes)
        }
    };
    let pem;
    let identity;
    let signer = match (&args.key, &args.certificate_identity, &args.certificate_oidc_issuer) {
        (Some(path), _, _) => {
            pem = std::fs::read_to_string(path).with_context(|| format!("cannot read key {}", path.display()))?;
            Signer::Key { pem: &pem }
        }
        (None, Some(subject), Some(issuer)) => {
            identity = Identity {
                issuer: issuer.clone(),
                subject: SubjectMatch::Exact(subject.clone()),
                github: None,
                issuer_regexp: None,
                claims: Vec::new(),
            };
            Signer::Keyless(&identity)
        }
        _ => anyhow::bail!("give --key, or --certificate-identity with --certificate-oidc-issuer"),
    };
    let tlog = if args.use_signed_timestamps { TransparencyLog::Timestamp } else { TransparencyLog::Required };
    match verify_bundle(&bundle, Some(artifact), &signer, tlog, &trust) {
        Ok(verified) => {
            let what = match &verified.content {
                Content::MessageSignature => "message signature".to_owned(),
                Content::Dsse { payload_type, .. } => format!("DSSE envelope ({payload_type})"),
            };
            let when = verified.signed_at.map(|t| format!(", signed at unix time {t}")).unwrap_or_default();
            println!("OK: {what} verified, signed by {}{when}", verified.signer);
            Ok(ExitCode::from(EXIT_ALLOWED))
        }
        Err(error) => {
            eprintln!("verification failed: {error}");
            Ok(ExitCode::from(EXIT_DENIED))
        }
    }
}
