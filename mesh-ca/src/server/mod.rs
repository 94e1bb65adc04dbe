//! The CA server (SPEC §2): `GET /v1/bundle`, `POST /v1/sign`, `GET /healthz`
//! over HTTPS with a certificate the CA issues itself.
//!
//! `POST /v1/sign` authenticates the caller either by a join token
//! (`Authorization: Bearer …`, first certificate) or by a still-valid client
//! certificate of the same SPIFFE ID (renewal, over mTLS). Either way it
//! signs only the identity the caller proved; the key stays with the
//! workload (it sends a CSR). Errors are JSON: `{"error": "...", "code": "..."}`.

mod http;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{Ca, IssueRequest, SpiffeId};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Default lifetime of signed leaves.
    pub ttl: Duration,
    /// Upper bound a caller may ask for with `?ttl=`.
    pub max_ttl: Duration,
    /// Names and addresses the server's own certificate carries, so clients
    /// can verify it by the host they dial.
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot issue the server's own certificate: {0}")]
    OwnCert(#[source] crate::CaError),
    #[error("tls: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) struct State {
    pub ca: Ca,
    pub opts: ServerOptions,
}

/// A bound, ready CA server.
pub struct CaServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
}

impl CaServer {
    /// Issues the server certificate (`spiffe://<td>/mesh-ca` with the given
    /// names) and binds `addr`.
    pub async fn bind(ca: Ca, addr: SocketAddr, opts: ServerOptions) -> Result<Self, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let id = SpiffeId::from_service(ca.trust_domain(), "mesh-ca")
            .map_err(|e| ServerError::OwnCert(e.into()))?;
        let mut req = IssueRequest::new(id);
        req.dns_names = opts.dns_names.clone();
        req.ips = opts.ips.clone();
        req.ttl = Duration::from_secs(365 * 24 * 3600);
        let own = ca.issue(&req).map_err(ServerError::OwnCert)?;
        let chain = CertificateDer::pem_slice_iter(own.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(own.key_pem.as_bytes())
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.cert_der().to_vec()))
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        // Client certificates are optional: renewal presents one, the first
        // request (with a token) cannot.
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .allow_unauthenticated()
                .build()
                .map_err(|e| ServerError::Tls(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            state: Arc::new(State { ca, opts }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the task is dropped.
    pub async fn run(self) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let acceptor = self.acceptor.clone();
            let state = Arc::clone(&self.state);
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => http::serve(tls, peer, state).await,
                    Ok(Err(e)) => tracing::info!(%peer, "tls handshake failed: {e}"),
                    Err(_) => tracing::info!(%peer, "tls handshake timed out"),
                }
            });
        }
    }
}
