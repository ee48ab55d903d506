//! Tells the tests whether the shared third-party fixtures (`../shared/fixtures`) are present.
//!
//! With them, `cfg(fixtures)` is set and every fixture-dependent test runs (a missing file is a
//! failure). Without them (a plain clone), those tests are compiled as `#[ignore]` with the reason,
//! so the summary line says how many did not run — never counted as passed. CI sets
//! `PORTCULLIS_REQUIRE_FIXTURES=1`, which makes their absence a build error.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fixtures)");
    kustomize();
    println!("cargo::rerun-if-env-changed=PORTCULLIS_REQUIRE_FIXTURES");
    // tests/run-all.sh says what it found (`present`/`absent`): an environment change is always
    // noticed, where a file copied in with an old modification time may not be.
    println!("cargo::rerun-if-env-changed=PORTCULLIS_FIXTURES");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let index = Path::new(&manifest).join("../shared/fixtures/INDEX.md");
    // Re-run when the fixtures appear or go (a missing path is always re-checked).
    println!("cargo::rerun-if-changed={}", index.display());
    let present = index.is_file();
    if std::env::var("PORTCULLIS_FIXTURES").is_ok_and(|v| v == "present") && !present {
        eprintln!("PORTCULLIS_FIXTURES=present but {} is absent", index.display());
        std::process::exit(1);
    }
    if present {
        println!("cargo::rustc-cfg=fixtures");
    } else if std::env::var("PORTCULLIS_REQUIRE_FIXTURES").is_ok_and(|v| v == "1") {
        eprintln!("PORTCULLIS_REQUIRE_FIXTURES=1 but {} is absent", index.display());
        std::process::exit(1);
    }
}

/// `cfg(kustomize)` when `kubectl` (with its built-in kustomize) is here: the reconciler tests run
/// the real one; without it they are ignored with the reason. tests/run-all.sh says what it found
/// (`PORTCULLIS_KUSTOMIZE=present|absent`), so a change is noticed without re-running this script
/// on every change of PATH; otherwise PATH is searched once. `PORTCULLIS_REQUIRE_KUSTOMIZE=1` (CI)
/// makes its absence a build error.
fn kustomize() {
    println!("cargo::rustc-check-cfg=cfg(kustomize)");
    println!("cargo::rerun-if-env-changed=PORTCULLIS_KUSTOMIZE");
    println!("cargo::rerun-if-env-changed=PORTCULLIS_REQUIRE_KUSTOMIZE");
    let on_path = || {
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join("kubectl").is_file()))
    };
    let found = match std::env::var("PORTCULLIS_KUSTOMIZE").as_deref() {
        Ok("present") => true,
        Ok("absent") => false,
        _ => on_path(),
    };
    if found {
        println!("cargo::rustc-cfg=kustomize");
    } else if std::env::var("PORTCULLIS_REQUIRE_KUSTOMIZE").is_ok_and(|v| v == "1") {
        eprintln!("PORTCULLIS_REQUIRE_KUSTOMIZE=1 but kubectl is not on PATH");
        std::process::exit(1);
    }
}
