//! Identity from the CA (`identity.ca`): the proxy makes its own key, sends
//! a CSR to the CA server with its join token, and renews at about half the
//! lifetime (±10 % jitter) over mTLS with its current certificate. Failures
//! are retried with exponential backoff; the current certificate keeps
//! serving until it expires. Until the first certificate arrives the store
//! is empty: TLS handshakes fail and `/ready` says `NO_IDENTITY`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use mesh_ca::SpiffeId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;

use super::files::{Names, assemble, read_certs};
use super::{Identity, IdentityError, IdentityStore, provider};

/// Why one attempt to obtain a certificate from the CA failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CaClientError {
    #[error("spiffe_id")]
    SpiffeId(#[source] mesh_ca::SpiffeIdError),
    #[error("cannot generate a key and CSR")]
    Csr(#[source] mesh_ca::CaError),
    /// The trust bundle cannot be read, or the issued chain is not a valid SVID.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("join token {}", path.display())]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file holds an invalid token")]
    InvalidToken,
    #[error("the CA answered with something that is not a PEM chain")]
    NotPemChain(#[source] rustls::pki_types::pem::Error),
    #[error("the generated key cannot be read back")]
    GeneratedKey(#[source] rustls::pki_types::pem::Error),
    #[error("the CA issued {issued} instead of {expected}")]
    WrongIdentity {
        issued: SpiffeId,
        expected: SpiffeId,
    },
    #[error("the CA url has no host")]
    NoHost,
    #[error("CA host {host:?}")]
    InvalidHost {
        host: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("cannot set up TLS to the CA")]
    TlsSetup(#[source] rustls::Error),
    #[error("connect {host}:{port}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("tls with the CA: {0}")]
    Handshake(String),
    #[error("http with the CA")]
    Http(#[source] hyper::Error),
    #[error("cannot build the request")]
    Request(#[source] http::Error),
    #[error("reading the CA's answer")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the CA refused ({status}): {body}")]
    Refused {
        status: http::StatusCode,
        body: String,
    },
    #[error("no answer from the CA within 15 s")]
    Timeout,
}

/// Where and as whom to obtain certificates.
#[derive(Debug, Clone)]
pub struct CaSource {
    pub url: http::Uri,
    pub trust_bundle: PathBuf,
    pub token_file: PathBuf,
    pub spiffe_id: String,
    pub ttl: Duration,
}

/// Obtains the first certificate and keeps renewing; stops when the store
/// is dropped.
pub fn spawn_ca_client(store: &Arc<IdentityStore>, source: CaSource) {
    let weak = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let Some(store) = weak.upgrade() else { return };
            let wait = match obtain(&store, &source).await {
                Ok(identity) => {
                    failures = 0;
                    let wait = renew_after(&identity);
                    tracing::info!(renew_in = ?wait, "certificate obtained from the CA");
                    store.set(identity);
                    wait
                }
                Err(e) => {
                    failures += 1;
                    store
                        .rotation_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let wait = backoff(failures);
                    let error: &dyn std::error::Error = &e;
                    tracing::warn!(error, retry_in = ?wait, "cannot obtain a certificate from the CA");
                    wait
                }
            };
            drop(store);
            tokio::time::sleep(wait).await;
        }
    });
}

/// About half of the remaining lifetime (±10 %), at least a second. The
/// remaining time rather than not_before: CAs backdate not_before to absorb
/// clock skew, which would skew "half the lifetime" for short-lived certs.
fn renew_after(identity: &Identity) -> Duration {
    let remaining = identity.expires_in_secs().max(2) as f64;
    Duration::from_secs_f64((remaining * (0.45 + fastrand::f64() * 0.1)).max(1.0))
}

/// 1 s, 2 s, 4 s … capped at 30 s, with jitter.
fn backoff(failures: u32) -> Duration {
    let base =
        Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(Duration::from_secs(30));
    base.mul_f64(0.8 + fastrand::f64() * 0.4)
}

async fn obtain(store: &IdentityStore, source: &CaSource) -> Result<Identity, CaClientError> {
    let id = SpiffeId::parse(&source.spiffe_id).map_err(CaClientError::SpiffeId)?;
    let (csr_pem, key_pem) = mesh_ca::generate_csr(&id).map_err(CaClientError::Csr)?;
    let roots = read_certs(&source.trust_bundle)?;
    // Renew over mTLS while the current certificate is valid; otherwise
    // (first time, or expired) use the join token.
    let current = store.current().filter(|c| c.expires_in_secs() > 0);
    let token = match &current {
        Some(_) => None,
        None => Some(
            std::fs::read_to_string(&source.token_file)
                .map_err(|e| CaClientError::Token {
                    path: source.token_file.clone(),
                    source: e,
                })?
                .trim()
                .to_owned(),
        ),
    };
    let chain_pem = post_csr(
        source,
        &roots,
        current.map(|c| Arc::clone(&c.certified)),
        token.as_deref(),
        csr_pem,
    )
    .await?;
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(CaClientError::NotPemChain)?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(CaClientError::GeneratedKey)?;
    let names = Names {
        cert: format!("certificate from {}", source.url),
        key: "generated key".to_owned(),
        bundle: source.trust_bundle.display().to_string(),
    };
    let identity = assemble(chain, key, roots, &names)?;
    if identity.spiffe_id != id {
        return Err(CaClientError::WrongIdentity {
            issued: identity.spiffe_id,
            expected: id,
        });
    }
    Ok(identity)
}

#[derive(Debug)]
struct Current(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for Current {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// POSTs the CSR to `{url}/v1/sign?ttl=…`; the CA server is verified by
/// name against the trust bundle (nothing is trusted on first use) and must
/// be the CA's identity `spiffe://<td>/mesh-ca` (SPEC §11), so a workload
/// certificate for the same host name never sees the token.
async fn post_csr(
    source: &CaSource,
    roots: &[CertificateDer<'static>],
    current: Option<Arc<CertifiedKey>>,
    token: Option<&str>,
    csr_pem: String,
) -> Result<String, CaClientError> {
    let host = source
        .url
        .host()
        .ok_or(CaClientError::NoHost)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = source.url.port_u16().unwrap_or(443);
    let verifier =
        mesh_ca::CaServerVerifier::new(roots, provider()).map_err(CaClientError::TlsSetup)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(CaClientError::TlsSetup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match current {
        Some(cert) => builder.with_client_cert_resolver(Arc::new(Current(cert))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.clone()).map_err(|e| CaClientError::InvalidHost {
        host: host.clone(),
        source: e,
    })?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| CaClientError::Connect {
                host: host.clone(),
                port,
                source: e,
            })?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| CaClientError::Handshake(mesh_ca::tls_error_words(&e)))?;
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(CaClientError::Http)?;
        tokio::spawn(conn);
        let mut req = http::Request::post(format!("/v1/sign?ttl={}s", source.ttl.as_secs()))
            .header(http::header::HOST, format!("{host}:{port}"))
            .header(http::header::CONTENT_TYPE, "application/pkcs10")
            .body(Full::new(Bytes::from(csr_pem)))
            .map_err(CaClientError::Request)?;
        if let Some(token) = token {
            let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| CaClientError::InvalidToken)?;
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
        }
        let resp = tx.send_request(req).await.map_err(CaClientError::Http)?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(CaClientError::Body)?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            Ok(text)
        } else {
            Err(CaClientError::Refused {
                status,
                body: text.trim().to_owned(),
            })
        }
    };
    tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .map_err(|_| CaClientError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_thirty_seconds() {
        for (failures, lo, hi) in [
            (1, 0.8, 1.2),
            (2, 1.6, 2.4),
            (3, 3.2, 4.8),
            (10, 24.0, 36.0),
        ] {
            let d = backoff(failures).as_secs_f64();
            assert!((lo..=hi).contains(&d), "{failures}: {d}");
        }
    }
}
