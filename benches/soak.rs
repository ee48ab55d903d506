//! Soak: the release `portcullis serve` binary under a steady mixed load for N minutes (warm
//! pinned, warm tag, cold new digests, denied unsigned images, unmatched images, requests that
//! are not AdmissionReviews), a policy file rewritten every 10 s (reloaded), and the serving
//! certificate rotated once, half-way. Reports unexpected errors (must be 0), p50/p99 per
//! minute, and the server's RSS, file descriptors and threads at the start and the end.
//!
//! `PORTCULLIS_SOAK_MINUTES=10 cargo bench --bench soak` (without it, nothing runs);
//! PORTCULLIS_SOAK_RATE: reviews per second (default 100).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

#[path = "admission/server.rs"]
#[allow(dead_code)]
mod server;
#[path = "admission/world.rs"]
#[allow(dead_code)]
mod world;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use server::{Server, pod};
use support::{Kind, Pusher, Signer, TestRegistry};

/// A CA and a serving certificate for the server's name, written as PEM files.
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.distinguished_name.push(rcgen::DnType::CommonName, "soak CA");
        let ca_pem = params.self_signed(&key).expect("ca").pem();
        Self { ca_pem, issuer: rcgen::Issuer::new(params, key) }
    }

    /// Write a leaf valid for `days` to `dir/tls.crt` and `dir/tls.key` (renamed into place).
    fn leaf(&self, dir: &Path, days: i64) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["portcullis.portcullis.svc".to_owned()]).expect("params");
        let now = time::OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = (now - time::Duration::hours(1), now + time::Duration::days(days));
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        for (name, text) in [("tls.key", key.serialize_pem()), ("tls.crt", cert.pem())] {
            std::fs::write(dir.join(format!("{name}.tmp")), text).expect("write");
            std::fs::rename(dir.join(format!("{name}.tmp")), dir.join(name)).expect("rename");
        }
    }
}

fn proc_count(pid: u32, what: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/{what}")).map(|d| d.count()).unwrap_or(0)
}

#[derive(Clone, Copy, Debug)]
enum Kind2 {
    WarmPinned,
    WarmTag,
    Cold,
    Denied,
    Unmatched,
    BadInput,
}

fn kind_of(i: usize) -> Kind2 {
    match i % 50 {
        0..=19 => Kind2::WarmPinned,
        20..=31 => Kind2::WarmTag,
        32 => Kind2::Cold,
        33..=39 => Kind2::Denied,
        40..=46 => Kind2::Unmatched,
        _ => Kind2::BadInput,
    }
}

fn main() {
    let Some(minutes) = std::env::var("PORTCULLIS_SOAK_MINUTES").ok().and_then(|m| m.parse::<u64>().ok()) else {
        println!("soak: set PORTCULLIS_SOAK_MINUTES (e.g. 10) to run it");
        return;
    };
    let rate: u64 = std::env::var("PORTCULLIS_SOAK_RATE").ok().and_then(|r| r.parse().ok()).unwrap_or(100);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(soak(minutes, rate));
}

async fn soak(minutes: u64, rate: u64) {
    let registry = TestRegistry::start(Kind::Distribution).await;
    let (reg, push) = (registry.host.clone(), Pusher::new(&registry.host));
    let signer = Signer::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (policies, tls) = (dir.path().join("policies"), dir.path().join("tls"));
    std::fs::create_dir(&policies).expect("dir");
    std::fs::create_dir(&tls).expect("dir");
    std::fs::write(policies.join("release.pub"), signer.public_pem()).expect("key");
    std::fs::write(
        policies.join("signed.yaml"),
        format!("apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: signed}}\nspec:\n  images: ['{reg}/**']\n  digest: allow-tags\n  authorities:\n    - name: release\n      key: {{publicKeyFile: release.pub}}\n      transparencyLog: skip\n"),
    )
    .expect("policy");
    let churn = |n: u64| {
        let text = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: churn}}\nspec:\n  images: ['example.invalid/churn-{n}/**']\n  authorities:\n    - name: release\n      key: {{publicKeyFile: release.pub}}\n      transparencyLog: skip\n"
        );
        std::fs::write(policies.join("churn.yaml.tmp"), text).expect("write");
        std::fs::rename(policies.join("churn.yaml.tmp"), policies.join("churn.yaml")).expect("rename");
    };
    churn(0);
    let pki = Pki::new();
    pki.leaf(&tls, 30);

    let total = (minutes * 60 * rate) as usize;
    let cold_needed = total / 50 + 100;
    eprintln!("soak: pushing {cold_needed} cold images …");
    let warm = world::signed(&push, &reg, "app/app", "v1", "warm", &[&signer]).await;
    let (unsigned, _) = push.image("app/unsigned", "v1", "never signed").await;
    let cold = Arc::new(world::many(&push, "cold/app", cold_needed, &signer).await);

    let server =
        Arc::new(Server::start_with_cert(&policies, &[&reg], &tls, &pki.ca_pem, &["--reload-interval", "1s"]).await);
    let pid = server.pid();
    let bodies = Arc::new(Bodies {
        warm_pinned: pod(0, &[format!("{reg}/app/app@{warm}")]),
        warm_tag: pod(0, &[format!("{reg}/app/app:v1")]),
        denied: pod(0, &[format!("{reg}/app/unsigned@{unsigned}")]),
        unmatched: pod(0, &["quay.io/other/app:v1".to_owned()]),
        cold_prefix: format!("{reg}/cold/app@"),
        cold,
        next_cold: AtomicUsize::new(0),
    });
    let stats: Arc<Mutex<Vec<Minute>>> = Arc::new(Mutex::new((0..minutes).map(|_| Minute::default()).collect()));
    let started = Instant::now();
    let end = started + Duration::from_secs(minutes * 60);
    let workers = 16u64;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (server, bodies, stats, next) =
            (Arc::clone(&server), Arc::clone(&bodies), Arc::clone(&stats), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(workers as f64 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < end {
                tick.tick().await;
                let i = next.fetch_add(1, Ordering::Relaxed);
                let kind = kind_of(i);
                let t = Instant::now();
                let result = one(&server, &bodies, kind).await;
                let minute = (t.duration_since(started).as_secs() / 60) as usize;
                let mut stats = stats.lock().expect("stats");
                if let Some(m) = stats.get_mut(minute) {
                    m.latencies.push(t.elapsed());
                    if let Err(e) = result {
                        m.errors.push(format!("{kind:?}: {e}"));
                    }
                }
            }
        }));
    }
    let mut rss_after_warmup = None;
    let mut rotated = false;
    let mut reload = 0;
    let (rss0, fds0, threads0) = (server.rss_kib().0, proc_count(pid, "fd"), proc_count(pid, "task"));
    let expiry_before = server.metric("portcullis_tls_certificate_expiry_timestamp_seconds").await;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(10)).await;
        reload += 1;
        churn(reload);
        let elapsed = started.elapsed();
        if rss_after_warmup.is_none() && elapsed >= Duration::from_secs(60) {
            rss_after_warmup = Some(server.rss_kib().0);
        }
        if !rotated && elapsed >= Duration::from_secs(minutes * 30) {
            pki.leaf(&tls, 60);
            rotated = true;
        }
    }
    for task in tasks {
        task.await.expect("worker");
    }
    let (rss1, fds1, threads1) = (server.rss_kib().0, proc_count(pid, "fd"), proc_count(pid, "task"));
    let expiry_after = server.metric("portcullis_tls_certificate_expiry_timestamp_seconds").await;
    let reloads = server.metric("portcullis_policy_reloads_succeeded_total").await;
    let failed_reloads = server.metric("portcullis_policy_reloads_failed_total").await;
    let fresh = Server::connect(&server, &pki.ca_pem).await;
    let in_flight = server.metric("portcullis_verifications_in_flight").await;

    println!(
        "soak: {minutes} min, {rate} reviews/s offered by 16 workers, mix per 50: 20 warm pinned, 12 warm tag, 1 cold (new digest), 7 denied (unsigned), 7 unmatched, 3 bad input"
    );
    println!("| minute | reviews | p50 ms | p99 ms | unexpected errors |");
    println!("|---:|---:|---:|---:|---:|");
    let stats = stats.lock().expect("stats");
    let mut errors = Vec::new();
    for (i, m) in stats.iter().enumerate() {
        let mut l = m.latencies.clone();
        l.sort();
        let pct =
            |p: f64| l.get(((l.len() as f64 - 1.0) * p).round() as usize).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        println!("| {} | {} | {:.2} | {:.2} | {} |", i + 1, l.len(), pct(0.5), pct(0.99), m.errors.len());
        errors.extend(m.errors.iter().cloned());
    }
    let warm = rss_after_warmup.unwrap_or(rss0);
    println!(
        "unexpected errors: {}{}",
        errors.len(),
        errors.first().map(|e| format!(" (first: {e})")).unwrap_or_default()
    );
    println!(
        "server RSS: {:.1} MiB at start, {:.1} MiB after the first minute, {:.1} MiB at the end ({:+.1} % after warm-up)",
        rss0 as f64 / 1024.0,
        warm as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (rss1 as f64 / warm as f64 - 1.0) * 100.0
    );
    println!(
        "file descriptors: {fds0} at start, {fds1} at the end; threads: {threads0} at start, {threads1} at the end; verifications in flight at the end: {in_flight}"
    );
    println!(
        "policy loads: {reloads} succeeded (the first included), {failed_reloads} failed; policy file rewritten every 10 s: {reload} times"
    );
    println!(
        "certificate rotation: expiry metric {expiry_before} → {expiry_after} ({}); a new connection after it: {}",
        if expiry_after > expiry_before { "rotated" } else { "NOT rotated" },
        if fresh { "ok" } else { "FAILED" }
    );
}

#[derive(Default)]
struct Minute {
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

struct Bodies {
    warm_pinned: String,
    warm_tag: String,
    denied: String,
    unmatched: String,
    cold_prefix: String,
    cold: Arc<Vec<String>>,
    next_cold: AtomicUsize,
}

/// One request of `kind`; Err says what was unexpected.
async fn one(server: &Server, bodies: &Bodies, kind: Kind2) -> Result<(), String> {
    let (body, expect_allowed) = match kind {
        Kind2::WarmPinned => (bodies.warm_pinned.clone(), true),
        Kind2::WarmTag => (bodies.warm_tag.clone(), true),
        Kind2::Denied => (bodies.denied.clone(), false),
        Kind2::Unmatched => (bodies.unmatched.clone(), true),
        Kind2::Cold => {
            let i = bodies.next_cold.fetch_add(1, Ordering::Relaxed);
            let digest = bodies.cold.get(i).ok_or("out of cold images")?;
            (pod(i, &[format!("{}{digest}", bodies.cold_prefix)]), true)
        }
        Kind2::BadInput => ("{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": [".to_owned(), false),
    };
    let response = server
        .client
        .post(server.validate_url())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("body: {e}"))?;
    if matches!(kind, Kind2::BadInput) {
        return if status == 400 { Ok(()) } else { Err(format!("bad input answered {status}")) };
    }
    if status != 200 {
        return Err(format!("status {status}: {text}"));
    }
    let answer: Value = serde_json::from_str(&text).map_err(|e| format!("json: {e}"))?;
    let allowed = answer["response"]["allowed"] == true;
    if allowed != expect_allowed {
        return Err(format!("allowed={allowed}: {}", answer["response"]["status"]["message"]));
    }
    Ok(())
}
