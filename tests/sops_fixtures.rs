//! The ready-made cases of `../shared/fixtures/generated/sops` (made with Go sops 3.11.0 and age
//! 1.1.1): every one decrypts to its plaintext neighbour or fails for the documented reason.
//! Skipped, visibly, when that folder is absent.
#![allow(clippy::unwrap_used)]

use crate::sops_support as support;

use std::path::Path;

use support::*;

fn decrypt(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["decrypt"];
    all.extend_from_slice(args);
    portcullis(dir, &all, &[], None)
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn fixtures_decrypt_to_their_plaintext() {
    let dir = shared_fixtures();
    let key = dir.join("age-key.txt");
    let k = key.to_str().unwrap();
    let ok = |args: &[&str]| {
        let out = decrypt(&dir, args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    for enc in ["secret.enc.yaml", "secret.2recipients.enc.yaml", "suffix.enc.yaml"] {
        let plain = if enc.starts_with("suffix") { "suffix.yaml" } else { "secret.yaml" };
        let expected = std::fs::read(dir.join(plain)).unwrap();
        assert_same_yaml(&ok(&["--age-key-file", k, enc]), &expected, enc);
    }
    let expected = std::fs::read(dir.join("config.json")).unwrap();
    assert_eq!(json_canon(&ok(&["--age-key-file", k, "config.enc.json"])), json_canon(&expected));
    let env = ok(&["--age-key-file", k, "app.enc.env"]);
    assert_eq!(env, std::fs::read(dir.join("app.env")).unwrap());
    let blob = ok(&["--age-key-file", k, "--input-type", "binary", "blob.enc.json"]);
    assert_eq!(blob, std::fs::read(dir.join("blob.bin")).unwrap());
    // The second recipient's key alone opens the two-recipient file.
    let k2 = dir.join("age-key2.txt");
    let out = ok(&["--age-key-file", k2.to_str().unwrap(), "secret.2recipients.enc.yaml"]);
    assert_same_yaml(&out, &std::fs::read(dir.join("secret.yaml")).unwrap(), "second recipient");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn fixture_shamir_needs_both_groups() {
    let dir = shared_fixtures();
    let (k1, k2) = (dir.join("age-key.txt"), dir.join("age-key2.txt"));
    let out = decrypt(
        &dir,
        &["--age-key-file", k1.to_str().unwrap(), "--age-key-file", k2.to_str().unwrap(), "secret.shamir.enc.yaml"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_yaml(&out.stdout, &std::fs::read(dir.join("secret.yaml")).unwrap(), "shamir");
    let out = decrypt(&dir, &["--age-key-file", k1.to_str().unwrap(), "secret.shamir.enc.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only 1 of the 2 key groups needed"), "{err}");
}

#[cfg_attr(not(fixtures), ignore = "needs ../shared/fixtures, which is absent")]
#[test]
fn fixture_negatives() {
    let dir = shared_fixtures();
    let key = dir.join("age-key.txt");
    let k = key.to_str().unwrap();
    let err = |args: &[&str]| {
        let out = decrypt(&dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?} must fail");
        assert!(out.stdout.is_empty());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(&["--age-key-file", k, "secret.tampered.enc.yaml"]);
    assert!(e.contains("secret.tampered.enc.yaml") && e.contains("fails authentication"), "{e}");
    let e = err(&["--age-key-file", k, "secret.mac-mismatch.enc.yaml"]);
    assert!(e.contains("MAC mismatch"), "{e}");
    let e = err(&["--age-key-file", k, "secret.maconly.enc.yaml"]);
    assert!(e.contains("mac_only_encrypted"), "{e}");
    let out = decrypt(&dir, &["--allow-mac-only-encrypted", "--age-key-file", k, "secret.maconly.enc.yaml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_yaml(&out.stdout, &std::fs::read(dir.join("secret.yaml")).unwrap(), "mac-only");
}
