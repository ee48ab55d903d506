//! A fault-injecting HTTP proxy in front of a real test registry: every request is forwarded
//! unchanged unless a rule picks a [`Fault`] for it (by method and path), so only the response
//! under test is wrong and the rest of the protocol stays real. Plus TLS endpoints whose
//! certificates are wrong in one way each (unknown CA, wrong name, expired).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

/// What the proxy does instead of forwarding.
pub enum Fault {
    /// Answer this status, these headers and this body (no `Docker-Content-Digest`).
    Replace { status: u16, headers: Vec<(&'static str, String)>, body: Vec<u8> },
    /// Never answer.
    Hang,
    /// Forward, then send the real body one byte per second.
    SlowBody,
    /// Forward, with this `Content-Type` instead of the registry's.
    Retype(&'static str),
    /// `200` with a chunked body that never ends.
    Endless,
    /// `307 Temporary Redirect` to this URL.
    Redirect(String),
}

impl Fault {
    /// A bare status with an empty body.
    pub fn status(status: u16) -> Self {
        Self::Replace { status, headers: Vec::new(), body: Vec::new() }
    }

    /// `200` with this content type and body.
    pub fn body(content_type: &str, body: Vec<u8>) -> Self {
        Self::Replace { status: 200, headers: vec![("content-type", content_type.to_owned())], body }
    }
}

/// Picks the fault (if any) for a request, by method and path.
pub type Rule = Arc<dyn Fn(&str, &str) -> Option<Fault> + Send + Sync>;

struct Inner {
    upstream: String,
    rule: Rule,
    http: reqwest::Client,
}

/// The proxy, on 127.0.0.1; stopped on drop.
pub struct FaultProxy {
    pub host: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Proxy to `upstream` (`host:port`, plain HTTP), applying `rule`.
    pub async fn start(upstream: &str, rule: Rule) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let inner = Arc::new(Inner { upstream: upstream.to_owned(), rule, http });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let app = axum::Router::new().fallback(handle).with_state(inner);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { host, task }
    }
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let target = request.uri().path_and_query().map_or_else(|| path.clone(), |p| p.as_str().to_owned());
    let fault = (inner.rule)(method.as_str(), &path);
    let slow = matches!(fault, Some(Fault::SlowBody));
    let retype = if let Some(Fault::Retype(t)) = fault { Some(t) } else { None };
    match fault {
        Some(Fault::Replace { status, headers, body }) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).expect("status");
            for (name, value) in headers {
                response.headers_mut().insert(name, HeaderValue::from_str(&value).expect("header"));
            }
            return response;
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Response::new(Body::empty());
        }
        Some(Fault::Endless) => {
            let chunks = futures_util::stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 65536])));
            let mut response = Response::new(Body::from_stream(chunks));
            response.headers_mut().insert("content-type", HeaderValue::from_static(super::OCI_MANIFEST));
            return response;
        }
        Some(Fault::Redirect(location)) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
            response.headers_mut().insert("location", HeaderValue::from_str(&location).expect("location"));
            return response;
        }
        Some(Fault::SlowBody | Fault::Retype(_)) | None => {}
    }
    let mut forward = inner.http.request(method, format!("http://{}{target}", inner.upstream));
    for (name, value) in request.headers() {
        if name != "host" {
            forward = forward.header(name, value);
        }
    }
    let body = axum::body::to_bytes(request.into_body(), usize::MAX).await.expect("request body");
    let upstream = match forward.body(body).send().await {
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
    let mut response = if slow {
        let trickle = futures_util::stream::unfold((bytes, 0usize), |(bytes, at)| async move {
            if at >= bytes.len() {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok::<_, std::io::Error>(bytes.slice(at..at + 1)), (bytes, at + 1)))
        });
        Response::new(Body::from_stream(trickle))
    } else {
        Response::new(Body::from(bytes))
    };
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != "transfer-encoding" && name != "connection" && (!slow || name != "content-length") {
            response.headers_mut().append(HeaderName::from(name), value.clone());
        }
    }
    if let Some(content_type) = retype {
        response.headers_mut().insert("content-type", HeaderValue::from_static(content_type));
    }
    response
}

/// How a TLS endpoint's certificate is wrong.
#[derive(Debug, Clone, Copy)]
pub enum BadCert {
    /// Issued by a CA the client does not trust.
    UnknownCa,
    /// Issued by the trusted CA, for another name.
    WrongName,
    /// Issued by the trusted CA for 127.0.0.1, expired in 2020.
    Expired,
}

/// A TLS endpoint on 127.0.0.1 presenting a bad certificate; the CA the client should trust is
/// `ca_pem`. It never gets to HTTP: a correct client refuses the handshake.
pub struct BadTls {
    pub host: String,
    pub ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BadTls {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BadTls {
    pub async fn start(bad: BadCert) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca = |name: &str| {
            let key = KeyPair::generate().expect("ca key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
            let cert = params.self_signed(&key).expect("ca");
            (cert.pem(), Issuer::new(params, key))
        };
        let (trusted_pem, trusted) = ca("trusted test CA");
        let (_, stranger) = ca("unknown test CA");
        let names = match bad {
            BadCert::WrongName => vec!["registry.invalid".to_owned()],
            _ => vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        };
        let mut params = CertificateParams::new(names).expect("params");
        if let BadCert::Expired = bad {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let issuer = if let BadCert::UnknownCa = bad { &stranger } else { &trusted };
        let leaf = params.signed_by(&key, issuer).expect("leaf");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(stream).await;
                });
            }
        });
        Self { host, ca_pem: trusted_pem, task }
    }
}
