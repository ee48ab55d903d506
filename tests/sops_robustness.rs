//! Damaged input never panics: every prefix of an encrypted file and many single-byte changes,
//! in every format, end in an error or in a clean decryption.
#![allow(clippy::unwrap_used)]

use crate::sops_support as support;

use portcullis::sops::{self, Format, Identities, Options};
use support::*;

fn check(enc: &[u8], format: Format, ids: &Identities) {
    let opts = Options { allow_mac_only_encrypted: true, ..Options::default() };
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

/// How long a hostile input may take in the test (debug build, shared machine); the release figures
/// are in the README. The code these tests guard against took 19 s to minutes (release) at the full
/// sizes, far more in a debug build; the linear code takes well under a second (release).
const BOUND: std::time::Duration = std::time::Duration::from_secs(20);

/// The issue's sizes in a release build, half of them in a debug build (a few seconds each).
fn scaled(full: usize) -> usize {
    if cfg!(debug_assertions) { full / 2 } else { full }
}
/// Address space allowed to the child (`ulimit -v`), MiB.
const MEM_MIB: u64 = 1024;

/// Write `text` as `name` and run `portcullis decrypt` on it under the time and memory bounds.
fn bounded(dir: &std::path::Path, key: &Key, name: &str, text: &[u8], extra: &[&str]) -> Bounded {
    std::fs::write(dir.join(name), text).unwrap();
    let mut args = vec!["decrypt", "--age-key-file", key.file.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(name);
    let run = portcullis_bounded(dir, &args, BOUND, MEM_MIB);
    let code = run.output.status.code();
    assert!(
        matches!(code, Some(0 | 2)),
        "{name}: ended with {:?} (killed or crashed: out of memory?) in {:?}: {}",
        run.output.status,
        run.elapsed,
        String::from_utf8_lossy(&run.output.stderr)
    );
    eprintln!("{name}: {} bytes in {:?}", text.len(), run.elapsed);
    run
}

/// Issue 10: a 68-byte dotenv or INI file whose flattened metadata names list index 4,000,000,000
/// (or nests without end) is refused at once, without allocating in proportion to the index.
#[test]
fn hostile_metadata_indices_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    let dotenv = "A=1\nsops_age__list_4000000000__map_enc=x\nsops_mac=x\nsops_lastmodified=x\n";
    let run = bounded(d, &key, "huge.env", dotenv.as_bytes(), &[]);
    let err = String::from_utf8_lossy(&run.output.stderr);
    assert!(err.contains("list index is larger than"), "{err}");
    let ini = "[s]\na = 1\n[sops]\nage__list_4000000000__map_enc = x\nmac = x\n";
    let run = bounded(d, &key, "huge.ini", ini.as_bytes(), &[]);
    assert!(String::from_utf8_lossy(&run.output.stderr).contains("list index is larger than"));
    let deep = format!("A=1\nsops_age{}=x\n", "__map_a".repeat(200_000));
    let run = bounded(d, &key, "deep.env", deep.as_bytes(), &[]);
    assert!(String::from_utf8_lossy(&run.output.stderr).contains("nested more than"));
}

/// Issue 10: inputs that took quadratic time (up to minutes) under the 5 MiB limit decrypt in
/// linear time: 200k YAML comment lines, 200k list items after comments, 200k dotenv keys
/// starting with `sops_`, 350k INI keys in one section (the metadata keys land in the recipient's
/// stanza, where they are built and then ignored). Each is a real sops file with the
/// hostile part added where the MAC does not look (comments, the metadata), so it decrypts.
#[test]
fn quadratic_inputs_decrypt_in_linear_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    let r = key.recipient.as_str();
    std::fs::write(d.join("p.yaml"), "a: 1\nlist:\n  - x\n").unwrap();
    let yaml = String::from_utf8(sops_encrypt(d, "p.yaml", &["--age", r])).unwrap();
    let sops_at = yaml.find("sops:").unwrap();
    // 200k comment lines (clear comments are kept as they are, as sops keeps them).
    let comments = format!("{}{}{}", &yaml[..sops_at], "#c\n".repeat(scaled(200_000)), &yaml[sops_at..]);
    let run = bounded(d, &key, "comments.yaml", comments.as_bytes(), &[]);
    assert!(run.output.status.success(), "{}", String::from_utf8_lossy(&run.output.stderr));
    // 200k list items, each after a comment, in a metadata key sops and portcullis ignore.
    let items = "        # c\n        - 1\n".repeat(scaled(200_000));
    let list = format!("{}sops:\n    x_list:\n{items}{}", &yaml[..sops_at], &yaml[sops_at + "sops:\n".len()..]);
    let run = bounded(d, &key, "items.yaml", list.as_bytes(), &[]);
    assert!(run.output.status.success(), "{}", String::from_utf8_lossy(&run.output.stderr));

    std::fs::write(d.join("p.env"), "A=1\nB=two\n").unwrap();
    let env = String::from_utf8(sops_encrypt(d, "p.env", &["--age", r])).unwrap();
    let keys: String = (0..scaled(200_000)).map(|i| format!("sops_age__list_0__map_k{i}=v\n")).collect();
    let run = bounded(d, &key, "many.env", format!("{env}{keys}").as_bytes(), &[]);
    assert!(run.output.status.success(), "{}", String::from_utf8_lossy(&run.output.stderr));

    std::fs::write(d.join("p.ini"), "[s]\na = 1\n").unwrap();
    let ini = String::from_utf8(sops_encrypt(d, "p.ini", &["--age", r])).unwrap();
    assert!(ini.trim_end().lines().last().is_some_and(|l| !l.starts_with('[')), "[sops] is the last section");
    let keys: String = (0..scaled(350_000)).map(|i| format!("age__list_0__map_k{i} = v\n")).collect();
    let run = bounded(d, &key, "many.ini", format!("{ini}{keys}").as_bytes(), &[]);
    assert!(run.output.status.success(), "{}", String::from_utf8_lossy(&run.output.stderr));
}
