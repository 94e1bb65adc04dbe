//! Certificate signing requests: made by workloads (their key never leaves
//! them), signed by the CA.
//!
//! The CA believes exactly two things of a CSR once its signature verifies:
//! the public key, and the one URI SAN it asks for, which must be a workload
//! SPIFFE ID of this trust domain (and the token's ID when there is one).
//! Everything else the request carries (subject, DNS names, key usages,
//! validity wishes) is ignored; the leaf is built by the same code as
//! `Ca::issue`. Requests for a CA certificate are refused outright rather
//! than silently downgraded, so a confused client learns about it. No input
//! can panic this code: every parse step returns an error.

use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension, X509Extension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::ca::{Ca, DEFAULT_LEAF_TTL};
use crate::error::{CaError, CsrError};
use crate::inspect::key_algorithm_name;
use crate::leaf::{self, LeafSpec};
use crate::spiffe::SpiffeId;

/// What the CA allows when signing a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignPolicy {
    /// The only identity the caller may obtain (from its join token or its
    /// current certificate); `None` allows any ID of the CA's trust domain.
    pub allowed_id: Option<SpiffeId>,
    /// Lifetime of the leaf.
    pub ttl: Duration,
    /// Upper bound on `ttl`.
    pub max_ttl: Duration,
}

impl Default for SignPolicy {
    /// Any ID of the trust domain, 24 h, at most 7 days (SPEC §2 defaults).
    fn default() -> Self {
        SignPolicy {
            allowed_id: None,
            ttl: DEFAULT_LEAF_TTL,
            max_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A CSR that passed every check, ready to sign.
pub(crate) struct CheckedCsr {
    requested: SpiffeId,
    public_key: rcgen::SubjectPublicKeyInfo,
}

impl Ca {
    /// Signs a PEM CSR under `policy`; returns the chain PEM, leaf first.
    pub fn sign_csr(&self, csr_pem: &[u8], policy: &SignPolicy) -> Result<String, CaError> {
        let checked = self.check_csr(csr_pem, policy)?;
        self.sign_checked(&checked, policy)
    }

    /// Every check of [`Ca::sign_csr`], without signing: the server records
    /// a join token as used between the two, so a bad CSR never burns one.
    pub(crate) fn check_csr(
        &self,
        csr_pem: &[u8],
        policy: &SignPolicy,
    ) -> Result<CheckedCsr, CaError> {
        let der =
            CertificateSigningRequestDer::from_pem_slice(csr_pem).map_err(|_| CsrError::NotPem)?;
        let (_, csr) =
            X509CertificationRequest::from_der(&der).map_err(|e| CsrError::Malformed {
                reason: e.to_string(),
            })?;
        csr.verify_signature().map_err(|e| CsrError::BadSignature {
            reason: e.to_string(),
        })?;
        let public_key = supported_key(&csr.certification_request_info.subject_pki)?;
        let requested = requested_id(&csr)?;
        if requested.trust_domain() != self.trust_domain() {
            return Err(CsrError::ForeignTrustDomain {
                requested: requested.to_string(),
                trust_domain: self.trust_domain().to_owned(),
            }
            .into());
        }
        if crate::ca_identity::is_reserved_id(&requested) {
            return Err(CsrError::Reserved {
                requested: requested.to_string(),
            }
            .into());
        }
        if let Some(allowed) = &policy.allowed_id
            && *allowed != requested
        {
            return Err(CsrError::NotAllowed {
                requested: requested.to_string(),
                allowed: allowed.to_string(),
            }
            .into());
        }
        Ok(CheckedCsr {
            requested,
            public_key,
        })
    }

    /// Signs a CSR [`Ca::check_csr`] accepted.
    pub(crate) fn sign_checked(
        &self,
        csr: &CheckedCsr,
        policy: &SignPolicy,
    ) -> Result<String, CaError> {
        let now = OffsetDateTime::now_utc();
        let ttl = policy.ttl.min(policy.max_ttl);
        let spec = LeafSpec::new(
            &csr.requested,
            now,
            leaf::expiry(now, ttl, self.not_after())?,
        );
        let cert = spec
            .params()?
            .signed_by(&csr.public_key, self.issuer())
            .map_err(|source| CaError::Crypto {
                what: "sign the certificate",
                source,
            })?;
        Ok(cert.pem())
    }
}

/// The CSR's key, if it is one the mesh uses: ECDSA P-256 or P-384, or
/// Ed25519.
fn supported_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<rcgen::SubjectPublicKeyInfo, CaError> {
    let alg = &spki.algorithm;
    let curve_ok = || {
        alg.parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|c| c == OID_EC_P256 || c == OID_NIST_EC_P384)
    };
    let supported = (alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY && curve_ok())
        || (alg.algorithm == OID_SIG_ED25519 && alg.parameters.is_none());
    let unsupported = || CsrError::UnsupportedKey {
        found: key_algorithm_name(spki),
    };
    if !supported {
        return Err(unsupported().into());
    }
    rcgen::SubjectPublicKeyInfo::from_der(spki.raw).map_err(|_| unsupported().into())
}

/// The one workload SPIFFE ID the CSR asks for, after refusing CA requests.
fn requested_id(csr: &X509CertificationRequest<'_>) -> Result<SpiffeId, CsrError> {
    let mut uris = Vec::new();
    for attr in csr.certification_request_info.iter_attributes() {
        if let ParsedCriAttribute::ExtensionRequest(req) = attr.parsed_attribute() {
            for ext in &req.extensions {
                check_extension(ext, &mut uris)?;
            }
        }
    }
    match uris.as_slice() {
        [] => Err(CsrError::NoUriSan),
        [uri] => SpiffeId::parse(uri).map_err(|source| CsrError::InvalidSpiffeId { source }),
        more => Err(CsrError::TooManyUriSans { count: more.len() }),
    }
}

fn check_extension<'a>(
    ext: &'a X509Extension<'_>,
    uris: &mut Vec<&'a str>,
) -> Result<(), CsrError> {
    let malformed = |what: &str| CsrError::Malformed {
        reason: format!("malformed {what} extension"),
    };
    match ext.parsed_extension() {
        ParsedExtension::SubjectAlternativeName(san) => {
            for name in &san.general_names {
                match name {
                    GeneralName::URI(uri) => uris.push(uri),
                    GeneralName::Invalid(..) => return Err(malformed("subjectAltName")),
                    _ => {}
                }
            }
        }
        ParsedExtension::BasicConstraints(bc) if bc.ca => {
            return Err(CsrError::CaRequested {
                what: "basicConstraints cA=true",
            });
        }
        ParsedExtension::KeyUsage(ku) if ku.key_cert_sign() => {
            return Err(CsrError::CaRequested {
                what: "key usage keyCertSign",
            });
        }
        ParsedExtension::KeyUsage(ku) if ku.crl_sign() => {
            return Err(CsrError::CaRequested {
                what: "key usage cRLSign",
            });
        }
        ParsedExtension::ParseError { error } => {
            return Err(CsrError::Malformed {
                reason: format!("extension {} could not be parsed: {error}", ext.oid),
            });
        }
        _ => {}
    }
    Ok(())
}

/// A new ECDSA P-256 key and a CSR for `spiffe_id` signed by it: what a
/// workload sends to the CA. Returns `(csr_pem, key_pem)`.
pub fn generate_csr(spiffe_id: &SpiffeId) -> Result<(String, String), CaError> {
    let key = KeyPair::generate().map_err(|source| CaError::Crypto {
        what: "generate a key",
        source,
    })?;
    let csr = csr_with_key(spiffe_id, &key)?;
    Ok((csr, key.serialize_pem()))
}

/// A CSR for `spiffe_id` signed by an existing PEM key (PKCS#8), for a
/// workload that keeps its key across renewals.
pub fn generate_csr_for_key(spiffe_id: &SpiffeId, key_pem: &str) -> Result<String, CaError> {
    let key = KeyPair::from_pem(key_pem).map_err(|_| CaError::NotPemKey)?;
    csr_with_key(spiffe_id, &key)
}

fn csr_with_key(spiffe_id: &SpiffeId, key: &KeyPair) -> Result<String, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, spiffe_id.service_name());
    params.subject_alt_names = vec![SanType::URI(leaf::uri(spiffe_id)?)];
    let crypto = |source| CaError::Crypto {
        what: "create the certificate signing request",
        source,
    };
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(crypto)
}

#[cfg(test)]
mod tests;
