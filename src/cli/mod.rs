//! The command line: one file per subcommand. Only this module uses `anyhow`.
//!
//! Exit codes for commands that decide: 0 allowed, 1 denied, 2 error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod certs;
pub mod decrypt;
pub mod decrypt_generator;
pub mod decrypt_tree;
pub mod policy;
pub mod policy_sign;
pub mod policy_test;
pub mod registry_args;
pub mod serve;
pub mod verify;
pub mod verify_attestation;
pub mod verify_bundle;

/// Exit code: the command succeeded / the object or image is allowed.
pub const EXIT_ALLOWED: u8 = 0;
/// Exit code: the policy denied the object or image.
pub const EXIT_DENIED: u8 = 1;
/// Exit code: the command could not decide (bad input, I/O, configuration).
pub const EXIT_ERROR: u8 = 2;

/// portcullis: a supply-chain security gate for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub log: crate::telemetry::LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the validating admission webhook (HTTPS).
    Serve(serve::ServeArgs),
    /// Review manifests (-f) or images as the webhook would, with its engine and policies (for CI).
    Verify(verify::VerifyArgs),
    /// Verify an image's attestation of one predicate type, without requiring an image
    /// signature (cosign verify-attestation's flags).
    VerifyAttestation(verify_attestation::VerifyAttestationArgs),
    /// Verify a Sigstore bundle (key or keyless) against an artifact or its sha256 digest.
    VerifyBundle(verify_bundle::VerifyBundleArgs),
    /// Decrypt SOPS files (age keys), manifest streams and KRM ResourceLists.
    Decrypt(decrypt::DecryptArgs),
    /// Webhook certificates without cert-manager: a CA and the serving certificate.
    Certs(certs::CertsArgs),
    /// Policy files: `policy lint`, `policy test`, `policy schema` and `policy sign`.
    Policy(policy::PolicyArgs),
}

impl Cli {
    /// Run the selected subcommand and map its result to an exit code.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Self { log, command } = self;
        crate::telemetry::init(&log)?;
        match command {
            Command::Serve(args) => serve::run(args),
            Command::Verify(args) => verify::run(args),
            Command::VerifyAttestation(args) => verify_attestation::run(args),
            Command::VerifyBundle(args) => verify_bundle::run(args),
            Command::Decrypt(args) => decrypt::run(args),
            Command::Certs(args) => certs::run(args),
            Command::Policy(args) => policy::run(args),
        }
    }
}
