//! Upstream TLS origination: the client config of a cluster with `tls:`,
//! verifying the upstream's SVID against the mesh bundle and its SPIFFE ID
//! against `peer`, or the server's name against the system roots.

use std::sync::Arc;

use mesh_ca::SpiffeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{IdentityStore, provider};
use crate::config::{TlsMode, UpstreamProtocol, UpstreamTlsSpec, UpstreamTrust};

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
    ) -> Result<Self, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?;
        let builder = match spec.trust {
            UpstreamTrust::Mesh => {
                let store = store
                    .clone()
                    .ok_or("tls with mesh trust needs an identity")?;
                // Without a peer every workload of the mesh would pass
                // (validation refuses such a config; this is the backstop).
                let peer = spec.peer.as_deref().ok_or(
                    "tls with mesh trust needs a peer: the SPIFFE ID the upstream must present",
                )?;
                let peer = SpiffeId::parse(peer).map_err(|e| format!("peer \"{peer}\": {e}"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
                        store,
                        peer,
                    }))
            }
            UpstreamTrust::System => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| e.to_string())?;
                builder.with_webpki_verifier(verifier)
            }
        };
        let mut config = match (spec.mode, store) {
            (TlsMode::Mutual, Some(store)) => {
                builder.with_client_cert_resolver(Arc::new(StoreClientResolver(store)))
            }
            (TlsMode::Mutual, None) => return Err("tls mode mutual needs an identity".to_owned()),
            (TlsMode::Server, _) => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match protocol {
            Some(UpstreamProtocol::Http2) => vec![b"h2".to_vec()],
            Some(UpstreamProtocol::Http1) => vec![b"http/1.1".to_vec()],
            None => Vec::new(),
        };
        let name = spec.sni.as_deref().unwrap_or(default_name);
        let server_name = ServerName::try_from(name.to_owned())
            .or_else(|_| ServerName::try_from("mesh-upstream".to_owned()))
            .map_err(|e| e.to_string())?;
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

/// Chain validation against the current mesh bundle, then the SVID rules
/// and the expected SPIFFE ID. Names and IPs are not checked: SVIDs need
/// not carry them, identity is the SPIFFE ID.
#[derive(Debug)]
struct SpiffeServerVerifier {
    store: Arc<IdentityStore>,
    peer: SpiffeId,
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
        let identity = self
            .store
            .current()
            .ok_or_else(|| Error::General("no identity".to_owned()))?;
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &identity.trust.roots,
            intermediates,
            now,
            provider().signature_verification_algorithms.all,
        )?;
        let other = |e: Arc<dyn std::error::Error + Send + Sync>| {
            Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(e)))
        };
        let got = mesh_ca::svid_spiffe_id(end_entity).map_err(|e| other(Arc::new(e)))?;
        if got != self.peer {
            return Err(other(Arc::new(WrongPeer {
                got,
                want: self.peer.clone(),
            })));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
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
        assert!(
            err.as_deref().is_some_and(|e| e.contains("needs a peer")),
            "{err:?}"
        );
    }
}
