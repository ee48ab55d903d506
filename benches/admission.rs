//! Admission benchmark: the real TLS server on 127.0.0.1, a real docker-registry holding a
//! cosign-signed image, reviews posted over HTTP/2 with a fixed concurrency. Prints p50/p99,
//! throughput, registry requests per review and peak memory, for the verification cache on and,
//! as the baseline in the same run, off.
//!
//! `cargo bench --bench admission` (needs `docker-registry`; `tests/run-all.sh` installs it).
//! Knobs: PORTCULLIS_BENCH_REVIEWS (default 2000), PORTCULLIS_BENCH_CONCURRENCY (default 16).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::engine::{Engine, Settings};
use portcullis::policy::cel::CelEnv;
use portcullis::policy::load::LoadStatus;
use portcullis::policy::load::load_text;
use portcullis::server::tls::CertStore;
use portcullis::server::{AppState, Limits, router, run};
use portcullis::telemetry::Metrics;
use portcullis::verify::Verifier;
use portcullis::verify::cache::CachedVerifier;
use portcullis::verify::image::RegistryVerifier;
use portcullis::verify::registry::{Registry, RegistryConfig};
use portcullis::verify::trust::TrustRoot;
use serde_json::json;
use support::{Kind, Pusher, Signer, TestRegistry};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

struct Figures {
    p50: Duration,
    p99: Duration,
    throughput: f64,
    registry_requests: u64,
    allowed: usize,
}

async fn run_case(
    registry_host: &str,
    policy_dir: &std::path::Path,
    image: &str,
    cache_ttl: Duration,
    reviews: usize,
    concurrency: usize,
) -> Figures {
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: signed}}\nspec:\n  images: ['{registry_host}/**']\n  authorities:\n    - name: release\n      key: {{publicKeyFile: release.pub}}\n      transparencyLog: skip\n"
    );
    let set = load_text(&text, "bench.yaml", policy_dir, &CelEnv::new()).expect("policy");
    let config = RegistryConfig { insecure: vec![registry_host.to_owned()], ..Default::default() };
    let registry = Registry::new(config).expect("registry");
    let registry_verifier = Arc::new(RegistryVerifier::new(registry, TrustRoot::production().expect("root")));
    let counter = Arc::clone(&registry_verifier);
    let verifier: Arc<dyn Verifier> = Arc::new(CachedVerifier::new(registry_verifier, cache_ttl));
    let engine = Engine::fixed(set, verifier, Settings::default());
    let (_tx, status) = tokio::sync::watch::channel(LoadStatus::default());
    let app = router(AppState { engine: Arc::new(engine), metrics: Arc::new(Metrics::new()), status });
    let generated = CertStore::self_signed(&["portcullis.portcullis.svc".to_owned()]).expect("cert");
    let tls = generated.store.server_config().expect("tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, tls, app, Limits::default(), async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(generated.ca_pem.as_bytes()).expect("ca")])
        .resolve("portcullis.portcullis.svc", addr)
        .build()
        .expect("client");
    let url = format!("https://portcullis.portcullis.svc:{}/validate?timeout=10s", addr.port());
    fn body(i: usize, image: &str) -> String {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": format!("bench-{i}"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "name": format!("p{i}"),
            "namespace": "bench", "operation": "CREATE", "userInfo": {"username": "bench"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{i}"), "namespace": "bench"},
                       "spec": {"containers": [{"name": "app", "image": image}]}}}})
        .to_string()
    }
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, image) = (client.clone(), url.clone(), Arc::clone(&next), image.to_owned());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut allowed = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= reviews {
                    break;
                }
                let t = Instant::now();
                let response =
                    client.post(&url).header("content-type", "application/json").body(body(i, &image)).send().await;
                let answer: serde_json::Value = response.expect("review").json().await.expect("json");
                latencies.push(t.elapsed());
                if answer["response"]["allowed"] == true {
                    allowed += 1;
                }
            }
            (latencies, allowed)
        }));
    }
    let mut latencies = Vec::new();
    let mut allowed = 0;
    for worker in workers {
        let (l, a) = worker.await.expect("worker");
        latencies.extend(l);
        allowed += a;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    let _ = server.await;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    Figures {
        p50: pct(0.50),
        p99: pct(0.99),
        throughput: reviews as f64 / elapsed.as_secs_f64(),
        registry_requests: counter.registry().requests(),
        allowed,
    }
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let reviews = env_usize("PORTCULLIS_BENCH_REVIEWS", 2000);
    let concurrency = env_usize("PORTCULLIS_BENCH_CONCURRENCY", 16);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let registry = TestRegistry::start(Kind::Distribution).await;
        let push = Pusher::new(&registry.host);
        let (digest, _) = push.image("bench/app", "v1", "bench").await;
        let signer = Signer::new();
        push.sign_legacy("bench/app", &digest, &signer).await;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("release.pub"), signer.public_pem()).expect("key");
        let image = format!("{}/bench/app@{digest}", registry.host);
        println!("admission benchmark: {reviews} reviews of a Pod with one signed, pinned image; concurrency {concurrency}; HTTP/2 over TLS; docker-registry on 127.0.0.1");
        println!("{:<28} {:>10} {:>10} {:>12} {:>18} {:>8}", "case", "p50", "p99", "reviews/s", "registry req/review", "allowed");
        for (name, ttl) in [("baseline: cache off", Duration::ZERO), ("cache on (ttl 5m)", Duration::from_secs(300))] {
            let f = run_case(&registry.host, dir.path(), &image, ttl, reviews, concurrency).await;
            println!(
                "{:<28} {:>8.2}ms {:>8.2}ms {:>12.0} {:>18.3} {:>8}",
                name,
                f.p50.as_secs_f64() * 1000.0,
                f.p99.as_secs_f64() * 1000.0,
                f.throughput,
                f.registry_requests as f64 / reviews as f64,
                f.allowed
            );
        }
        println!("peak RSS of the benchmark process (server, client and verifier): {} MiB", rss_kib("VmHWM:") / 1024);
    });
}
