//! mTLS clients for end-to-end tests: a TLS connection presenting a
//! certificate of the bundled test CA, HTTP/1.1 and HTTP/2 connections
//! over it, and one GET's status and `x-mesh-error`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_ca::testing::{TestCert, TestPki};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const DEADLINE: Duration = Duration::from_secs(10);

pub type Http1 = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;
pub type Http2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// A TLS connection to `port` presenting `cert`, offering `alpn`.
pub async fn connect(
    port: u16,
    pki: &TestPki,
    cert: &TestCert,
    alpn: &[u8],
) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(pki.bundle_pem().as_bytes()) {
        roots.add(der.expect("bundle pem")).expect("root");
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain pem");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key pem");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client cert");
    if !alpn.is_empty() {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = ServerName::try_from("svc.mesh.test").expect("name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("mTLS handshake")
}

pub async fn h1(port: u16, pki: &TestPki, cert: &TestCert) -> Http1 {
    let tls = connect(port, pki, cert, b"http/1.1").await;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    tx
}

pub async fn h2(port: u16, pki: &TestPki, cert: &TestCert) -> Http2 {
    let tls = connect(port, pki, cert, b"h2").await;
    let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    tx
}

/// Status and `x-mesh-error` of one GET.
pub async fn get<F>(send: F) -> (u16, String)
where
    F: Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>>,
{
    let resp = tokio::time::timeout(DEADLINE, send)
        .await
        .expect("response in time")
        .expect("response on the open connection");
    let status = resp.status().as_u16();
    let flag = resp
        .headers()
        .get("x-mesh-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let _ = resp.into_body().collect().await;
    (status, flag)
}

pub fn request() -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get("https://svc.mesh.test/x")
        .header("host", "svc.mesh.test")
        .body(Empty::new())
        .expect("request")
}

pub async fn get_h1(tx: &mut Http1) -> (u16, String) {
    get(tx.send_request(request())).await
}

pub async fn get_h2(tx: &mut Http2) -> (u16, String) {
    get(tx.send_request(request())).await
}

/// A TCP echo server: every connection gets its bytes back.
pub async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Sends `ping` through the tunnel; true when it came back.
pub async fn echoes(tunnel: &mut TlsStream<TcpStream>) -> bool {
    if tunnel.write_all(b"ping").await.is_err() || tunnel.flush().await.is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    matches!(
        tokio::time::timeout(DEADLINE, tunnel.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"ping"
    )
}

/// Waits for the proxy to end the tunnel (EOF or reset), within DEADLINE.
pub async fn closed_by_proxy(tunnel: &mut TlsStream<TcpStream>) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(DEADLINE, tunnel.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}
