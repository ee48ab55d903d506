//! sigstore-conformance `bundle-verify`: every case through the real binary
//! (`portcullis verify-bundle`), as the conformance harness would run it.
//!
//! Each case directory holds `bundle.sigstore.json` and optionally `artifact` (else `../a.txt`),
//! `identity`, `issuer`, `key.pub` (verify by key) and `trusted_root.json` (else the production
//! root). A case whose name ends in `_fail` must fail verification; every other case must pass.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");
const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// Run one case; `Ok(())` when the outcome is the expected one, else why not.
fn run_case(case: &Path, production_root: &Path) -> Result<(), String> {
    let name = case.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let parent = case.parent().unwrap_or(case);
    let artifact = Some(case.join("artifact")).filter(|p| p.exists()).unwrap_or_else(|| parent.join("a.txt"));
    let root =
        Some(case.join("trusted_root.json")).filter(|p| p.exists()).unwrap_or_else(|| production_root.to_owned());
    let mut command = Command::new(BIN);
    command.arg("verify-bundle").arg("--bundle").arg(case.join("bundle.sigstore.json"));
    let key = case.join("key.pub");
    if key.exists() {
        command.arg("--key").arg(key);
    } else {
        let identity = read_trimmed(&case.join("identity")).unwrap_or_else(|| DEFAULT_IDENTITY.to_owned());
        let issuer = read_trimmed(&case.join("issuer")).unwrap_or_else(|| DEFAULT_ISSUER.to_owned());
        command.args(["--certificate-identity", &identity, "--certificate-oidc-issuer", &issuer]);
    }
    command.arg("--trusted-root").arg(root).arg(artifact);
    let output = command.output().map_err(|e| format!("cannot run {BIN}: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // A usage error is never a verification result.
    if stderr.contains("Usage:") {
        return Err(format!("command line rejected: {stderr}"));
    }
    let expect_fail = name.ends_with("_fail");
    match (expect_fail, output.status.success()) {
        (false, true) | (true, false) => Ok(()),
        (false, false) => Err(format!("should verify, but failed: {}", stderr.trim())),
        (true, true) => Err(format!("should fail, but verified: {}", String::from_utf8_lossy(&output.stdout).trim())),
    }
}

fn main() -> std::process::ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let suite = PathBuf::from(FIXTURES).join("sigstore-conformance/bundle-verify");
    let trials = if cfg!(fixtures) {
        cases(&suite)
    } else {
        // Without the fixtures there are no cases to name: one trial says why none ran.
        vec![
            libtest_mimic::Trial::test("sigstore_conformance (needs ../shared/fixtures, which is absent)", || Ok(()))
                .with_ignored_flag(true),
        ]
    };
    libtest_mimic::run(&args, trials).exit_code()
}

/// One trial per case directory of the suite.
fn cases(suite: &Path) -> Vec<libtest_mimic::Trial> {
    let production_root = PathBuf::from(FIXTURES).join("sigstore-root/trusted_root.json");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(suite)
        .unwrap_or_else(|e| panic!("{}: {e}", suite.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("bundle.sigstore.json").exists())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", suite.display());
    cases
        .into_iter()
        .map(|case| {
            let name = case.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let root = production_root.clone();
            libtest_mimic::Trial::test(format!("bundle_verify::{name}"), move || Ok(run_case(&case, &root)?))
        })
        .collect()
}
