//! The CA server's identity (SPEC §11): it serves as
//! `spiffe://<td>/mesh-ca`, clients verify that identity against the trust
//! bundle before they send anything (a join token is a bearer secret), and
//! the CA never issues that identity, or the host names clients dial it by,
//! to a workload.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use crate::ca::IssueRequest;
use crate::error::CaError;
use crate::spiffe::{SpiffeId, SpiffeIdError};
use crate::verify::{HandshakeSignatures, refused};

/// The service name of the CA server's SPIFFE ID.
pub const CA_SERVICE: &str = "mesh-ca";
/// Host names the CA server answers to by default; no workload gets them.
pub const RESERVED_DNS_NAMES: [&str; 3] = ["ca", "mesh-ca", "localhost"];

/// `spiffe://<td>/mesh-ca`.
pub fn ca_server_id(trust_domain: &str) -> Result<SpiffeId, SpiffeIdError> {
    SpiffeId::new(trust_domain, CA_SERVICE)
}

pub(crate) fn is_reserved_id(id: &SpiffeId) -> bool {
    id.path() == format!("/{CA_SERVICE}")
}

fn is_reserved_dns(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    RESERVED_DNS_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
}

/// Refuses a workload request for the CA server's identity or names.
pub(crate) fn check_workload_request(req: &IssueRequest) -> Result<(), CaError> {
    if is_reserved_id(&req.spiffe_id) {
        return Err(CaError::Reserved {
            what: req.spiffe_id.to_string(),
        });
    }
    match req.dns_names.iter().find(|n| is_reserved_dns(n)) {
        Some(name) => Err(CaError::Reserved {
            what: format!("the DNS name {name:?}"),
        }),
        None => Ok(()),
    }
}

/// Verifies a CA server: the usual WebPKI checks against the bundle (chain,
/// time, serverAuth, the host name dialled), then that the leaf is the
/// X.509-SVID `spiffe://<td>/mesh-ca` of a trust domain in the bundle. A
/// workload certificate that happens to carry the host name is refused in
/// the handshake, before any request (or token) is sent.
#[derive(Debug)]
pub struct CaServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    signatures: HandshakeSignatures,
    expected: Vec<SpiffeId>,
}

/// Why a server is not the CA.
#[derive(Debug, thiserror::Error)]
#[error("the server is {found}, not the CA ({expected})")]
struct NotTheCa {
    found: String,
    expected: String,
}

impl CaServerVerifier {
    /// A verifier trusting the roots of `bundle`, each a CA of its trust
    /// domain (its `spiffe://<td>` URI SAN).
    pub fn new(
        bundle: &[CertificateDer<'_>],
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, Error> {
        let mut roots = RootCertStore::empty();
        let mut expected = Vec::new();
        for der in bundle {
            roots.add(der.clone().into_owned())?;
            let td = crate::token::ca_trust_domain(der)
                .map_err(|e| Error::General(format!("trust bundle: {e}")))?;
            let id = ca_server_id(&td).map_err(|e| Error::General(e.to_string()))?;
            if !expected.contains(&id) {
                expected.push(id);
            }
        }
        let signatures = HandshakeSignatures::new(&provider);
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| Error::General(e.to_string()))?;
        Ok(Self {
            inner,
            signatures,
            expected,
        })
    }
}

impl ServerCertVerifier for CaServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let found = crate::svid_spiffe_id(end_entity).ok();
        match found {
            Some(id) if self.expected.contains(&id) => Ok(ServerCertVerified::assertion()),
            other => {
                let expected = self
                    .expected
                    .iter()
                    .map(SpiffeId::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ");
                let found = other.map_or("not an X.509-SVID".to_owned(), |id| id.to_string());
                Err(refused(NotTheCa { found, expected }))
            }
        }
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

/// A TLS failure in words: for a certificate refused by a verifier's own
/// reason ([`CaServerVerifier`]'s "the server is …, not the CA"), that
/// reason rather than rustls's debug form.
pub fn tls_error_words(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(CertificateError::Other(o))) => {
            format!("invalid peer certificate: {}", o.0)
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestPki;

    #[test]
    fn workloads_cannot_get_the_ca_identity_or_its_names() {
        let pki = TestPki::new("mesh.test");
        let ca_id = ca_server_id("mesh.test").expect("id");
        let err = pki
            .ca()
            .issue(&IssueRequest::new(ca_id))
            .expect_err("the CA identity is reserved");
        assert!(
            err.to_string()
                .contains("spiffe://mesh.test/mesh-ca is reserved"),
            "{err}"
        );
        for name in ["localhost", "CA", "mesh-ca.", "Mesh-CA"] {
            let mut req = IssueRequest::new(SpiffeId::new("mesh.test", "web").expect("id"));
            req.dns_names = vec!["web.mesh.test".into(), name.into()];
            let err = pki.ca().issue(&req).expect_err(name);
            assert!(
                err.to_string().contains("reserved for the CA server"),
                "{err}"
            );
        }
        let mut ok = IssueRequest::new(SpiffeId::new("mesh.test", "web").expect("id"));
        ok.dns_names = vec!["ca.example".into(), "localhost.example".into()];
        pki.ca().issue(&ok).expect("other names are fine");
    }

    #[test]
    fn csrs_for_the_ca_identity_are_forbidden() {
        let pki = TestPki::new("mesh.test");
        let (csr, _) = crate::generate_csr(&ca_server_id("mesh.test").expect("id")).expect("csr");
        let err = pki
            .ca()
            .sign_csr(csr.as_bytes(), &crate::SignPolicy::default())
            .expect_err("reserved");
        match err {
            CaError::Csr(e) => assert!(e.is_forbidden(), "{e}"),
            other => panic!("{other}"),
        }
    }
}
