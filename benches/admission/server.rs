//! The server under test: the release `portcullis serve` binary as its own process (so its
//! memory is its own), and a load generator posting reviews over HTTP/2 with TLS.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SAN: &str = "portcullis.portcullis.svc";

/// A running `portcullis serve`; killed on drop.
pub struct Server {
    child: Child,
    pub client: reqwest::Client,
    base: String,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(port: u16, policies: &Path, insecure: &[&str], args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--image-pull-secrets", "never"])
        .arg("--policies")
        .arg(policies)
        .arg("--insecure-registry")
        .arg(insecure.join(","))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start portcullis serve")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Server {
    /// Start the server on `policies` with `extra` flags and a generated certificate; waits
    /// until it answers.
    pub async fn start(policies: &Path, insecure: &[&str], extra: &[&str]) -> Self {
        let port = free_port();
        let ca = policies.parent().expect("parent").join(format!("ca-{port}.pem"));
        let mut args: Vec<String> = vec!["--tls-san".into(), SAN.into(), "--write-ca".into(), ca.display().to_string()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let child = spawn(port, policies, insecure, &args);
        let deadline = Instant::now() + Duration::from_secs(30);
        let pem = loop {
            if let Ok(pem) = std::fs::read_to_string(&ca)
                && pem.contains("END CERTIFICATE")
            {
                break pem;
            }
            assert!(Instant::now() < deadline, "the server did not write its CA");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Self::ready(child, port, &pem).await
    }

    /// Start the server with `tls_dir/tls.crt` and `tls.key` (reloaded when they change),
    /// trusting `ca_pem`.
    pub async fn start_with_cert(
        policies: &Path,
        insecure: &[&str],
        tls_dir: &Path,
        ca_pem: &str,
        extra: &[&str],
    ) -> Self {
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--tls-cert".into(),
            tls_dir.join("tls.crt").display().to_string(),
            "--tls-key".into(),
            tls_dir.join("tls.key").display().to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let child = spawn(port, policies, insecure, &args);
        Self::ready(child, port, ca_pem).await
    }

    fn client(port: u16, ca_pem: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca")])
            .resolve(SAN, format!("127.0.0.1:{port}").parse().expect("addr"))
            .pool_max_idle_per_host(64)
            .build()
            .expect("client")
    }

    async fn ready(child: Child, port: u16, ca_pem: &str) -> Self {
        let client = Self::client(port, ca_pem);
        let base = format!("https://{SAN}:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, client, base, port }
    }

    /// Whether a new client (new TLS connection) trusting `ca_pem` gets an answer.
    pub async fn connect(&self, ca_pem: &str) -> bool {
        let client = Self::client(self.port, ca_pem);
        client.get(format!("{}/healthz", self.base)).send().await.is_ok_and(|r| r.status().is_success())
    }

    /// The sum of a metric's samples (all label sets) from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.client.get(format!("{}/metrics", self.base)).send().await.expect("metrics").text().await;
        text.unwrap_or_default()
            .lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now, and its peak, in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Registry requests the server has sent so far (its own counter, from `/metrics`).
    pub async fn registry_requests(&self) -> u64 {
        self.metric("portcullis_registry_requests_total").await as u64
    }

    pub fn validate_url(&self) -> String {
        format!("{}/validate?timeout=10s", self.base)
    }
}

/// A Pod review with these container images.
pub fn pod(uid: usize, images: &[String]) -> String {
    let containers: Vec<Value> =
        images.iter().enumerate().map(|(i, image)| json!({"name": format!("c{i}"), "image": image})).collect();
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": format!("bench-{uid}"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "name": format!("p{uid}"),
        "namespace": "bench", "operation": "CREATE", "userInfo": {"username": "bench"},
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{uid}"), "namespace": "bench"},
                   "spec": {"containers": containers}}}})
    .to_string()
}

/// What one load run measured.
pub struct Run {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub allowed: usize,
    pub denied: Vec<String>,
}

impl Run {
    pub fn pct(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
    }

    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Post `bodies` with `concurrency` workers.
pub async fn load(server: &Server, bodies: Vec<String>, concurrency: usize) -> Run {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let url = server.validate_url();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, bodies) = (server.client.clone(), url.clone(), Arc::clone(&next), Arc::clone(&bodies));
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut allowed, mut denied) = (Vec::new(), 0, Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                let response = client.post(&url).header("content-type", "application/json").body(body.clone()).send();
                let answer: Value = response.await.expect("review").json().await.expect("json");
                latencies.push(t.elapsed());
                if answer["response"]["allowed"] == true {
                    allowed += 1;
                } else {
                    denied.push(answer["response"]["status"]["message"].as_str().unwrap_or_default().to_owned());
                }
            }
            (latencies, allowed, denied)
        }));
    }
    let mut run = Run { latencies: Vec::new(), elapsed: Duration::ZERO, allowed: 0, denied: Vec::new() };
    for worker in workers {
        let (l, a, d) = worker.await.expect("worker");
        run.latencies.extend(l);
        run.allowed += a;
        run.denied.extend(d);
    }
    run.elapsed = started.elapsed();
    run
}
