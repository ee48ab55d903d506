//! `portcullis policy sign [DIR]`: the detached signature `serve|verify
//! --require-signed-policies` checks (format in [`crate::policy::signed`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{EXIT_ALLOWED, EXIT_ERROR};
use crate::policy::load::PolicyDir;
use crate::policy::signed::{self, MANIFEST_FILE, SIGNATURE_FILE};

/// Flags of `portcullis policy sign`.
#[derive(Debug, Args)]
#[command(after_help = "Check a signature with cosign too:
  cosign verify-blob --key cosign.pub --signature DIR/policyset.sig --insecure-ignore-tlog DIR/policyset.manifest
Sign with a cosign key (encrypted) or a KMS instead:
  portcullis policy sign --manifest-only DIR
  cosign sign-blob --key cosign.key --tlog-upload=false --output-signature DIR/policyset.sig DIR/policyset.manifest")]
pub struct SignArgs {
    /// The policy directory (as `serve --policies`).
    #[arg(default_value = "policies")]
    pub dir: PathBuf,
    /// The private key (PEM, ECDSA P-256: PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
    #[arg(long, required_unless_present = "manifest_only")]
    pub key: Option<PathBuf>,
    /// Write DIR/policyset.manifest only, to sign it with `cosign sign-blob`.
    #[arg(long, conflicts_with = "key")]
    pub manifest_only: bool,
}

/// Run `portcullis policy sign`.
pub fn run(args: &SignArgs) -> anyhow::Result<ExitCode> {
    match sign(args) {
        Ok(()) => Ok(ExitCode::from(EXIT_ALLOWED)),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

fn sign(args: &SignArgs) -> anyhow::Result<()> {
    let dir = PolicyDir::new(&args.dir);
    // Only a set that loads is worth signing.
    dir.load().with_context(|| format!("the policies in {} do not load; fix them first", args.dir.display()))?;
    let private = match &args.key {
        Some(path) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("cannot read the key {}", path.display()))?)
        }
        None => None,
    };
    let scan = dir.scan(&[])?;
    let manifest = signed::manifest(&args.dir, scan.files())?;
    let signature = private.as_deref().map(|pem| signed::sign(pem, manifest.as_bytes())).transpose()?;
    let manifest_path = args.dir.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, &manifest).with_context(|| format!("cannot write {}", manifest_path.display()))?;
    let files = manifest.lines().count() - 1;
    let Some(signature) = signature else {
        println!("wrote {} ({files} files); sign it with cosign sign-blob", manifest_path.display());
        return Ok(());
    };
    let signature_path = args.dir.join(SIGNATURE_FILE);
    std::fs::write(&signature_path, signature).with_context(|| format!("cannot write {}", signature_path.display()))?;
    println!(
        "signed {files} files of {}: {}, {}",
        args.dir.display(),
        manifest_path.display(),
        signature_path.display()
    );
    Ok(())
}
