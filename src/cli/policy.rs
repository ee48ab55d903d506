//! `portcullis policy`: tools for policy files.

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Flags of `portcullis policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// `portcullis policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the JSON Schema of the policy format (committed as policies/policy.schema.json;
    /// editors read it from a `# yaml-language-server: $schema=./policy.schema.json` line).
    Schema,
}

/// Run `portcullis policy`.
pub fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Schema => print!("{}", crate::policy::schema::schema_text()),
    }
    Ok(ExitCode::from(super::EXIT_ALLOWED))
}
