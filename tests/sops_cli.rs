//! `portcullis decrypt` as a command: key sources, confinement under --root, size limit, output
//! file rules, manifest streams and KRM ResourceLists.
#![allow(clippy::unwrap_used)]

#[path = "sops_support/mod.rs"]
mod support;

use std::path::Path;

use base64::Engine as _;
use support::*;

const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\ntype: Opaque\nstringData:\n  password: hunter2\n";

fn encrypted(dir: &Path, key: &Key, name: &str, plain: &str, extra: &[&str]) -> String {
    std::fs::write(dir.join(format!("plain-{name}")), plain).unwrap();
    let mut flags = vec!["--age", key.recipient.as_str()];
    flags.extend_from_slice(extra);
    let enc = sops_encrypt(dir, &format!("plain-{name}"), &flags);
    std::fs::write(dir.join(name), &enc).unwrap();
    String::from_utf8(enc).unwrap()
}

#[test]
fn key_sources_env_and_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    encrypted(d, &key, "s.enc.yaml", SECRET, &["--encrypted-regex", "^stringData$"]);
    let kf = key.file.to_str().unwrap();
    for env in [[("SOPS_AGE_KEY_FILE", kf)], [("SOPS_AGE_KEY", key.identity.as_str())]] {
        let out = portcullis(d, &["decrypt", "s.enc.yaml"], &env, None);
        assert!(out.status.success(), "{env:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_same_yaml(&out.stdout, SECRET.as_bytes(), "env key");
    }
    // A Flux-style Secret holding the key, in data (base64) and in stringData.
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{}\n", key.identity));
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sops-age\ndata:\n  identity.agekey: {b64}\n  other: aGVsbG8=\n"
    );
    std::fs::write(d.join("sops-age.yaml"), secret).unwrap();
    let out = decrypt_ok(d, &["--age-key-secret", "sops-age.yaml", "s.enc.yaml"]);
    assert_same_yaml(&out, SECRET.as_bytes(), "secret key");
    let json = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{{\"name\":\"k\"}},\"stringData\":{{\"a.agekey\":\"{}\"}}}}",
        key.identity
    );
    std::fs::write(d.join("sops-age.json"), json).unwrap();
    decrypt_ok(d, &["--age-key-secret", "sops-age.json", "s.enc.yaml"]);
    std::fs::write(d.join("nokeys.yaml"), "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\ndata:\n  a: aGVsbG8=\n")
        .unwrap();
    let err = decrypt_err(d, &["--age-key-secret", "nokeys.yaml", "s.enc.yaml"]);
    assert!(err.contains("--age-key-secret nokeys.yaml") && err.contains(".agekey"), "{err}");
}

#[test]
fn confinement_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    std::fs::create_dir(d.join("repo")).unwrap();
    encrypted(d, &key, "outside.enc.yaml", SECRET, &[]);
    encrypted(&d.join("repo"), &key, "in.enc.yaml", SECRET, &[]);
    let kf = key.file.to_str().unwrap();
    let repo = d.join("repo");
    let err = decrypt_err(&repo, &["--age-key-file", kf, "../outside.enc.yaml"]);
    assert!(err.contains("`..` is not allowed"), "{err}");
    std::os::unix::fs::symlink(d.join("outside.enc.yaml"), repo.join("link.enc.yaml")).unwrap();
    let err = decrypt_err(&repo, &["--age-key-file", kf, "link.enc.yaml"]);
    assert!(err.contains("link.enc.yaml: the path leads outside --root"), "{err}");
    // an explicit wider root allows it
    decrypt_ok(&repo, &["--root", d.to_str().unwrap(), "--age-key-file", kf, "link.enc.yaml"]);
    let err = decrypt_err(&repo, &["--max-size", "100", "--age-key-file", kf, "in.enc.yaml"]);
    assert!(err.contains("in.enc.yaml") && err.contains("larger than --max-size 100"), "{err}");
    let err = decrypt_err(&repo, &["--age-key-file", kf, "missing.enc.yaml"]);
    assert!(err.contains("missing.enc.yaml: cannot open the file"), "{err}");
    // -o: never the input, and the plaintext lands in the file
    let err = decrypt_err(&repo, &["--age-key-file", kf, "-o", "in.enc.yaml", "in.enc.yaml"]);
    assert!(err.contains("refusing to overwrite the input file"), "{err}");
    decrypt_ok(&repo, &["--age-key-file", kf, "-o", "plain.yaml", "in.enc.yaml"]);
    assert_same_yaml(&std::fs::read(repo.join("plain.yaml")).unwrap(), SECRET.as_bytes(), "-o");
    let err = decrypt_err(&repo, &["--age-key-file", kf, "-o", "../escape.yaml", "in.enc.yaml"]);
    assert!(err.contains("`..` is not allowed"), "{err}");
    // -o through a symlink inside the root: a dangling one pointing outside is replaced, never
    // followed (issue 10), and the file is the owner's only.
    std::os::unix::fs::symlink(d.join("escaped.yaml"), repo.join("dangling.yaml")).unwrap();
    decrypt_ok(&repo, &["--age-key-file", kf, "-o", "dangling.yaml", "in.enc.yaml"]);
    assert!(!d.join("escaped.yaml").exists(), "the plaintext was written outside --root");
    let meta = std::fs::symlink_metadata(repo.join("dangling.yaml")).unwrap();
    assert!(meta.is_file(), "the symlink was replaced by the plaintext file");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_same_yaml(&std::fs::read(repo.join("dangling.yaml")).unwrap(), SECRET.as_bytes(), "-o over a link");
    // A link to an existing file outside the root is refused as before.
    std::fs::write(d.join("target.yaml"), "keep").unwrap();
    std::os::unix::fs::symlink(d.join("target.yaml"), repo.join("out-link.yaml")).unwrap();
    let err = decrypt_err(&repo, &["--age-key-file", kf, "-o", "out-link.yaml", "in.enc.yaml"]);
    assert!(err.contains("the path leads outside --root"), "{err}");
    assert_eq!(std::fs::read_to_string(d.join("target.yaml")).unwrap(), "keep");
    // unsupported / wrong format
    let err = decrypt_err(&repo, &["--age-key-file", kf, "--input-type", "json", "in.enc.yaml"]);
    assert!(err.contains("invalid JSON"), "{err}");
}

#[test]
fn stdin_and_output_types() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    let enc = encrypted(d, &key, "s.enc.yaml", SECRET, &["--encrypted-regex", "^stringData$"]);
    let kf = key.file.to_str().unwrap();
    let out = portcullis(d, &["decrypt", "--age-key-file", kf, "--input-type", "yaml", "-"], &[], Some(enc.as_bytes()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_yaml(&out.stdout, SECRET.as_bytes(), "stdin");
    let json = decrypt_ok(d, &["--age-key-file", kf, "--output-type", "json", "s.enc.yaml"]);
    let theirs = sops_decrypt(d, "s.enc.yaml", &key.file, &["--output-type", "json"]);
    assert_eq!(json_canon(&json), json_canon(&theirs));
    let err = String::from_utf8_lossy(&portcullis(d, &["decrypt", "--age-key-file", kf, "-"], &[], Some(b"x")).stderr)
        .into_owned();
    assert!(err.contains("needs --input-type"), "{err}");
}

#[test]
fn manifest_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    let s1 = encrypted(d, &key, "s1.enc.yaml", SECRET, &["--encrypted-regex", "^(data|stringData)$"]);
    let s2 = encrypted(d, &key, "s2.enc.yaml", &SECRET.replace("name: db", "name: db2"), &[]);
    let env = encrypted(d, &key, "e.enc.env", "TOKEN=abc\n", &[]);
    let cm = "# a plain ConfigMap, passed through unchanged\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm   # odd spacing kept\ndata:\n  k: 'v'\n";
    let env_b64 = base64::engine::general_purpose::STANDARD.encode(&env);
    let wrapped = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: env\ndata:\n  app.env: {env_b64}\n  plain: aGVsbG8=\n"
    );
    let stream = format!("{cm}---\n{s1}---\n{s2}---\n{wrapped}");
    std::fs::write(d.join("all.yaml"), &stream).unwrap();
    let out = decrypt_ok(d, &["--manifests", "--age-key-file", key.file.to_str().unwrap(), "all.yaml"]);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with(cm), "non-SOPS documents pass through byte for byte:\n{text}");
    let expect = format!(
        "{cm}---\n{SECRET}---\n{}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: env\ndata:\n  app.env: {}\n  plain: aGVsbG8=\n",
        SECRET.replace("name: db", "name: db2"),
        base64::engine::general_purpose::STANDARD.encode("TOKEN=abc\n")
    );
    assert_same_yaml(text.as_bytes(), expect.as_bytes(), "manifests");
    assert!(!text.contains("ENC[") && !text.contains("sops:"), "{text}");
    // From stdin, and a failure names the resource.
    let tampered = stream.replace("namespace: prod", "namespace: evil");
    let out = portcullis(
        d,
        &["decrypt", "--manifests", "--age-key-file", key.file.to_str().unwrap()],
        &[],
        Some(tampered.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Secret evil/db (document 2)") && err.contains("MAC mismatch"), "{err}");
}

#[test]
fn manifest_json_list_and_krm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    let enc_json = encrypted(
        d,
        &key,
        "s.enc.json",
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"j"},"stringData":{"p":"x1"}}"#,
        &["--encrypted-regex", "^stringData$"],
    );
    let list = format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[{enc_json},{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c"}}}}]}}"#
    );
    std::fs::write(d.join("list.json"), list).unwrap();
    let kf = key.file.to_str().unwrap();
    let out = decrypt_ok(d, &["--manifests", "--age-key-file", kf, "list.json"]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["items"][0]["stringData"]["p"], "x1");
    assert!(v["items"][0].get("sops").is_none());
    assert_eq!(v["items"][1]["metadata"]["name"], "c");

    let enc_yaml = encrypted(d, &key, "s.enc.yaml", SECRET, &["--encrypted-regex", "^stringData$"]);
    let indented: String = enc_yaml.lines().map(|l| format!("      {l}\n")).collect();
    let rl = format!(
        "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: c\n  -\n{indented}functionConfig:\n  apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: fn\n"
    );
    let out = portcullis(d, &["decrypt", "--krm", "--age-key-file", kf], &[], Some(rl.as_bytes()));
    assert!(out.status.success(), "{}\n{rl}", String::from_utf8_lossy(&out.stderr));
    let docs = portcullis::sops::yaml::parse(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    let root = &docs[0].root;
    assert_eq!(root.get("kind").and_then(portcullis::sops::tree::Node::as_str), Some("ResourceList"));
    let Some(portcullis::sops::tree::Node::Seq(items)) = root.get("items") else { panic!() };
    let pw = items[1].get("stringData").and_then(|s| s.get("password")).and_then(portcullis::sops::tree::Node::as_str);
    assert_eq!(pw, Some("hunter2"));
    assert!(items[1].get("sops").is_none());
    let out = portcullis(d, &["decrypt", "--krm", "--age-key-file", kf], &[], Some(b"kind: Other\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a config.kubernetes.io/v1 ResourceList"));
}

#[test]
fn help_has_examples() {
    let out = portcullis(Path::new("."), &["decrypt", "--help"], &[], None);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Examples:") && help.contains("--manifests") && help.contains("--krm"), "{help}");
}

#[test]
fn detect_finds_what_sops_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    let enc = encrypted(
        d,
        &key,
        "s.enc.json",
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"j"},"stringData":{"p":"x1"}}"#,
        &["--encrypted-regex", "^stringData$"],
    );
    let mut obj: serde_json::Value = serde_json::from_str(&enc).unwrap();
    let found = portcullis::sops::detect::find_ciphertext(&obj).unwrap();
    assert!(found.contains("SOPS metadata"), "{found}");
    obj.as_object_mut().unwrap().remove("sops");
    assert_eq!(
        portcullis::sops::detect::find_ciphertext(&obj).as_deref(),
        Some("stringData.p holds a SOPS ENC[AES256_GCM,…] value")
    );
    let plain = decrypt_ok(d, &["--age-key-file", key.file.to_str().unwrap(), "s.enc.json"]);
    let plain: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(portcullis::sops::detect::find_ciphertext(&plain), None);
}

#[test]
fn manifest_yaml_list_and_nested_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    let enc = encrypted(d, &key, "s.enc.yaml", SECRET, &["--encrypted-regex", "^stringData$"]);
    let indented: String = enc.lines().map(|l| format!("      {l}\n")).collect();
    let list = format!("apiVersion: v1\nkind: List\nitems:\n  -\n{indented}");
    // A Secret with sops metadata whose stringData value is itself an encrypted dotenv file.
    let env = encrypted(d, &key, "e.enc.env", "TOKEN=abc\n", &[]);
    let nested_plain = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: nested\nstringData:\n  app.env: {}\n",
        portcullis::sops::yaml_emit::str_scalar(&env)
    );
    std::fs::write(d.join("nested.yaml"), &nested_plain).unwrap();
    let nested = String::from_utf8(sops_encrypt(
        d,
        "nested.yaml",
        &["--age", &key.recipient, "--encrypted-regex", "^metadata$"],
    ))
    .unwrap();
    std::fs::write(d.join("all.yaml"), format!("{list}---\n{nested}")).unwrap();
    let out = decrypt_ok(d, &["--manifests", "--age-key-file", key.file.to_str().unwrap(), "all.yaml"]);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("ENC[") && !text.contains("sops"), "{text}");
    let docs = portcullis::sops::yaml::parse(&text).unwrap();
    assert_eq!(docs.len(), 2, "{text}");
    let app_env =
        docs[1].root.get("stringData").and_then(|s| s.get("app.env")).and_then(portcullis::sops::tree::Node::as_str);
    assert_eq!(app_env, Some("TOKEN=abc\n"), "{text}");
}

#[test]
fn manifest_secret_value_binary_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "key");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let enc = encrypted(d, &key, "tls.crt", pem, &[]);
    assert!(enc.trim_start().starts_with('{'), "sops stores unknown extensions as binary JSON");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&enc);
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: tls\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {b64}\n"
    );
    std::fs::write(d.join("tls.yaml"), secret).unwrap();
    let out = decrypt_ok(d, &["--manifests", "--age-key-file", key.file.to_str().unwrap(), "tls.yaml"]);
    let docs = portcullis::sops::yaml::parse(std::str::from_utf8(&out).unwrap()).unwrap();
    let value =
        docs[0].root.get("data").and_then(|v| v.get("tls.crt")).and_then(portcullis::sops::tree::Node::as_str).unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(value).unwrap(), pem.as_bytes());
}
