//! Admission benchmark: the release `portcullis serve` binary (its own process) on 127.0.0.1,
//! a real docker-registry on 127.0.0.1, reviews posted over HTTP/2 with TLS. One run prints
//! one table: a no-match baseline; warm pinned and warm tag; cold key-based and cold keyless
//! (one review at a time); bursts of 100 reviews × 8 containers × 5 authorities of a new image
//! (pinned, and by tag); cold reviews through a proxy adding 20 ms to every registry request;
//! and the server's memory with 10,000 distinct digests cached. Then the issue's targets, each
//! said met or not.
//!
//! `cargo bench --bench admission` (needs `docker-registry`; `tests/run-all.sh` installs it).
//! Knobs: PORTCULLIS_BENCH_REVIEWS (warm rows, default 2000), PORTCULLIS_BENCH_CONCURRENCY
//! (default 32), PORTCULLIS_BENCH_COLD (cold rows, default 50), PORTCULLIS_BENCH_FILL (distinct
//! digests added to the cache, default 9870: with the other rows' ~125 entries the cache holds
//! just under its 10,000-entry bound, past which it would drop entries).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

#[path = "admission/proxy.rs"]
mod proxy;
#[path = "admission/server.rs"]
#[allow(dead_code)]
mod server;
#[path = "admission/world.rs"]
mod world;

use std::fmt::Write as _;
use std::time::Duration;

use server::{Run, Server, load, pod};
use support::sigstore::{MiniSigstore, Validity};
use support::{Kind, Pusher, Signer, TestRegistry};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One line of the table.
struct Row {
    name: String,
    reviews: usize,
    concurrency: usize,
    run: Run,
    registry_requests: u64,
    rss_mib: f64,
}

impl Row {
    fn per_review(&self) -> f64 {
        self.registry_requests as f64 / self.reviews as f64
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }
}

struct Bench<'a> {
    server: &'a Server,
    rows: Vec<Row>,
}

impl Bench<'_> {
    async fn row(&mut self, name: &str, bodies: Vec<String>, concurrency: usize) -> &Row {
        let before = self.server.registry_requests().await;
        let reviews = bodies.len();
        let run = load(self.server, bodies, concurrency).await;
        let registry_requests = self.server.registry_requests().await - before;
        let rss_mib = self.server.rss_kib().0 as f64 / 1024.0;
        if !run.denied.is_empty() {
            eprintln!("{name}: {} denied, e.g. {}", run.denied.len(), run.denied[0]);
        }
        self.rows.push(Row { name: name.to_owned(), reviews, concurrency, run, registry_requests, rss_mib });
        self.rows.last().expect("row")
    }

    fn find(&self, name: &str) -> &Row {
        self.rows.iter().find(|r| r.name.starts_with(name)).expect("row")
    }
}

fn policies(dir: &std::path::Path, reg: &str, slow: &str) {
    let key =
        |i: usize| format!("    - name: k{i}\n      key: {{publicKeyFile: k{i}.pub}}\n      transparencyLog: skip\n");
    let head = |name: &str, images: &str| {
        format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: {name}}}\nspec:\n  images: [{images}]\n  digest: allow-tags\n"
        )
    };
    let one = format!(
        "{}  authorities:\n{}",
        head("one-key", &format!("'{reg}/app/**', '{reg}/cold/**', '{reg}/fill/**', '{slow}/slow/**'")),
        key(0)
    );
    let five: String = (0..5).map(key).collect();
    let five = format!("{}  require: all\n  authorities:\n{five}", head("five-keys", &format!("'{reg}/burst/**'")));
    let keyless = format!(
        "{}  authorities:\n    - name: ci\n      trustedRoot: mini-root.json\n      keyless:\n        issuer: https://accounts.example.com\n        subject: release@example.com\n",
        head("keyless", &format!("'{reg}/keyless/**'"))
    );
    for (file, text) in [("one.yaml", one), ("five.yaml", five), ("keyless.yaml", keyless)] {
        std::fs::write(dir.join(file), text).expect("policy");
    }
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let reviews = env_usize("PORTCULLIS_BENCH_REVIEWS", 2000);
    let concurrency = env_usize("PORTCULLIS_BENCH_CONCURRENCY", 32);
    let cold = env_usize("PORTCULLIS_BENCH_COLD", 50);
    let fill = env_usize("PORTCULLIS_BENCH_FILL", 9_870);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let registry = TestRegistry::start(Kind::Distribution).await;
        let slow = proxy::DelayProxy::start(&registry.host, Duration::from_millis(20)).await;
        let (reg, push) = (registry.host.clone(), Pusher::new(&registry.host));
        let keys: Vec<Signer> = (0..5).map(|_| Signer::new()).collect();
        let all: Vec<&Signer> = keys.iter().collect();
        let sigstore = MiniSigstore::new("bench");
        let keyless_signer = sigstore.issue("release@example.com", "https://accounts.example.com", None, Validity::fulcio());
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir(&policy_dir).expect("dir");
        for (i, key) in keys.iter().enumerate() {
            std::fs::write(policy_dir.join(format!("k{i}.pub")), key.public_pem()).expect("key");
        }
        sigstore.write_trusted_root(&policy_dir, "mini-root.json");
        policies(&policy_dir, &reg, &slow.host);

        eprintln!("pushing images …");
        let warm = world::signed(&push, &reg, "app/app", "v1", "warm", &all[..1]).await;
        let mut cold_digests = Vec::new();
        for i in 0..cold {
            cold_digests.push(world::signed(&push, &reg, "cold/app", &format!("c{i}"), &format!("cold {i}"), &all[..1]).await);
        }
        let mut keyless_digests = Vec::new();
        for i in 0..cold {
            keyless_digests.push(world::keyless(&push, &sigstore, &keyless_signer, "keyless/app", &format!("keyless {i}")).await);
        }
        let mut slow_digests = Vec::new();
        for i in 0..cold.min(20) {
            slow_digests.push(world::signed(&push, &slow.host, "slow/app", &format!("s{i}"), &format!("slow {i}"), &all[..1]).await);
        }
        let one_pinned = world::signed(&push, &reg, "burst/one", "v1", "one verification, pinned", &all).await;
        world::signed(&push, &reg, "burst/onetag", "v1", "one verification, by tag", &all).await;
        let burst_pinned = world::signed(&push, &reg, "burst/pinned", "v1", "burst, pinned", &all).await;
        world::signed(&push, &reg, "burst/tagged", "v1", "burst, by tag", &all).await;
        let filled = world::many(&push, "fill/app", fill, &keys[0]).await;

        let server = Server::start(&policy_dir, &[&reg, &slow.host], &[]).await;
        let started_rss = server.rss_kib().0 as f64 / 1024.0;
        let mut bench = Bench { server: &server, rows: Vec::new() };
        let many = |image: &str, n: usize| (0..n).map(|i| pod(i, &[image.to_owned()])).collect::<Vec<_>>();
        let each = |images: Vec<String>| images.into_iter().enumerate().map(|(i, image)| pod(i, &[image])).collect();
        let eight = |image: &str| pod(0, &vec![image.to_owned(); 8]);

        eprintln!("running …");
        let unmatched = "quay.io/other/app@sha256:0000000000000000000000000000000000000000000000000000000000000000";
        bench.row("no-match baseline", many(unmatched, reviews), concurrency).await;
        let warm_pinned = format!("{reg}/app/app@{warm}");
        load(&server, many(&warm_pinned, 1), 1).await;
        bench.row("warm pinned", many(&warm_pinned, reviews), concurrency).await;
        let warm_tag = format!("{reg}/app/app:v1");
        load(&server, many(&warm_tag, 1), 1).await;
        bench.row("warm tag (tag TTL 30 s)", many(&warm_tag, reviews), concurrency).await;
        bench.row("cold key-based, sequential", each(cold_digests.iter().map(|d| format!("{reg}/cold/app@{d}")).collect()), 1).await;
        bench.row("cold keyless, sequential", each(keyless_digests.iter().map(|d| format!("{reg}/keyless/app@{d}")).collect()), 1).await;
        bench.row("one new 5-key image, pinned", vec![eight(&format!("{reg}/burst/one@{one_pinned}"))], 1).await;
        bench.row("one new 5-key image, tag", vec![eight(&format!("{reg}/burst/onetag:v1"))], 1).await;
        let burst = |image: String| vec![eight(&image); 100];
        bench.row("burst 100x8x5 new pinned", burst(format!("{reg}/burst/pinned@{burst_pinned}")), 100).await;
        bench.row("burst 100x8x5 new tag", burst(format!("{reg}/burst/tagged:v1")), 100).await;
        let slow_before = slow.requests();
        bench.row("cold key-based, +20 ms/request", each(slow_digests.iter().map(|d| format!("{}/slow/app@{d}", slow.host)).collect()), 1).await;
        let slow_seen = slow.requests() - slow_before;
        bench.row(&format!("cold fill: {fill} digests cached"), each(filled.iter().map(|d| format!("{reg}/fill/app@{d}")).collect()), concurrency).await;
        let (rss, peak) = server.rss_kib();
        let entries = server.metric("portcullis_cache_entries").await;

        let mut out = String::new();
        let _ = writeln!(out, "admission benchmark: portcullis serve (release, own process), HTTP/2 over TLS, docker-registry on 127.0.0.1; 2-core machine");
        let _ = writeln!(out, "| case | reviews | concurrency | p50 ms | p99 ms | reviews/s | registry req/review | server RSS MiB | allowed |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &bench.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.3} | {:.1} | {} |",
                r.name, r.reviews, r.concurrency, Row::ms(r.run.pct(0.5)), Row::ms(r.run.pct(0.99)), r.run.throughput(),
                r.per_review(), r.rss_mib, r.run.allowed
            );
        }
        let _ = writeln!(out, "server RSS: {started_rss:.1} MiB at start, {:.1} MiB with {entries} cache entries (verification and tag; peak {:.1} MiB); the delaying proxy saw {slow_seen} requests", rss as f64 / 1024.0, peak as f64 / 1024.0);
        let (base, tag) = (bench.find("no-match"), bench.find("warm tag"));
        let (one_p, one_t) = (bench.find("one new 5-key image, pinned"), bench.find("one new 5-key image, tag"));
        let (burst_p, burst_t) = (bench.find("burst 100x8x5 new pinned"), bench.find("burst 100x8x5 new tag"));
        let (cold_row, slow_row) = (bench.find("cold key-based, seq"), bench.find("cold key-based, +20"));
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        let tag_ratio = tag.run.throughput() / base.run.throughput();
        let tag_window = (tag.run.elapsed.as_secs_f64() / 30.0).ceil().max(1.0) as u64;
        let _ = writeln!(out, "targets:");
        let _ = writeln!(out, "- warm tag ≥ 50 % of baseline throughput: {:.0} % — {}", tag_ratio * 100.0, verdict(tag_ratio >= 0.5));
        let _ = writeln!(out, "- warm tag ≤ 1 registry request per tag per TTL: {} requests in {:.1} s — {}", tag.registry_requests, tag.run.elapsed.as_secs_f64(), verdict(tag.registry_requests <= tag_window));
        for (name, burst, one) in [("pinned", burst_p, one_p), ("tag", burst_t, one_t)] {
            let _ = writeln!(out, "- burst {name}: {} registry requests, one verification's {} — {}; p99 {:.1} ms ≤ 150 — {}", burst.registry_requests, one.registry_requests, verdict(burst.registry_requests <= one.registry_requests), Row::ms(burst.run.pct(0.99)), verdict(burst.run.pct(0.99) <= Duration::from_millis(150)));
        }
        let _ = writeln!(out, "- cold key-based p50 {:.1} ms ≤ 20 — {}; {:.1} registry requests ≤ 4 — {}", Row::ms(cold_row.run.pct(0.5)), verdict(cold_row.run.pct(0.5) <= Duration::from_millis(20)), cold_row.per_review(), verdict(cold_row.per_review() <= 4.0));
        let _ = writeln!(out, "- cold key-based with 20 ms per registry request: p50 {:.1} ms ≤ 120 — {}", Row::ms(slow_row.run.pct(0.5)), verdict(slow_row.run.pct(0.5) <= Duration::from_millis(120)));
        let _ = writeln!(out, "- RSS with {entries} cached entries {:.1} MiB ≤ 100 — {}", rss as f64 / 1024.0, verdict(rss <= 100 * 1024));
        print!("{out}");
    });
}
