//! Damaged input never panics: every prefix of an encrypted file and many single-byte changes,
//! in every format, end in an error or in a clean decryption.
#![allow(clippy::unwrap_used)]

#[path = "sops_support/mod.rs"]
mod support;

use portcullis::sops::{self, Format, Identities, Options};
use support::*;

fn check(enc: &[u8], format: Format, ids: &Identities) {
    let opts = Options { allow_mac_only_encrypted: true };
    let full = sops::decrypt(enc, format, format, ids, &opts).unwrap();
    for cut in 0..enc.len() {
        if let Ok(out) = sops::decrypt(&enc[..cut], format, format, ids, &opts) {
            // Only cuts in what the MAC does not cover (trailing whitespace, the trailing
            // `version` field) may still decrypt, and then to the same plaintext.
            assert_eq!(out.as_slice(), full.as_slice(), "{format:?} prefix {cut} decrypted to something else");
        }
    }
    for pos in (0..enc.len()).step_by(3) {
        for replacement in [b'A', b'0', b'\n', b'"', b':', 0xff] {
            let mut bad = enc.to_vec();
            bad[pos] = replacement;
            if let Ok(out) = sops::decrypt(&bad, format, format, ids, &opts) {
                // A damaged encrypted comment is kept as it is (as sops does); values never are.
                let text = String::from_utf8_lossy(&out);
                let mut values = text.lines().filter(|l| !l.trim_start().starts_with(['#', ';']));
                let clean = values.all(|l| !l.contains("ENC[AES256_GCM"));
                assert!(clean, "{format:?} flip at {pos}");
            }
        }
    }
}

#[test]
fn damaged_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    let mut ids = Identities::new();
    ids.add_text(&key.identity, "test").unwrap();
    let cases: [(&str, &str, Format); 4] = [
        ("a.yaml", "# c\na: 1\nb:\n  - x\n  - {y: true}\nc: |\n  multi\n  line\n", Format::Yaml),
        ("a.json", r#"{"a": 1, "b": ["x", {"y": 2.5}], "c": null}"#, Format::Json),
        ("a.env", "#c\nA=1\nB=two\n", Format::Dotenv),
        ("a.ini", "[s]\n; c\na = 1\nb = two\n", Format::Ini),
    ];
    for (name, plain, format) in cases {
        std::fs::write(d.join(name), plain).unwrap();
        let enc = sops_encrypt(d, name, &["--age", &key.recipient]);
        check(&enc, format, &ids);
    }
}
