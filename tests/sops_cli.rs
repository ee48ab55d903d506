//! `portcullis decrypt` as a command: key sources, confinement under --root, size limit, output
//! file rules, manifest streams and KRM ResourceLists.
#![allow(clippy::unwrap_used)]

use crate::sops_support as support;

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
    // The Flux-style embedded document is decrypted only when that is explicitly accepted.
    let args = ["--manifests", "--allow-unbound-embedded", "--age-key-file", key.file.to_str().unwrap(), "all.yaml"];
    let out = decrypt_ok(d, &args);
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
    // These Secrets are encrypted without a namespace (bound to none): allowed explicitly.
    let out = decrypt_ok(d, &["--manifests", "--allow-no-namespace", "--age-key-file", kf, "list.json"]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["items"][0]["stringData"]["p"], "x1");
    assert!(v["items"][0].get("sops").is_none());
    assert_eq!(v["items"][1]["metadata"]["name"], "c");

    let enc_yaml = encrypted(d, &key, "s.enc.yaml", SECRET, &["--encrypted-regex", "^stringData$"]);
    let indented: String = enc_yaml.lines().map(|l| format!("      {l}\n")).collect();
    let rl = format!(
        "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: c\n  -\n{indented}functionConfig:\n  apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: fn\n"
    );
    let out =
        portcullis(d, &["decrypt", "--krm", "--allow-no-namespace", "--age-key-file", kf], &[], Some(rl.as_bytes()));
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
    let key_file = key.file.to_str().unwrap();
    // The nested dotenv is a Flux-style embedded document: its MAC does not bind the Secret.
    let err = decrypt_err(d, &["--manifests", "--allow-no-namespace", "--age-key-file", key_file, "all.yaml"]);
    assert!(
        err.contains("stringData.app.env is a SOPS document embedded") && err.contains("--allow-unbound-embedded"),
        "{err}"
    );
    assert!(!err.contains("TOKEN=abc"), "{err}");
    let args =
        ["--manifests", "--allow-no-namespace", "--allow-unbound-embedded", "--age-key-file", key_file, "all.yaml"];
    let out = decrypt_ok(d, &args);
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
    let key_file = key.file.to_str().unwrap();
    // Embedded in a Secret, the document's MAC does not bind the Secret: refused unless allowed.
    let err = decrypt_err(d, &["--manifests", "--age-key-file", key_file, "tls.yaml"]);
    assert!(err.contains("Secret data.tls.crt is a SOPS document embedded in a Secret"), "{err}");
    let out = decrypt_ok(d, &["--manifests", "--allow-unbound-embedded", "--age-key-file", key_file, "tls.yaml"]);
    let docs = portcullis::sops::yaml::parse(std::str::from_utf8(&out).unwrap()).unwrap();
    let value =
        docs[0].root.get("data").and_then(|v| v.get("tls.crt")).and_then(portcullis::sops::tree::Node::as_str).unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(value).unwrap(), pem.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// The reconciler path with the real `kubectl kustomize` (kustomize v5): decrypt the sources
// before the build, then check the built resources against the identities their files were
// encrypted with.

use crate::common;

/// A repository: a base with an encrypted Secret (no namespace) and an encrypted dotenv file
/// behind a secretGenerator; overlays prod and dev with namespace, labels, annotations, a
/// strategic-merge patch (dev also a namePrefix) and their own Secret encrypted for their
/// namespace; `leak` moves prod into dev; `strip` does the same and removes the origin annotation.
struct Repo {
    _dir: tempfile::TempDir,
    d: std::path::PathBuf,
    top: std::path::PathBuf,
    key: Key,
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn overlay(ns: &str, prefix: &str) -> String {
    format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../base\n  - api.enc.yaml\n\
         namespace: {ns}\n{prefix}labels:\n  - pairs:\n      env: {ns}\ncommonAnnotations:\n  team: payments\n\
         patches:\n  - path: secret-patch.yaml\n"
    )
}

fn repo() -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let key = keygen(&d, "key");
    let top = d.join("repo");
    let enc = |rel: &str, plain: &str, extra: &[&str]| {
        let ext = rel.rsplit('.').next().unwrap();
        let name = format!("plain-{}.{ext}", rel.replace('/', "-"));
        std::fs::write(d.join(&name), plain).unwrap();
        let mut flags = vec!["--age", key.recipient.as_str()];
        flags.extend_from_slice(extra);
        write(&top.join(rel), &String::from_utf8(sops_encrypt(&d, &name, &flags)).unwrap());
    };
    let regex: &[&str] = &["--encrypted-regex", "^(data|stringData)$"];
    let user = base64::engine::general_purpose::STANDARD.encode("dbuser-from-base");
    enc(
        "base/db.enc.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\ndata:\n  user: {user}\nstringData:\n  password: base-db-password-123\n"
        ),
        regex,
    );
    enc("base/app.enc.env", "API_TOKEN=token-from-dotenv-0001\nMODE=fast\n", &[]);
    write(
        &top.join("base/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - db.enc.yaml\n  - deploy.yaml\n\
         secretGenerator:\n  - name: app-env\n    envs:\n      - app.enc.env\n",
    );
    write(
        &top.join("base/deploy.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  selector:\n    matchLabels: {app: app}\n  template:\n    metadata:\n      labels: {app: app}\n    spec:\n      containers:\n        - name: app\n          image: registry.example.com/app@sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270\n          envFrom:\n            - secretRef: {name: app-env}\n            - secretRef: {name: db}\n            - secretRef: {name: api}\n",
    );
    for (ns, prefix) in [("prod", ""), ("dev", "namePrefix: dev-\n")] {
        enc(
            &format!("overlays/{ns}/api.enc.yaml"),
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n  namespace: {ns}\nstringData:\n  key: {ns}-api-key-000111\n"
            ),
            regex,
        );
        write(&top.join(format!("overlays/{ns}/kustomization.yaml")), &overlay(ns, prefix));
        write(
            &top.join(format!("overlays/{ns}/secret-patch.yaml")),
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n  namespace: {ns}\n  labels:\n    patched: \"yes\"\nstringData:\n  region: eu-west-1\n"
            ),
        );
    }
    write(
        &top.join("overlays/leak/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../prod\nnamespace: dev\n",
    );
    write(
        &top.join("overlays/strip/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../prod\nnamespace: dev\n\
         patches:\n  - target: {kind: Secret, name: api}\n    patch: |-\n      - op: remove\n        path: /metadata/annotations/portcullis.dev~1sops-origin\n",
    );
    Repo { _dir: dir, d, top, key }
}

fn kubectl_kustomize(dir: &Path) -> Vec<u8> {
    let out = std::process::Command::new("kubectl").arg("kustomize").arg(dir).output().unwrap();
    assert!(out.status.success(), "kubectl kustomize {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn yaml_docs(bytes: &[u8]) -> Vec<serde_json::Value> {
    use serde::Deserialize as _;
    serde_yaml_ng::Deserializer::from_slice(bytes)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Copy the repository with every encrypted file decrypted by the real sops: the reference.
fn by_hand(repo: &Repo) -> std::path::PathBuf {
    let hand = repo.d.join("hand");
    fn copy(from: &Path, to: &Path, key: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let (src, dst) = (e.path(), to.join(e.file_name()));
            if src.is_dir() {
                copy(&src, &dst, key);
            } else if e.file_name().to_string_lossy().contains(".enc.") {
                std::fs::write(&dst, sops_decrypt(from, &e.file_name().to_string_lossy(), key, &[])).unwrap();
            } else {
                std::fs::copy(&src, &dst).unwrap();
            }
        }
    }
    copy(&repo.top, &hand, &repo.key.file);
    hand
}

/// `portcullis decrypt --tree` of the repository into a fresh scratch directory; returns it.
fn tree(repo: &Repo, name: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(repo.d.join("scratch")).unwrap();
    let out = repo.d.join("scratch").join(name);
    let top = repo.top.to_str().unwrap();
    decrypt_ok(
        &repo.d,
        &[
            "--root",
            top,
            "--tree",
            top,
            "--out",
            out.to_str().unwrap(),
            "--age-key-file",
            repo.key.file.to_str().unwrap(),
        ],
    );
    out
}

fn check_binding(repo: &Repo, manifest: &Path, build: &[u8], extra: &[&str]) -> std::process::Output {
    let mut args = vec!["decrypt", "--check-binding", manifest.to_str().unwrap()];
    args.extend_from_slice(extra);
    portcullis(&repo.d, &args, &[], Some(build))
}

#[test]
#[cfg_attr(not(kustomize), ignore = "needs kubectl (kustomize v5) on PATH; tests/run-all.sh says how to get it")]
fn tree_mode_builds_the_same_plaintext_as_decrypting_by_hand() {
    let repo = repo();
    let hand = by_hand(&repo);
    let out = tree(&repo, "tree");
    let manifest = repo.d.join("scratch/tree.binding.json");
    // Files and directories are private; the manifest sits beside the tree, not in it.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o700);
    assert_eq!(mode(&out.join("base/db.enc.yaml")), 0o600);
    assert_eq!(mode(&manifest), 0o600);
    let plain_env = std::fs::read_to_string(out.join("base/app.enc.env")).unwrap();
    assert!(plain_env.contains("API_TOKEN=token-from-dotenv-0001") && !plain_env.contains("sops"), "{plain_env}");
    for (overlay, extra) in [("prod", &[][..]), ("dev", &["--renamed", "allow"][..])] {
        let expected = yaml_docs(&kubectl_kustomize(&hand.join("overlays").join(overlay)));
        let built = kubectl_kustomize(&out.join("overlays").join(overlay));
        assert!(
            String::from_utf8_lossy(&built).contains("portcullis.dev/sops-origin"),
            "kustomize keeps the annotation"
        );
        let checked = check_binding(&repo, &manifest, &built, extra);
        assert!(checked.status.success(), "{overlay}: {}", String::from_utf8_lossy(&checked.stderr));
        // An accepted rename is still reported.
        let notes = String::from_utf8_lossy(&checked.stderr);
        assert_eq!(overlay == "dev", notes.contains("note: Secret dev/api (from overlays/dev/api.enc.yaml) is renamed by namePrefix/nameSuffix to Secret dev/dev-api (accepted: --renamed allow)"), "{notes}");
        let got = yaml_docs(&checked.stdout);
        assert_eq!(got, expected, "{overlay}: tree mode differs from decrypting by hand");
        assert!(
            got.iter().any(|o| o["kind"] == "Secret" && o["stringData"]["key"] == format!("{overlay}-api-key-000111"))
        );
        assert!(!String::from_utf8_lossy(&checked.stdout).contains("ENC["));
    }
    // dev renames the encrypted Secrets with namePrefix: refused unless allowed.
    let built = kubectl_kustomize(&out.join("overlays/dev"));
    let refused = check_binding(&repo, &manifest, &built, &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(
            "Secret dev/api (from overlays/dev/api.enc.yaml) is renamed by namePrefix/nameSuffix to Secret dev/dev-api"
        ),
        "{err}"
    );
}

#[test]
#[cfg_attr(not(kustomize), ignore = "needs kubectl (kustomize v5) on PATH; tests/run-all.sh says how to get it")]
fn moving_a_prod_secret_into_dev_is_refused() {
    let repo = repo();
    let out = tree(&repo, "tree");
    let manifest = repo.d.join("scratch/tree.binding.json");
    let built = kubectl_kustomize(&out.join("overlays/leak"));
    let refused = check_binding(&repo, &manifest, &built, &["--renamed", "allow"]);
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Secret prod/api was encrypted for namespace prod; this build puts it in dev"), "{err}");
    // The base's Secret has no namespace in its file: it may go anywhere, and is not reported.
    assert!(!err.contains("Secret db"), "{err}");
    // Getting past it: remove the origin annotation with a patch. The values still give it away.
    let built = kubectl_kustomize(&out.join("overlays/strip"));
    let api = yaml_docs(&built).into_iter().find(|o| o["metadata"]["name"] == "api").unwrap();
    assert!(api["metadata"]["annotations"].get("portcullis.dev/sops-origin").is_none(), "the patch removed it: {api}");
    let refused = check_binding(&repo, &manifest, &built, &["--renamed", "allow"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("Secret dev/api holds a secret value of Secret prod/api encrypted for another namespace"),
        "{err}"
    );
}

#[test]
fn tampered_base_and_unsafe_output_directories_are_refused() {
    let repo = repo();
    let kf = repo.key.file.to_str().unwrap().to_owned();
    let top = repo.top.to_str().unwrap().to_owned();
    // decrypt --check: 0 for intact files, 1 for a tampered one, 2 for one it cannot check.
    let check = |files: &[&str]| {
        let mut args = vec!["decrypt", "--root", &top, "--age-key-file", &kf, "--check"];
        args.extend_from_slice(files);
        portcullis(&repo.top, &args, &[], None)
    };
    let ok = check(&["base/db.enc.yaml", "base/app.enc.env", "overlays/prod/api.enc.yaml"]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    let enc = std::fs::read_to_string(repo.top.join("base/db.enc.yaml")).unwrap();
    let at = enc.find("password: ENC[AES256_GCM,data:").unwrap() + "password: ENC[AES256_GCM,data:".len();
    let flipped = if &enc[at..=at] == "A" { "B" } else { "A" };
    std::fs::write(repo.top.join("base/db.enc.yaml"), format!("{}{flipped}{}", &enc[..at], &enc[at + 1..])).unwrap();
    let bad = check(&["base/db.enc.yaml", "base/app.enc.env"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("base/db.enc.yaml: FAILED:"), "{err}");
    assert!(String::from_utf8_lossy(&bad.stdout).contains("base/app.enc.env: OK"));
    assert_eq!(check(&["base/kustomization.yaml"]).status.code(), Some(2));
    // The tree is refused as a whole and no plaintext is left behind.
    let out = repo.d.join("scratch/tree");
    std::fs::create_dir_all(repo.d.join("scratch")).unwrap();
    let err =
        decrypt_err(&repo.d, &["--root", &top, "--tree", &top, "--out", out.to_str().unwrap(), "--age-key-file", &kf]);
    assert!(err.contains("decrypting base/db.enc.yaml"), "{err}");
    assert!(!out.exists(), "a partial tree was left behind");
    // --out inside the source tree, an existing non-empty directory, `..`, a symlink out.
    std::fs::write(repo.top.join("base/db.enc.yaml"), &enc).unwrap();
    let inside = repo.top.join("plain");
    let err = decrypt_err(
        &repo.d,
        &["--root", &top, "--tree", &top, "--out", inside.to_str().unwrap(), "--age-key-file", &kf],
    );
    assert!(err.contains("inside") && err.contains("scratch directory"), "{err}");
    let err = decrypt_err(
        &repo.d,
        &["--root", &top, "--tree", &top, "--out", repo.d.to_str().unwrap(), "--age-key-file", &kf],
    );
    assert!(err.contains("not an empty directory"), "{err}");
    let err = decrypt_err(&repo.top, &["--tree", "../repo", "--out", out.to_str().unwrap(), "--age-key-file", &kf]);
    assert!(err.contains("`..` is not allowed"), "{err}");
    // Inside the Git checkout of SRC, though outside SRC itself.
    std::fs::create_dir(repo.top.join(".git")).unwrap();
    let base = repo.top.join("base");
    let beside = repo.top.join("plain");
    let err = decrypt_err(
        &repo.d,
        &["--root", &top, "--tree", base.to_str().unwrap(), "--out", beside.to_str().unwrap(), "--age-key-file", &kf],
    );
    assert!(err.contains(&format!("inside {top} (the source tree or its Git checkout)")), "{err}");
    // A symlink to a file inside the tree is copied as a file (decrypted if it is a SOPS file);
    // .git is not copied.
    std::fs::write(repo.top.join(".git/config"), "[core]\n").unwrap();
    std::os::unix::fs::symlink("../../base/db.enc.yaml", repo.top.join("overlays/prod/db-link.enc.yaml")).unwrap();
    decrypt_ok(&repo.d, &["--root", &top, "--tree", &top, "--out", out.to_str().unwrap(), "--age-key-file", &kf]);
    assert!(!out.join(".git").exists());
    let link = out.join("overlays/prod/db-link.enc.yaml");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
    assert!(std::fs::read_to_string(&link).unwrap().contains("password: base-db-password-123"));
    std::fs::remove_dir_all(&out).unwrap();
    // An existing manifest is never overwritten, and then no tree is left either.
    let err =
        decrypt_err(&repo.d, &["--root", &top, "--tree", &top, "--out", out.to_str().unwrap(), "--age-key-file", &kf]);
    assert!(err.contains("tree.binding.json: cannot create the file (it must not exist yet)"), "{err}");
    assert!(!out.exists());
    std::fs::remove_file(repo.d.join("scratch/tree.binding.json")).unwrap();
    std::os::unix::fs::symlink(&repo.key.file, repo.top.join("base/key.txt")).unwrap();
    let err =
        decrypt_err(&repo.d, &["--root", &top, "--tree", &top, "--out", out.to_str().unwrap(), "--age-key-file", &kf]);
    assert!(err.contains("base/key.txt: the symlink leads outside the tree"), "{err}");
    assert!(!out.exists());
}

#[tokio::test]
#[cfg_attr(not(kustomize), ignore = "needs kubectl (kustomize v5) on PATH; tests/run-all.sh says how to get it")]
async fn building_without_decryption_is_denied_at_admission() {
    let repo = repo();
    let built = kubectl_kustomize(&repo.top.join("overlays/prod"));
    let objects = yaml_docs(&built);
    let secrets: Vec<_> = objects.iter().filter(|o| o["kind"] == "Secret").collect();
    assert_eq!(secrets.len(), 3, "db, api and the generated app-env");
    assert!(secrets.iter().any(|s| s.get("sops").is_some()), "the output still carries SOPS metadata");
    let app = common::example_app();
    for secret in secrets {
        let mut review = common::fixture("secret-create.json");
        review["request"]["object"] = secret.clone();
        let review = common::in_namespace(review, "prod");
        let response = common::review(&app, &review).await;
        assert_eq!(response["allowed"], false, "{secret}");
        let m = response["status"]["message"].as_str().unwrap();
        assert!(m.contains("(built-in: sops-ciphertext)"), "{}: {m}", secret["metadata"]["name"]);
    }
    // And the binding check refuses such a build too.
    tree(&repo, "tree");
    let refused = check_binding(&repo, &repo.d.join("scratch/tree.binding.json"), &built, &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("it was not decrypted before the build"));
}

#[test]
#[cfg_attr(not(kustomize), ignore = "needs kubectl (kustomize v5) on PATH; tests/run-all.sh says how to get it")]
fn argocd_cmp_generate_runs_as_argo_cd_runs_it() {
    let repo = repo();
    let hand = by_hand(&repo);
    let plugin: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(common::root().join("charts/argocd-cmp/plugin.yaml")).unwrap(),
    )
    .unwrap();
    let generate = &plugin["spec"]["generate"];
    let command: Vec<String> = generate["command"]
        .as_array()
        .unwrap()
        .iter()
        .chain(generate["args"].as_array().unwrap())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    // The sidecar has `kustomize`; here the one built into kubectl stands in for it.
    let bin = repo.d.join("bin");
    write(&bin.join("kustomize"), "#!/bin/sh\n[ \"$1\" = build ] && shift\nexec kubectl kustomize \"$@\"\n");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(bin.join("kustomize"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_portcullis")).parent().unwrap().to_owned();
    let path = format!("{}:{}:{}", bin.display(), exe.display(), std::env::var("PATH").unwrap());
    let tmp = repo.d.join("cmp-tmp");
    std::fs::create_dir(&tmp).unwrap();
    for (overlay, renamed) in [("prod", None), ("dev", Some("allow"))] {
        let mut cmd = std::process::Command::new(&command[0]);
        cmd.args(&command[1..])
            .current_dir(repo.top.join("overlays").join(overlay))
            .env_clear()
            .env("PATH", &path)
            .env("HOME", &repo.d)
            .env("TMPDIR", &tmp)
            .env("SOPS_AGE_KEY_FILE", &repo.key.file)
            .env("ARGOCD_APP_NAME", format!("app-{overlay}"))
            .env("ARGOCD_APP_NAMESPACE", overlay)
            .env("ARGOCD_APP_REVISION", "0123456789abcdef0123456789abcdef01234567")
            .env("ARGOCD_APP_SOURCE_REPO_URL", "https://git.example.com/acme/deploy.git")
            .env("ARGOCD_APP_SOURCE_PATH", format!("overlays/{overlay}"))
            .env("ARGOCD_APP_SOURCE_TARGET_REVISION", "HEAD");
        if let Some(r) = renamed {
            cmd.env("ARGOCD_ENV_PORTCULLIS_RENAMED", r);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{overlay}: {}", String::from_utf8_lossy(&out.stderr));
        let expected = yaml_docs(&kubectl_kustomize(&hand.join("overlays").join(overlay)));
        assert_eq!(yaml_docs(&out.stdout), expected, "{overlay}");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "the scratch directory is removed");
    }
    // A Helm chart with an encrypted values file (the helm-secrets use case). The sidecar has
    // `helm`; here Helm's engine from helm-python-sdk (installed by tests/run-all.sh) stands in.
    let python = std::process::Command::new("python3")
        .args(["-c", "import helm_python, yaml, sys; print(sys.executable)"])
        .output()
        .unwrap();
    assert!(python.status.success(), "helm-python-sdk is missing: run tests/run-all.sh, which installs it");
    let python = String::from_utf8(python.stdout).unwrap();
    write(&bin.join("helm"), &format!("#!{}\n{HELM_SHIM}", python.trim()));
    std::fs::set_permissions(bin.join("helm"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let chart = repo.top.join("charts/web");
    write(&chart.join("Chart.yaml"), "apiVersion: v2\nname: web\nversion: 0.1.0\n");
    write(&chart.join("values.yaml"), "db:\n  user: app\n");
    write(
        &chart.join("templates/secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}-db\nstringData:\n  user: {{ .Values.db.user | quote }}\n  password: {{ .Values.db.password | quote }}\n",
    );
    std::fs::write(repo.d.join("plain-values.yaml"), "db:\n  password: helm-secret-password-42\n").unwrap();
    let enc = sops_encrypt(&repo.d, "plain-values.yaml", &["--age", &repo.key.recipient]);
    std::fs::write(chart.join("secrets.enc.yaml"), enc).unwrap();
    let out = std::process::Command::new(&command[0])
        .args(&command[1..])
        .current_dir(&chart)
        .env_clear()
        .env("PATH", &path)
        .env("HOME", &repo.d)
        .env("TMPDIR", &tmp)
        .env("SOPS_AGE_KEY_FILE", &repo.key.file)
        .env("ARGOCD_APP_NAME", "web")
        .env("ARGOCD_APP_NAMESPACE", "prod")
        .env("ARGOCD_APP_SOURCE_PATH", "charts/web")
        .env("ARGOCD_ENV_HELM_VALUES", "values.yaml secrets.enc.yaml")
        .output()
        .unwrap();
    assert!(out.status.success(), "helm: {}", String::from_utf8_lossy(&out.stderr));
    let docs = yaml_docs(&out.stdout);
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["metadata"]["name"], "web-db");
    assert_eq!(docs[0]["stringData"]["password"], "helm-secret-password-42");
    assert_eq!(docs[0]["stringData"]["user"], "app");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "the scratch directory is removed");
    // Without the switch, dev's renamed Secrets fail the generate step.
    let out = std::process::Command::new(&command[0])
        .args(&command[1..])
        .current_dir(repo.top.join("overlays/dev"))
        .env_clear()
        .env("PATH", &path)
        .env("TMPDIR", &tmp)
        .env("SOPS_AGE_KEY_FILE", &repo.key.file)
        .env("ARGOCD_APP_NAMESPACE", "dev")
        .env("ARGOCD_APP_SOURCE_PATH", "overlays/dev")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("renamed by namePrefix/nameSuffix"));
    // A plain-YAML application holding a file whose `name` and `namespace` keys were swapped
    // (the MAC still verifies: it covers values, not key names): refused because the plugin
    // expects the application's namespace; `PORTCULLIS_EXPECT_NAMESPACE=*` turns that off.
    let api = std::fs::read_to_string(repo.top.join("overlays/prod/api.enc.yaml")).unwrap();
    let swapped = api.replace("    name: api\n    namespace: prod\n", "    namespace: api\n    name: prod\n");
    assert_ne!(swapped, api);
    write(&repo.top.join("plain/api.enc.yaml"), &swapped);
    let run = |expect: Option<&str>| {
        let mut cmd = std::process::Command::new(&command[0]);
        cmd.args(&command[1..])
            .current_dir(repo.top.join("plain"))
            .env_clear()
            .env("PATH", &path)
            .env("TMPDIR", &tmp)
            .env("SOPS_AGE_KEY_FILE", &repo.key.file)
            .env("ARGOCD_APP_NAMESPACE", "prod")
            .env("ARGOCD_APP_SOURCE_PATH", "plain");
        if let Some(e) = expect {
            cmd.env("ARGOCD_ENV_PORTCULLIS_EXPECT_NAMESPACE", e);
        }
        cmd.output().unwrap()
    };
    let out = run(None);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not expected (prod)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(Some("*"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(yaml_docs(&out.stdout)[0]["metadata"]["namespace"], "api", "undetectable without the expectation");
}

/// `helm template NAME CHART --namespace NS -f VALUES…` on Helm's engine (helm-python-sdk).
const HELM_SHIM: &str = r#"import sys, yaml, helm_python as helm
args = sys.argv[1:]
assert args[0] == "template", args
name, chart, ns, files, i = args[1], args[2], "default", [], 3
while i < len(args):
    if args[i] == "--namespace": ns = args[i + 1]
    elif args[i] == "-f": files.append(args[i + 1])
    else: sys.exit("helm shim: unsupported flag " + args[i])
    i += 2
def merge(a, b):
    for k, v in b.items():
        a[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return a
values = {}
for f in files:
    merge(values, yaml.safe_load(open(f)) or {})
with helm.Chart.load(chart) as c:
    out = c.render(values, name=name, namespace=ns, is_install=True)
for path, text in sorted(out.items()):
    if not path.endswith("NOTES.txt") and text.strip():
        print("---\n# Source: " + path + "\n" + text)
"#;

/// The repository rewritten for the generator: the encrypted YAML files are listed by a
/// `SopsGenerator` config instead of `resources:` (a dotenv file cannot go through a generator).
fn to_generator_mode(repo: &Repo) {
    let generator = |files: &str| {
        format!("apiVersion: portcullis.dev/v1alpha1\nkind: SopsGenerator\nmetadata:\n  name: secrets\nfiles:\n{files}")
    };
    write(&repo.top.join("base/secrets.yaml"), &generator("  - db.enc.yaml\n"));
    write(
        &repo.top.join("base/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deploy.yaml\ngenerators:\n  - secrets.yaml\n",
    );
    for (ns, prefix) in [("prod", ""), ("dev", "namePrefix: dev-\n")] {
        write(&repo.top.join(format!("overlays/{ns}/secrets.yaml")), &generator("  - ./api.enc.yaml\n"));
        let k = overlay(ns, prefix)
            .replace("  - api.enc.yaml\n", "")
            .replace("namespace:", "generators:\n  - secrets.yaml\nnamespace:");
        write(&repo.top.join(format!("overlays/{ns}/kustomization.yaml")), &k);
    }
}

/// `kubectl kustomize --enable-alpha-plugins DIR` with the generator installed as a legacy exec
/// plugin under $XDG_CONFIG_HOME.
fn kustomize_with_plugin(repo: &Repo, dir: &Path, binding_dir: Option<&Path>) -> std::process::Output {
    let xdg = repo.d.join("xdg");
    // Ours, and the same wrapper where kustomize looks for KSOPS's legacy plugin.
    for at in ["portcullis.dev/v1alpha1/sopsgenerator/SopsGenerator", "viaduct.ai/v1/ksops/ksops"] {
        let plugin = xdg.join("kustomize/plugin").join(at);
        if !plugin.exists() {
            let exe = env!("CARGO_BIN_EXE_portcullis");
            write(&plugin, &format!("#!/bin/sh\nexec '{exe}' decrypt --generator \"$1\"\n"));
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let mut cmd = std::process::Command::new("kubectl");
    cmd.args(["kustomize", "--enable-alpha-plugins"])
        .arg(dir)
        .env("XDG_CONFIG_HOME", &xdg)
        .env("SOPS_AGE_KEY_FILE", &repo.key.file)
        .env_remove("PORTCULLIS_BINDING_DIR");
    if let Some(b) = binding_dir {
        cmd.env("PORTCULLIS_BINDING_DIR", b);
    }
    cmd.output().unwrap()
}

fn sorted(mut docs: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    docs.sort_by_key(|d| (d["kind"].to_string(), d["metadata"]["name"].to_string()));
    docs
}

#[test]
#[cfg_attr(not(kustomize), ignore = "needs kubectl (kustomize v5) on PATH; tests/run-all.sh says how to get it")]
fn generator_mode_builds_the_same_plaintext_and_keeps_the_binding() {
    let repo = repo();
    let hand = by_hand(&repo);
    to_generator_mode(&repo);
    for (overlay, extra) in [("prod", &[][..]), ("dev", &["--renamed", "allow"][..])] {
        let bdir = repo.d.join(format!("binding-{overlay}"));
        std::fs::create_dir(&bdir).unwrap();
        let built = kustomize_with_plugin(&repo, &repo.top.join("overlays").join(overlay), Some(&bdir));
        assert!(built.status.success(), "{overlay}: {}", String::from_utf8_lossy(&built.stderr));
        assert_eq!(std::fs::read_dir(&bdir).unwrap().count(), 2, "one manifest per generator run");
        let checked = check_binding(&repo, &bdir, &built.stdout, extra);
        assert!(checked.status.success(), "{overlay}: {}", String::from_utf8_lossy(&checked.stderr));
        // The same as decrypting by hand and building, less the dotenv secretGenerator.
        let hand_built = yaml_docs(&kubectl_kustomize(&hand.join("overlays").join(overlay)));
        let env_name = hand_built.iter().find_map(|d| d["metadata"]["name"].as_str().filter(|n| n.contains("app-env")));
        let hand_text = serde_json::to_string(&hand_built).unwrap();
        let env_name = format!("\"{}\"", env_name.unwrap());
        // Without its Secret the reference is dangling: kustomize neither hashes nor prefixes it.
        let unhashed = "\"app-env\"";
        let expected: Vec<serde_json::Value> =
            serde_json::from_str::<Vec<serde_json::Value>>(&hand_text.replace(&env_name, unhashed))
                .unwrap()
                .into_iter()
                .filter(|d| d["kind"] != "Secret" || !d["metadata"]["name"].as_str().unwrap().contains("app-env"))
                .collect();
        assert_eq!(sorted(yaml_docs(&checked.stdout)), sorted(expected), "{overlay}");
    }
    // As a pipeline (the README's form): the check reads the manifests only once the build has
    // ended, so the manifest the generator writes during the build is there.
    let bdir = repo.d.join("binding-pipe");
    std::fs::create_dir(&bdir).unwrap();
    kustomize_with_plugin(&repo, &repo.top.join("overlays/prod"), Some(&bdir)); // installs the plugin
    std::fs::remove_dir_all(&bdir).unwrap();
    std::fs::create_dir(&bdir).unwrap();
    let piped = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            r#"kubectl kustomize --enable-alpha-plugins "$1" | "$2" decrypt --check-binding "$PORTCULLIS_BINDING_DIR""#,
        )
        .arg("sh")
        .arg(repo.top.join("overlays/prod"))
        .arg(env!("CARGO_BIN_EXE_portcullis"))
        .env("XDG_CONFIG_HOME", repo.d.join("xdg"))
        .env("SOPS_AGE_KEY_FILE", &repo.key.file)
        .env("PORTCULLIS_BINDING_DIR", &bdir)
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", String::from_utf8_lossy(&piped.stderr));
    assert!(String::from_utf8_lossy(&piped.stdout).contains("prod-api-key-000111"));
    // A failed build (nothing on stdin) is an error, not an empty success.
    let empty = check_binding(&repo, &bdir, b"", &[]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("holds no resources"));
    // A prod Secret moved into dev through the generator is refused too.
    let bdir = repo.d.join("binding-leak");
    std::fs::create_dir(&bdir).unwrap();
    let built = kustomize_with_plugin(&repo, &repo.top.join("overlays/leak"), Some(&bdir));
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let refused = check_binding(&repo, &bdir, &built.stdout, &["--renamed", "allow"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Secret prod/api was encrypted for namespace prod; this build puts it in dev"), "{err}");
    // A KSOPS config, unchanged, through the same wrapper.
    write(
        &repo.top.join("base/secrets.yaml"),
        "apiVersion: viaduct.ai/v1\nkind: ksops\nmetadata:\n  name: k\nfiles:\n  - ./db.enc.yaml\n",
    );
    let built = kustomize_with_plugin(&repo, &repo.top.join("base"), Some(&bdir));
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    assert!(String::from_utf8_lossy(&built.stdout).contains("password: base-db-password-123"));
    // Without a binding directory the generator refuses to run (fail closed) ...
    let built = kustomize_with_plugin(&repo, &repo.top.join("overlays/prod"), None);
    assert!(!built.status.success());
    assert!(String::from_utf8_lossy(&built.stderr).contains("PORTCULLIS_BINDING_DIR is not set"));
    // ... a file outside the kustomization is refused, and so is a tampered one.
    write(
        &repo.top.join("overlays/prod/secrets.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: SopsGenerator\nmetadata:\n  name: s\nfiles:\n  - ../../base/db.enc.yaml\n",
    );
    let built = kustomize_with_plugin(&repo, &repo.top.join("overlays/prod"), Some(&bdir));
    assert!(
        String::from_utf8_lossy(&built.stderr).contains("`..` is not allowed"),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let enc = std::fs::read_to_string(repo.top.join("base/db.enc.yaml")).unwrap();
    std::fs::write(repo.top.join("base/db.enc.yaml"), enc.replace("name: db", "name: db2")).unwrap();
    let built = kustomize_with_plugin(&repo, &repo.top.join("base"), Some(&bdir));
    assert!(!built.status.success());
    assert!(
        String::from_utf8_lossy(&built.stderr).contains("MAC mismatch"),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
}
