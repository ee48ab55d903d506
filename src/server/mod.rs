//! The HTTPS server: `run(listener, tls, app, shutdown)` accepts TLS connections, serves HTTP/1.1
//! and HTTP/2 (ALPN) with the router, and on shutdown stops accepting and drains.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

pub mod routes;
pub mod tls;

pub use routes::{AppState, router};

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to send the request headers (HTTP/1.1), and to start a request (any
    /// protocol) once the TLS handshake is done.
    pub header_read_timeout: Duration,
    /// Time in-flight requests get to finish after shutdown starts.
    pub drain_timeout: Duration,
    /// Reviews (`/validate`, `/mutate`) only from clients that presented a certificate of the
    /// `--client-ca` (the TLS configuration verifies it; probes and scrapers need none).
    pub require_client_certificate: bool,
}

/// Whether the connection a request came on presented a client certificate, for the routes
/// that require one (a request extension; absent outside `run`, e.g. in router tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificate {
    /// The server does not ask for one.
    NotRequired,
    /// Presented and verified against the client CA during the handshake.
    Verified,
    /// Required for reviews, but the client presented none.
    Missing,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(25),
            require_client_certificate: false,
        }
    }
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("accepting connections failed: {0}")]
    Accept(std::io::Error),
}

/// Serve `app` over TLS on `listener` until `shutdown` resolves, then drain open connections
/// for up to `limits.drain_timeout`.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) if is_transient(&e) => {
                    warn!(error = %e, "accept failed; continuing");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(ServerError::Accept(e)),
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let builder = Arc::clone(&builder);
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls_stream = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let presented = tls_stream.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
            let client = match (limits.require_client_certificate, presented) {
                (false, _) => ClientCertificate::NotRequired,
                (true, true) => ClientCertificate::Verified,
                (true, false) => ClientCertificate::Missing,
            };
            let app = tower::ServiceBuilder::new()
                .map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(client);
                    request
                })
                .service(app);
            let service = TowerToHyperService::new(app);
            // A client that completes the handshake and then sends nothing would hold the
            // connection for ever (the header timeout starts with the first byte): it gets the
            // header timeout to start its request.
            let mut stream = tokio::io::BufReader::new(tls_stream);
            match tokio::time::timeout(limits.header_read_timeout, stream.fill_buf()).await {
                Ok(Ok(first)) if !first.is_empty() => {}
                _ => {
                    debug!(%peer, "no request after the handshake; closing");
                    return;
                }
            }
            let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
            if let Err(e) = watcher.watch(connection).await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    info!("shutting down: draining open connections");
    tokio::select! {
        () = graceful.shutdown() => info!("all connections drained"),
        () = tokio::time::sleep(limits.drain_timeout) => {
            warn!(timeout = ?limits.drain_timeout, "drain timed out; closing remaining connections");
        }
    }
    Ok(())
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || e.raw_os_error().is_some_and(|code| code == 24 || code == 23) // EMFILE, ENFILE
}

/// Resolves when the process receives SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("received Ctrl-C"),
        () = term => info!("received SIGTERM"),
    }
}
