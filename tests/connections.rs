//! Connection-level limits of the real server: no plaintext listener, a slowloris client
//! (request headers trickled) and clients that connect and stay silent are cut off at their
//! timeouts, and while they hang on, other clients are served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::server::Limits;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::fixture;
use crate::server::{Running, SERVICE_NAME, start};

fn short() -> Limits {
    Limits {
        handshake_timeout: Duration::from_millis(500),
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    }
}

async fn tls(server: &Running, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(server.ca_pem.as_bytes()).expect("ca")).expect("root");
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    connector.connect(ServerName::try_from(SERVICE_NAME).expect("name"), tcp).await.expect("handshake")
}

/// Read until the server closes the connection (or `limit` passes): how long it took.
async fn closed_after(mut stream: impl AsyncReadExt + Unpin, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after {limit:?}"),
        }
    }
}

async fn a_review_is_served(server: &Running) {
    let client = crate::server::client(&server.ca_pem, server.addr, false);
    let (_, body) = crate::server::post_review(&client, server.addr, &fixture("configmap-create.json")).await;
    assert_eq!(body["response"]["allowed"], true);
}

/// The review port speaks TLS only: a plaintext HTTP request gets no HTTP response.
#[tokio::test]
async fn there_is_no_plaintext_listener() {
    let server = start(short()).await;
    let mut plain = TcpStream::connect(server.addr).await.expect("connect");
    let body = fixture("configmap-create.json").to_string();
    let request = format!(
        "POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    plain.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/"), "a plaintext request was answered: {:?}", String::from_utf8_lossy(&answer));
    assert!(!String::from_utf8_lossy(&answer).contains("allowed"), "{answer:?}");
}

/// Headers sent one byte at a time: the connection is closed at the header timeout, whatever
/// the client still sends.
#[tokio::test]
async fn a_slowloris_client_is_cut_off_at_the_header_timeout() {
    let server = start(short()).await;
    let stream = tls(&server, b"http/1.1").await;
    let (reader, mut writer) = tokio::io::split(stream);
    let trickle = tokio::spawn(async move {
        for byte in b"POST /validate HTTP/1.1\r\nHost: portcullis\r\nX-Slow: ".iter().chain([b'a'; 200].iter()) {
            if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let took = closed_after(reader, Duration::from_secs(8)).await;
    assert!(took < Duration::from_secs(3), "closed only after {took:?}");
    trickle.abort();
    a_review_is_served(&server).await;
}

/// A client that connects and never starts the TLS handshake is closed at the handshake timeout.
#[tokio::test]
async fn a_silent_connection_is_closed_at_the_handshake_timeout() {
    let server = start(short()).await;
    let silent = TcpStream::connect(server.addr).await.expect("connect");
    let took = closed_after(silent, Duration::from_secs(8)).await;
    assert!(took < Duration::from_secs(3), "closed only after {took:?}");
}

/// A client that completes the handshake and then sends nothing is closed at the header timeout
/// (HTTP/1.1); 200 such connections at once do not keep the server from serving.
#[tokio::test]
async fn many_idle_connections_are_closed_and_do_not_block_reviews() {
    let server = start(short()).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    let handshaken = tls(&server, b"http/1.1").await;
    a_review_is_served(&server).await;
    let took = closed_after(handshaken, Duration::from_secs(8)).await;
    assert!(took < Duration::from_secs(3), "an idle HTTP/1.1 connection stayed open {took:?}");
    for connection in idle.drain(..50) {
        let took = closed_after(connection, Duration::from_secs(8)).await;
        assert!(took < Duration::from_secs(3), "a silent connection stayed open {took:?}");
    }
}
