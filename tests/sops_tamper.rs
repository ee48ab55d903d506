//! Every tampering of a sops file is caught, with an error that names the file and the reason and
//! never echoes plaintext: changed ciphertext (GCM), changed / added / removed / reordered values
//! (MAC), values swapped between keys (AAD), a wrong key, a truncated file, a renamed or moved
//! Secret (the MAC binds the namespace).
#![allow(clippy::unwrap_used)]

use crate::sops_support as support;

use support::*;

const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\n  labels:\n    app: demo\ntype: Opaque\nstringData:\n  username: admin-user\n  password: hunter2-secret\n";

struct Case {
    dir: tempfile::TempDir,
    key: Key,
    enc: String,
}

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "key");
    std::fs::write(dir.path().join("s.yaml"), SECRET).unwrap();
    let enc =
        sops_encrypt(dir.path(), "s.yaml", &["--age", &key.recipient, "--encrypted-regex", "^(data|stringData)$"]);
    Case { dir, key, enc: String::from_utf8(enc).unwrap() }
}

impl Case {
    /// Write a variant, check real sops fails too, and return portcullis's stderr.
    fn fails(&self, variant: &str) -> String {
        std::fs::write(self.dir.path().join("t.enc.yaml"), variant).unwrap();
        let sops_out = sops(self.dir.path(), &["--decrypt", "t.enc.yaml"], Some(&self.key.file));
        assert!(!sops_out.status.success(), "real sops accepted the variant too:\n{variant}");
        let err = decrypt_err(self.dir.path(), &["--age-key-file", self.key.file.to_str().unwrap(), "t.enc.yaml"]);
        assert!(err.contains("t.enc.yaml"), "the error names the file: {err}");
        for secret in ["admin-user", "hunter2-secret"] {
            assert!(!err.contains(secret), "the error must not echo plaintext: {err}");
        }
        err
    }

    fn enc_value(&self, key: &str) -> String {
        let line = self.enc.lines().find(|l| l.trim_start().starts_with(&format!("{key}: ENC["))).unwrap();
        line.split_once(": ").unwrap().1.to_owned()
    }
}

const MAC_MISMATCH: &str = "error: decrypting t.enc.yaml (yaml file): MAC mismatch: the file was changed after it was \
encrypted (a value edited, added, removed or reordered, or the resource renamed or moved to another namespace); restore \
it from Git or re-encrypt it\n";

#[test]
fn untouched_file_decrypts() {
    let c = case();
    std::fs::write(c.dir.path().join("ok.enc.yaml"), &c.enc).unwrap();
    let out = decrypt_ok(c.dir.path(), &["--age-key-file", c.key.file.to_str().unwrap(), "ok.enc.yaml"]);
    assert_same_yaml(&out, SECRET.as_bytes(), "untouched");
}

#[test]
fn changed_ciphertext_fails_gcm() {
    let c = case();
    let v = c.enc_value("password");
    let data = v.strip_prefix("ENC[AES256_GCM,data:").unwrap();
    let flipped = if data.starts_with('A') { "B" } else { "A" };
    let tampered = c.enc.replace(&v, &format!("ENC[AES256_GCM,data:{flipped}{}", &data[1..]));
    let err = c.fails(&tampered);
    assert_eq!(
        err,
        "error: decrypting t.enc.yaml (yaml file): value at `stringData.password` fails authentication (AES-GCM): the \
         value was changed, moved to another key, or encrypted with another data key; restore the file from Git or \
         re-encrypt it with sops\n"
    );
}

#[test]
fn swapped_values_fail_aad() {
    let c = case();
    let (u, p) = (c.enc_value("username"), c.enc_value("password"));
    let swapped = c.enc.replace(&u, "@U@").replace(&p, &u).replace("@U@", &p);
    let err = c.fails(&swapped);
    assert!(err.contains("value at `stringData.username` fails authentication"), "{err}");
}

#[test]
fn moved_or_renamed_secret_fails_mac() {
    let c = case();
    assert_eq!(c.fails(&c.enc.replace("namespace: prod", "namespace: attacker")), MAC_MISMATCH);
    assert_eq!(c.fails(&c.enc.replace("name: db", "name: other")), MAC_MISMATCH);
}

#[test]
fn added_removed_reordered_values_fail_mac() {
    let c = case();
    assert_eq!(c.fails(&c.enc.replace("        app: demo\n", "        app: demo\n        extra: x\n")), MAC_MISMATCH);
    let without: String = c.enc.lines().filter(|l| !l.contains("username:")).map(|l| format!("{l}\n")).collect();
    assert_eq!(c.fails(&without), MAC_MISMATCH);
    let reordered = c.enc.replace("type: Opaque\n", "").replacen("metadata:\n", "type: Opaque\nmetadata:\n", 1);
    assert_eq!(c.fails(&reordered), MAC_MISMATCH);
}

#[test]
fn tampered_mac_is_reported() {
    let c = case();
    let line = c.enc.lines().find(|l| l.trim_start().starts_with("mac: ENC[")).unwrap();
    let i = line.find("data:").unwrap() + 5;
    let mut bad = line.to_owned();
    let ch = if &line[i..=i] == "A" { "B" } else { "A" };
    bad.replace_range(i..=i, ch);
    let err = c.fails(&c.enc.replace(line, &bad));
    assert!(err.contains("the stored MAC cannot be decrypted"), "{err}");
}

#[test]
fn wrong_key_names_the_recipients() {
    let c = case();
    let other = keygen(c.dir.path(), "other");
    std::fs::write(c.dir.path().join("t.enc.yaml"), &c.enc).unwrap();
    let err = decrypt_err(c.dir.path(), &["--age-key-file", other.file.to_str().unwrap(), "t.enc.yaml"]);
    assert_eq!(
        err,
        format!(
            "error: decrypting t.enc.yaml (yaml file): no key for any recipient: none of the 1 age identities given \
             decrypts the data key (recipients: {}); pass the identity of one of these recipients\n",
            c.key.recipient
        )
    );
    assert!(!err.contains(&other.identity) && !err.contains(&c.key.identity));
}

#[test]
fn no_key_at_all() {
    let c = case();
    std::fs::write(c.dir.path().join("t.enc.yaml"), &c.enc).unwrap();
    let err = decrypt_err(c.dir.path(), &["t.enc.yaml"]);
    assert_eq!(
        err,
        "error: decrypting t.enc.yaml (yaml file): no age identity was given: pass --age-key-file FILE or \
         --age-key-secret FILE, or set SOPS_AGE_KEY_FILE or SOPS_AGE_KEY\n"
    );
}

/// The file cut at `cut(len)` bytes fails with a decryption error (one test per cut).
fn truncated_file_fails(cut: fn(usize) -> usize) {
    let c = case();
    let err = c.fails(&c.enc[..cut(c.enc.len())]);
    assert!(err.starts_with("error: decrypting t.enc.yaml"), "{err}");
}

#[test]
fn a_file_cut_at_a_third_fails() {
    truncated_file_fails(|len| len / 3);
}

#[test]
fn a_file_cut_in_half_fails() {
    truncated_file_fails(|len| len / 2);
}

#[test]
fn a_file_missing_its_last_40_bytes_fails() {
    truncated_file_fails(|len| len - 40);
}

#[test]
fn plain_file_is_not_sops() {
    let c = case();
    std::fs::write(c.dir.path().join("plain.yaml"), SECRET).unwrap();
    let err = decrypt_err(c.dir.path(), &["--age-key-file", c.key.file.to_str().unwrap(), "plain.yaml"]);
    assert_eq!(
        err,
        "error: decrypting plain.yaml (yaml file): no `sops` metadata found: the file is not encrypted with sops (or \
         the input type is wrong)\n"
    );
}

/// A small document with a list, encrypted with default rules.
fn list_case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "key");
    std::fs::write(dir.path().join("l.yaml"), "ports:\n  - 80 # web\n  - admin-user\n# top\nn: 1\n").unwrap();
    let enc = sops_encrypt(dir.path(), "l.yaml", &["--age", &key.recipient]);
    Case { dir, key, enc: String::from_utf8(enc).unwrap() }
}

/// Issue 10, defect 1 (reverse): a list value re-tagged `type:comment` would leave the MAC
/// (comments are not hashed); sops then fails the MAC, and so does portcullis.
#[test]
fn list_item_retagged_as_comment_fails_mac() {
    let c = list_case();
    let line = c.enc.lines().find(|l| l.contains("type:str]") && l.trim_start().starts_with("- ENC[")).unwrap();
    let tampered = c.enc.replace(line, &line.replace("type:str]", "type:comment]"));
    assert_eq!(c.fails(&tampered), MAC_MISMATCH);
    // And the other way: a comment item turned into a value enters the MAC.
    let line = c.enc.lines().find(|l| l.contains("type:comment]") && l.trim_start().starts_with("- ENC[")).unwrap();
    let tampered = c.enc.replace(line, &line.replace("type:comment]", "type:str]"));
    assert_eq!(c.fails(&tampered), MAC_MISMATCH);
    // A mapping comment re-tagged as a value is hashed as sops does, and fails the MAC.
    let line = c.enc.lines().find(|l| l.starts_with("#ENC[")).unwrap();
    assert_eq!(c.fails(&c.enc.replace(line, &line.replace("type:comment]", "type:str]"))), MAC_MISMATCH);
}

/// A list holding only a comment, moved to its key's value (same key path, so the same AAD, and
/// comments are outside the MAC): sops accepts it and writes the comment's text as a value
/// (`b: {value: ' note'}`); portcullis refuses an encrypted comment where a value belongs.
#[test]
fn comment_item_moved_to_a_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "key");
    std::fs::write(dir.path().join("e.yaml"), "b: [] # note\nc: 1\n").unwrap();
    let enc = String::from_utf8(sops_encrypt(dir.path(), "e.yaml", &["--age", &key.recipient])).unwrap();
    let moved = enc.replacen("b:\n    - ENC[", "b: ENC[", 1);
    assert_ne!(moved, enc);
    std::fs::write(dir.path().join("t.enc.yaml"), &moved).unwrap();
    let theirs = sops(dir.path(), &["--decrypt", "t.enc.yaml"], Some(&key.file));
    assert!(theirs.status.success(), "sops accepts the moved comment (its MAC does not see it)");
    // ... and writes the comment's text as data: `b` becomes a mapping `{value: ' note'}`. The
    // MAC cannot see that either, so accepting the file would let a comment become a value.
    assert_eq!(String::from_utf8_lossy(&theirs.stdout), "b:\n    value: ' note'\nc: 1\n");
    let err = decrypt_err(dir.path(), &["--age-key-file", key.file.to_str().unwrap(), "t.enc.yaml"]);
    assert!(err.contains("value at `b` is an encrypted comment"), "{err}");
}

/// Issue 10, defect 9 (part): a file cut after its MAC, or with `version` removed, is refused as
/// sops refuses it (sops needs a semantic version there).
#[test]
fn missing_version_is_refused() {
    let c = case();
    let without: String =
        c.enc.lines().filter(|l| !l.trim_start().starts_with("version:")).map(|l| format!("{l}\n")).collect();
    assert_ne!(without, c.enc);
    let err = c.fails(&without);
    assert!(err.contains("no valid `version`"), "{err}");
    let cut = &c.enc[..c.enc.find("    version:").unwrap()];
    assert!(c.fails(cut).contains("no valid `version`"));
}

/// The MAC covers values, not key names: renaming `namespace:` to `generateName:` keeps it valid
/// (real sops accepts the result) and would drop the namespace the Secret was encrypted for. In a
/// manifest stream, an encrypted resource must carry `metadata.namespace` and no `generateName`.
#[test]
fn renaming_the_namespace_key_does_not_undo_the_binding() {
    let c = case();
    let key = c.key.file.to_str().unwrap().to_owned();
    let renamed = c.enc.replace("  namespace: prod", "  generateName: prod");
    assert_ne!(renamed, c.enc);
    std::fs::write(c.dir.path().join("renamed.enc.yaml"), &renamed).unwrap();
    // Real sops decrypts it: nothing in the MAC saw the key name change.
    let sops_out = sops(c.dir.path(), &["--decrypt", "renamed.enc.yaml"], Some(&c.key.file));
    assert!(sops_out.status.success(), "sops refused the rename: {}", String::from_utf8_lossy(&sops_out.stderr));
    let err = decrypt_err(c.dir.path(), &["--manifests", "--age-key-file", &key, "renamed.enc.yaml"]);
    assert!(err.contains("Secret db (document 1)") && err.contains("not metadata.generateName"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
    // The untouched file still decrypts in a stream.
    std::fs::write(c.dir.path().join("ok.enc.yaml"), &c.enc).unwrap();
    let out = decrypt_ok(c.dir.path(), &["--manifests", "--age-key-file", &key, "ok.enc.yaml"]);
    assert_same_yaml(&out, SECRET.as_bytes(), "untouched stream");
}

/// A Secret encrypted without a namespace is bound to none: refused in a manifest stream unless
/// `--allow-no-namespace` says cluster-default placement is intended.
#[test]
fn an_encrypted_resource_without_a_namespace_needs_an_explicit_flag() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "key");
    let plain = SECRET.replace("  namespace: prod\n", "");
    std::fs::write(dir.path().join("s.yaml"), &plain).unwrap();
    let enc =
        sops_encrypt(dir.path(), "s.yaml", &["--age", &key.recipient, "--encrypted-regex", "^(data|stringData)$"]);
    std::fs::write(dir.path().join("s.enc.yaml"), enc).unwrap();
    let key = key.file.to_str().unwrap().to_owned();
    let err = decrypt_err(dir.path(), &["--manifests", "--age-key-file", &key, "s.enc.yaml"]);
    assert!(err.contains("encrypted without metadata.namespace") && err.contains("--allow-no-namespace"), "{err}");
    let out = decrypt_ok(dir.path(), &["--manifests", "--allow-no-namespace", "--age-key-file", &key, "s.enc.yaml"]);
    assert_same_yaml(&out, plain.as_bytes(), "allowed without a namespace");
    // A single file (not a stream) is a document, not a resource: unchanged.
    let out = decrypt_ok(dir.path(), &["--age-key-file", &key, "s.enc.yaml"]);
    assert_same_yaml(&out, plain.as_bytes(), "single file");
}

/// The MAC covers the values of `metadata.name` and `metadata.namespace` in order, not which key
/// holds which: swapping the two keys keeps it valid (real sops accepts the result) and moves the
/// Secret `prod/db` to `db/prod`. Nothing in the file can detect it; `--expect-namespace` refuses
/// it, and the genuine file passes.
#[test]
fn swapping_name_and_namespace_is_caught_only_by_an_expected_namespace() {
    let c = case();
    let d = c.dir.path();
    let key = c.key.file.to_str().unwrap().to_owned();
    let swapped = c.enc.replace("    name: db\n    namespace: prod\n", "    namespace: db\n    name: prod\n");
    assert_ne!(swapped, c.enc);
    std::fs::write(d.join("swapped.enc.yaml"), &swapped).unwrap();
    std::fs::write(d.join("ok.enc.yaml"), &c.enc).unwrap();
    let sops_out = sops(d, &["--decrypt", "swapped.enc.yaml"], Some(&c.key.file));
    assert!(sops_out.status.success(), "sops refused the swap: {}", String::from_utf8_lossy(&sops_out.stderr));
    // Undetectable without an expectation: the stream decrypts, bound to namespace `db`.
    let moved = decrypt_ok(d, &["--manifests", "--age-key-file", &key, "swapped.enc.yaml"]);
    let doc: serde_json::Value = serde_yaml_ng::from_slice(&moved).unwrap();
    assert_eq!((doc["metadata"]["namespace"].as_str(), doc["metadata"]["name"].as_str()), (Some("db"), Some("prod")));
    // Not only the name: any clear value in a fitting place, here the label value.
    let relabeled = c.enc.replace(
        "    name: db\n    namespace: prod\n    labels:\n        app: demo\n",
        "    name: db\n    labels:\n        app: prod\n    namespace: demo\n",
    );
    assert_ne!(relabeled, c.enc);
    std::fs::write(d.join("relabeled.enc.yaml"), &relabeled).unwrap();
    assert!(sops(d, &["--decrypt", "relabeled.enc.yaml"], Some(&c.key.file)).status.success());
    let moved = decrypt_ok(d, &["--manifests", "--age-key-file", &key, "relabeled.enc.yaml"]);
    let doc: serde_json::Value = serde_yaml_ng::from_slice(&moved).unwrap();
    assert_eq!(doc["metadata"]["namespace"].as_str(), Some("demo"));
    let err =
        decrypt_err(d, &["--manifests", "--expect-namespace", "prod", "--age-key-file", &key, "relabeled.enc.yaml"]);
    assert!(err.contains("encrypted for namespace \"demo\""), "{err}");
    for mode in ["--manifests", "--krm"] {
        let krm = |file: &str| -> Vec<u8> {
            let text = std::fs::read_to_string(d.join(file)).unwrap();
            let items: String = text.lines().map(|l| format!("      {l}\n")).collect();
            format!("apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n  - \n{items}").into_bytes()
        };
        let run = |file: &str, expect: &[&str]| {
            let mut args = vec!["decrypt", mode, "--age-key-file", &key];
            args.extend_from_slice(expect);
            if mode == "--manifests" {
                args.push(file);
                portcullis(d, &args, &[], None)
            } else {
                portcullis(d, &args, &[], Some(&krm(file)))
            }
        };
        let refused = run("swapped.enc.yaml", &["--expect-namespace", "prod"]);
        let err = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{mode}: {err}");
        assert!(refused.stdout.is_empty());
        assert!(err.contains("encrypted for namespace \"db\"") && err.contains("(prod)"), "{mode}: {err}");
        assert!(!err.contains("hunter2-secret"), "{err}");
        let without = run("swapped.enc.yaml", &[]);
        assert!(without.status.success(), "{mode} without --expect-namespace: undetectable");
        for expect in [
            &["--expect-namespace", "prod"][..],
            &["--expect-namespace", "dev,prod"],
            &["--expect-namespace", "dev", "--expect-namespace", "prod"],
        ] {
            let ok = run("ok.enc.yaml", expect);
            assert!(ok.status.success(), "{mode} {expect:?}: {}", String::from_utf8_lossy(&ok.stderr));
            assert!(String::from_utf8_lossy(&ok.stdout).contains("hunter2-secret"));
        }
    }
}

/// `--expect-namespace=<bad>` (an unset variable in a plugin, a name Kubernetes would never
/// give) is refused, not read as "any namespace".
fn expect_namespace_refuses(bad: &str) {
    let c = case();
    let d = c.dir.path();
    let key = c.key.file.to_str().unwrap().to_owned();
    std::fs::write(d.join("ok.enc.yaml"), &c.enc).unwrap();
    let flag = format!("--expect-namespace={bad}");
    let err = decrypt_err(d, &["--manifests", &flag, "--age-key-file", &key, "ok.enc.yaml"]);
    assert!(err.contains("not a namespace name"), "{bad:?}: {err}");
}

macro_rules! not_a_namespace_name {
    ($($name:ident: $bad:expr;)*) => {$(
        #[test]
        fn $name() {
            expect_namespace_refuses($bad);
        }
    )*};
}

not_a_namespace_name! {
    expect_namespace_empty_is_refused: "";
    expect_namespace_upper_case_is_refused: "Prod";
    expect_namespace_flag_like_is_refused: "-x";
    expect_namespace_with_a_slash_is_refused: "a/b";
}

/// How someone would get past `--expect-namespace`: an empty value (an unset variable in a
/// plugin), a flag that silently does nothing in another mode, or a Flux-style document embedded
/// in a Secret placed in another namespace. Each is refused.
#[test]
fn expect_namespace_cannot_be_emptied_or_ignored() {
    let c = case();
    let d = c.dir.path();
    let key = c.key.file.to_str().unwrap().to_owned();
    std::fs::write(d.join("ok.enc.yaml"), &c.enc).unwrap();
    // Values that are no namespace name: `not_a_namespace_name!` below, one test per value.
    let err = decrypt_err(d, &["--expect-namespace", "prod", "--age-key-file", &key, "ok.enc.yaml"]);
    assert!(err.contains("--expect-namespace applies to --manifests, --krm and --check-binding"), "{err}");
    // A SOPS document embedded in a Secret of another namespace (its MAC binds no namespace).
    std::fs::write(d.join("inner.yaml"), "password: hunter2-secret\n").unwrap();
    let inner = String::from_utf8(sops_encrypt(d, "inner.yaml", &["--age", &c.key.recipient])).unwrap();
    let indented: String = inner.lines().map(|l| format!("    {l}\n")).collect();
    let flux = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: {ns}\nstringData:\n  app.yaml: |\n{indented}"
        )
    };
    std::fs::write(d.join("moved.yaml"), flux("attacker")).unwrap();
    std::fs::write(d.join("here.yaml"), flux("prod")).unwrap();
    let base = ["--manifests", "--allow-unbound-embedded", "--age-key-file", &key, "--expect-namespace", "prod"];
    let err = decrypt_err(d, &[&base[..], &["moved.yaml"]].concat());
    assert!(err.contains("encrypted for namespace \"attacker\""), "{err}");
    let out = decrypt_ok(d, &[&base[..], &["here.yaml"]].concat());
    assert!(String::from_utf8_lossy(&out).contains("hunter2-secret"));
}

/// The same swap through `--tree` and `--check-binding` (the Argo CD plugin's path): the binding
/// manifest records the namespace read from the swapped key, so only the expected namespace
/// catches it.
#[test]
fn swapped_keys_are_refused_by_check_binding_with_an_expected_namespace() {
    let c = case();
    let d = c.dir.path();
    let key = c.key.file.to_str().unwrap().to_owned();
    let src = d.join("src");
    std::fs::create_dir(&src).unwrap();
    let swapped = c.enc.replace("    name: db\n    namespace: prod\n", "    namespace: db\n    name: prod\n");
    std::fs::write(src.join("s.enc.yaml"), &swapped).unwrap();
    let out = d.join("out");
    let root = d.to_str().unwrap();
    decrypt_ok(d, &["--root", root, "--tree", "src", "--out", out.to_str().unwrap(), "--age-key-file", &key]);
    let build = std::fs::read(out.join("s.enc.yaml")).unwrap();
    let binding = d.join("out.binding.json");
    let check = |extra: &[&str]| {
        let mut args = vec!["decrypt", "--check-binding", binding.to_str().unwrap()];
        args.extend_from_slice(extra);
        portcullis(d, &args, &[], Some(&build))
    };
    assert!(check(&[]).status.success(), "undetectable without an expected namespace");
    let refused = check(&["--expect-namespace", "prod"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("Secret db/prod (from s.enc.yaml)") && err.contains("not expected (prod)"), "{err}");
    assert!(refused.stdout.is_empty());
    assert!(check(&["--expect-namespace", "db"]).status.success());
}
