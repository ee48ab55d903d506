//! The `portcullis` binary: parse the command line, install the TLS crypto provider, run.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = portcullis::cli::Cli::parse();
    // One process-wide rustls provider: aws-lc-rs. Installing twice is harmless.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            portcullis::cli::EXIT_ERROR.into()
        }
    }
}
