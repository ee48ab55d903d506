//! Issue 10, item 9: the metadata and the empty documents exactly as the real sops 3.11 reads and
//! prints them. `lastmodified` is parsed with Go's `time.Parse(time.RFC3339, …)` and re-formatted
//! as the MAC's additional data; an empty document prints as go-yaml's `{}`.
#![allow(clippy::unwrap_used)]

use crate::sops_support as support;

use support::*;

/// How a decryption ended: the plaintext, a `lastmodified` Go cannot parse, or a MAC that does
/// not open with the re-formatted time as additional data.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Plain(Vec<u8>),
    Unparsable,
    MacUnreadable,
    Other(String),
}

fn sops_outcome(dir: &std::path::Path, file: &str, key: &Key) -> Outcome {
    let out = sops(dir, &["--decrypt", file], Some(&key.file));
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Outcome::Plain(out.stdout)
    } else if err.contains("parsing time") {
        Outcome::Unparsable
    } else if err.contains("Cannot decrypt MAC") {
        Outcome::MacUnreadable
    } else {
        Outcome::Other(err.into_owned())
    }
}

fn our_outcome(dir: &std::path::Path, file: &str, key: &Key) -> Outcome {
    let out = portcullis(dir, &["decrypt", "--age-key-file", key.file.to_str().unwrap(), file], &[], None);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Outcome::Plain(out.stdout)
    } else if err.contains("`sops.lastmodified` is not an RFC 3339 time") {
        Outcome::Unparsable
    } else if err.contains("the stored MAC cannot be decrypted") {
        Outcome::MacUnreadable
    } else {
        Outcome::Other(err.into_owned())
    }
}

/// Every form of `lastmodified` a Git writer (or a YAML tool re-writing the file) could leave:
/// accepted exactly where sops accepts it, with the same plaintext, and refused for the same
/// reason where sops refuses it.
#[test]
fn lastmodified_in_every_form_sops_reformats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    let files = [
        ("l.yaml", "a: 1\nb: two\n"),
        ("l.json", "{\"a\": 1, \"b\": \"two\"}\n"),
        ("l.env", "A=1\nB=two\n"),
        ("l.ini", "[s]\na = 1\n"),
    ];
    let mut accepted = 0;
    for (name, plain) in files {
        std::fs::write(d.join(name), plain).unwrap();
        let enc = String::from_utf8(sops_encrypt(d, name, &["--age", &key.recipient])).unwrap();
        let line = enc.lines().find(|l| l.contains("lastmodified")).unwrap();
        let ext = name.rsplit('.').next().unwrap();
        // The time as sops wrote it, e.g. 2026-11-29T12:45:29Z.
        let lm =
            line.split(['"', '=', ' ']).find(|p| p.len() == 20 && p.ends_with('Z')).unwrap_or_else(|| panic!("{line}"));
        let (date, time) = (&lm[..10], &lm[11..19]);
        let one_digit_hour = time.strip_prefix('0').map(|t| format!("{date}T{t}Z"));
        let mut forms: Vec<String> = [
            lm.to_owned(),
            format!("{date}T{time}.5Z"),
            format!("{date}T{time}.123456789123Z"),
            format!("{date}T{time},5Z"),
            format!("{date}T{time}+00:00"),
            format!("{date}T{time}-00:00"),
            format!("{date}T{time}+01:00"),
            format!("{date}T{time}+24:00"),
            format!("{date}T{time}+25:00"),
            format!("{date}T{time}+0000"),
            format!("{date} {time}Z"),
            format!("{date}t{time}Z"),
            format!("{date}T{time}z"),
            format!("{date}T{time}"),
            format!("{date}T{time}.Z"),
            format!("{date}T{}Z", &time[1..]),
            String::new(),
            "12345".to_owned(),
        ]
        .into_iter()
        .chain(one_digit_hour)
        .collect();
        if ext == "yaml" {
            forms.extend([format!("@{lm}"), format!("@{date}T{time}.5Z"), format!("@{date} {time}Z"), "@~".to_owned()]);
        }
        for form in &forms {
            // `@` marks a form written bare in YAML (a YAML timestamp or null, not a string).
            let value = match (ext, form.strip_prefix('@')) {
                ("yaml", Some(bare)) => bare.to_owned(),
                ("yaml", None) => format!("\"{form}\""),
                ("json", _) => format!("\"{form}\""),
                _ => form.clone(),
            };
            let (head, tail) = line.split_at(line.find(lm).unwrap());
            let head = head.trim_end_matches('"');
            let tail = tail[lm.len()..].trim_start_matches('"');
            let variant = enc.replace(line, &format!("{head}{value}{tail}"));
            let file = format!("v.enc.{ext}");
            std::fs::write(d.join(&file), &variant).unwrap();
            let theirs = sops_outcome(d, &file, &key);
            assert!(!matches!(theirs, Outcome::Other(_)), "{name} {form:?}: {theirs:?}");
            assert_eq!(our_outcome(d, &file, &key), theirs, "{name} lastmodified {value}");
            accepted += usize::from(matches!(theirs, Outcome::Plain(_)));
        }
    }
    assert!(accepted >= 4 * 6, "the re-formatted forms are accepted ({accepted})");
}

/// Documents empty after the `sops` block is removed print as go-yaml prints an empty mapping,
/// `{}` (after the comments they hold), in every output format; compared byte for byte.
#[test]
fn empty_documents_print_as_sops_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    let k = key.file.to_str().unwrap();
    let docs = [
        "{}",
        "{}\n",
        "---\n",
        "---\n---\n",
        "---\n{}\n",
        "~\n",
        "a: 1\n---\n",
        "a: 1\n---\n---\n",
        "a: 1\n---\n---\nb: 2\n",
        "a: 1\n--- {}\n",
        "a: 1\n---\n~\n",
        "a: 1\n---\n# c\n",
        "---\n# c\n---\nb: 1\n",
        "---\n---\na: 1\n",
        "a: {}\n",
        "---\na: 1\n...\n",
    ];
    for (i, doc) in docs.iter().enumerate() {
        let name = format!("e{i}.yaml");
        std::fs::write(d.join(&name), doc).unwrap();
        let enc = sops_encrypt(d, &name, &["--age", &key.recipient]);
        std::fs::write(d.join(format!("enc.{name}")), enc).unwrap();
        let file = format!("enc.{name}");
        for extra in [&[][..], &["--output-type", "json"]] {
            let theirs = sops_decrypt(d, &file, &key.file, extra);
            let ours = decrypt_ok(d, &[&["--age-key-file", k][..], extra, &[&file]].concat());
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{doc:?} {extra:?}");
        }
    }
    // An empty file and a comment-only file: sops refuses to encrypt them, so nothing to read.
    for doc in ["", "# only\n"] {
        std::fs::write(d.join("z.yaml"), doc).unwrap();
        assert!(!sops(d, &["-e", "--age", &key.recipient, "z.yaml"], None).status.success());
    }
    // JSON `{}`, and a comment-only dotenv file.
    for (name, doc) in [("j.json", "{}"), ("c.env", "# c\n")] {
        std::fs::write(d.join(name), doc).unwrap();
        std::fs::write(d.join(format!("enc.{name}")), sops_encrypt(d, name, &["--age", &key.recipient])).unwrap();
        let file = format!("enc.{name}");
        for extra in [&[][..], &["--output-type", "yaml"]] {
            let theirs = sops_decrypt(d, &file, &key.file, extra);
            let ours = decrypt_ok(d, &[&["--age-key-file", k][..], extra, &[&file]].concat());
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{name} {extra:?}");
        }
    }
}
