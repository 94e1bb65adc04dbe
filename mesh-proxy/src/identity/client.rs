//! Upstream TLS origination: the client config of a cluster with `tls:`,
//! verifying the upstream's SVID against the mesh bundle and its SPIFFE ID
//! against `peer`, or the server's name against the system roots.

use std::sync::Arc;

use mesh_ca::SpiffeId;
use mesh_ca::{HandshakeSignatures, SpiffeIdError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::verify::{PeerRole, verify_chain};
use super::{IdentityStore, provider};
use crate::config::{TlsMode, UpstreamProtocol, UpstreamTlsSpec, UpstreamTrust};

/// Why a cluster's upstream TLS config cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("tls with mesh trust needs an identity")]
    MeshTrustNoIdentity,
    #[error("tls with mesh trust needs a peer: the SPIFFE ID the upstream must present")]
    NoPeer,
    #[error("peer \"{peer}\": {source}")]
    Peer {
        peer: String,
        #[source]
        source: SpiffeIdError,
    },
    #[error("tls mode mutual needs an identity")]
    MutualNoIdentity,
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    #[error(transparent)]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    #[error(transparent)]
    ServerName(#[from] rustls::pki_types::InvalidDnsNameError),
}

/// Everything needed to open TLS connections to one cluster's endpoints.
pub struct UpstreamTls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// `default_name` is the SNI when the spec has none (a DNS endpoint's
    /// name, or the cluster's). `alpn`: `None` for raw TCP.
    pub fn new(
        spec: &UpstreamTlsSpec,
        store: Option<Arc<IdentityStore>>,
        protocol: Option<UpstreamProtocol>,
        default_name: &str,
    ) -> Result<Self, UpstreamTlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match spec.trust {
            UpstreamTrust::Mesh => {
                let store = store.clone().ok_or(UpstreamTlsError::MeshTrustNoIdentity)?;
                // Without a peer every workload of the mesh would pass
                // (validation refuses such a config; this is the backstop).
                let peer = spec.peer.as_deref().ok_or(UpstreamTlsError::NoPeer)?;
                let peer = SpiffeId::parse(peer).map_err(|source| UpstreamTlsError::Peer {
                    peer: peer.to_owned(),
                    source,
                })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
                        store,
                        peer,
                        signatures: HandshakeSignatures::new(&provider()),
                    }))
            }
            UpstreamTrust::System => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()?;
                builder.with_webpki_verifier(verifier)
            }
        };
        let mut config = match (spec.mode, store) {
            (TlsMode::Mutual, Some(store)) => {
                builder.with_client_cert_resolver(Arc::new(StoreClientResolver(store)))
            }
            (TlsMode::Mutual, None) => return Err(UpstreamTlsError::MutualNoIdentity),
            (TlsMode::Server, _) => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match protocol {
            Some(UpstreamProtocol::Http2) => vec![b"h2".to_vec()],
            Some(UpstreamProtocol::Http1) => vec![b"http/1.1".to_vec()],
            None => Vec::new(),
        };
        let name = spec.sni.as_deref().unwrap_or(default_name);
        let server_name = ServerName::try_from(name.to_owned())
            .or_else(|_| ServerName::try_from("mesh-upstream".to_owned()))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    pub async fn connect(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector
            .connect(self.server_name.clone(), stream)
            .await
    }
}

#[derive(Debug)]
struct StoreClientResolver(Arc<IdentityStore>);

impl ResolvesClientCert for StoreClientResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.current().map(|i| Arc::clone(&i.certified))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The upstream's chain against the current mesh bundle, then the SVID
/// rules and the expected SPIFFE ID.
#[derive(Debug)]
struct SpiffeServerVerifier {
    store: Arc<IdentityStore>,
    peer: SpiffeId,
    signatures: HandshakeSignatures,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream identity {got} is not the expected {want}")]
struct WrongPeer {
    got: SpiffeId,
    want: SpiffeId,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        verify_chain(
            &self.store,
            PeerRole::Server,
            end_entity,
            intermediates,
            now,
        )?;
        let got = mesh_ca::peer_svid(end_entity)?;
        if got != self.peer {
            return Err(mesh_ca::refused(WrongPeer {
                got,
                want: self.peer.clone(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_trust_without_a_peer_is_refused_even_past_validation() {
        let spec = UpstreamTlsSpec {
            mode: TlsMode::Server,
            peer: None,
            sni: None,
            trust: UpstreamTrust::Mesh,
        };
        let store = Some(IdentityStore::new(None));
        let err = UpstreamTls::new(&spec, store, None, "db").err();
        assert!(matches!(err, Some(UpstreamTlsError::NoPeer)), "{err:?}");
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("needs a peer"), "{err}");
    }
}
