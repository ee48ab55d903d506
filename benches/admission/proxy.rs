//! A registry proxy on 127.0.0.1 that holds every request for a fixed delay before forwarding
//! it (what a real registry costs: ~20 ms a request), and counts the requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;

struct Inner {
    upstream: String,
    delay: Duration,
    http: reqwest::Client,
    requests: AtomicU64,
}

/// The proxy; stopped on drop.
pub struct DelayProxy {
    pub host: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DelayProxy {
    pub async fn start(upstream: &str, delay: Duration) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let inner = Arc::new(Inner { upstream: upstream.to_owned(), delay, http, requests: AtomicU64::new(0) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let app = axum::Router::new().fallback(forward).with_state(Arc::clone(&inner));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { host, inner, task }
    }

    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }
}

async fn forward(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    inner.requests.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(inner.delay).await;
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut forward = inner.http.request(request.method().clone(), format!("http://{}{target}", inner.upstream));
    for (name, value) in request.headers() {
        if name != "host" {
            forward = forward.header(name, value);
        }
    }
    let upstream = match forward.send().await {
        Ok(r) => r,
        Err(e) => {
            let mut response = Response::new(Body::from(e.to_string()));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            return response;
        }
    };
    let status = upstream.status();
    let headers = upstream.headers().clone();
    let bytes = upstream.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != "transfer-encoding" && name != "connection" {
            response.headers_mut().append(HeaderName::from(name), value.clone());
        }
    }
    response
}
