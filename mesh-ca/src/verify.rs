//! What every SVID verifier of the mesh shares — the proxy's upstream and
//! downstream verifiers and [`crate::CaServerVerifier`]: handshake
//! signatures checked with one crypto provider's algorithms, and a refusal
//! of our own (not an X.509-SVID, the wrong identity) carried through
//! rustls so a log can say it in words.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

use crate::SpiffeId;

/// The TLS 1.2 and 1.3 handshake-signature checks of a certificate
/// verifier, with the algorithms of one crypto provider.
#[derive(Clone, Copy)]
pub struct HandshakeSignatures(WebPkiSupportedAlgorithms);

impl std::fmt::Debug for HandshakeSignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HandshakeSignatures").field(&self.0).finish()
    }
}

impl HandshakeSignatures {
    pub fn new(provider: &CryptoProvider) -> Self {
        Self(provider.signature_verification_algorithms)
    }

    pub fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    pub fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    pub fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A peer certificate refused for a reason of ours; rustls reports it as
/// `InvalidCertificate(Other(reason))`, which [`crate::tls_error_words`]
/// and the proxy's handshake logs turn back into `reason`.
pub fn refused(reason: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        reason,
    ))))
}

/// The SPIFFE ID of a peer's leaf by the X.509-SVID rules, as a verifier
/// reports it: a leaf that breaks them is [`refused`].
pub fn peer_svid(end_entity: &CertificateDer<'_>) -> Result<SpiffeId, Error> {
    crate::svid_spiffe_id(end_entity).map_err(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestPki;

    #[test]
    fn a_leaf_that_is_not_an_svid_is_refused_in_words() {
        let pki = TestPki::new("mesh.test");
        let ca_der = CertificateDer::from(pki.ca().cert_der().to_vec());
        let err = peer_svid(&ca_der).expect_err("a CA certificate is no SVID");
        match err {
            Error::InvalidCertificate(CertificateError::Other(o)) => {
                assert!(o.0.downcast_ref::<crate::SvidError>().is_some(), "{o}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signature_schemes_are_the_providers() {
        let provider = rustls::crypto::ring::default_provider();
        let sigs = HandshakeSignatures::new(&provider);
        assert_eq!(
            sigs.schemes(),
            provider
                .signature_verification_algorithms
                .supported_schemes()
        );
        assert!(
            sigs.schemes()
                .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
        );
    }
}
