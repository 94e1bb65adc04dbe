//! The errors of the CA library. Each names the file, certificate or request
//! it is about and says what is wrong in words; callers map variants (never
//! messages) to exit codes or HTTP statuses.

use std::io;
use std::path::PathBuf;

use crate::chain::ChainError;
use crate::spiffe::SpiffeIdError;
use crate::svid::SvidError;

/// Errors of CA operations: loading, saving, issuing, inspecting, verifying.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{}: {}", .path.display(), os_reason(.source))]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {}", .path.display(), os_reason(.source))]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} exists", .path.display())]
    Exists { path: PathBuf },
    #[error("not a PEM certificate")]
    NotPemCertificate,
    #[error("not a PEM private key")]
    NotPemKey,
    #[error("certificate could not be parsed: {reason}")]
    BadCertificate { reason: String },
    #[error("{}: {reason}", .path.display())]
    BadCaFile { path: PathBuf, reason: String },
    #[error("{}: unsupported CA key ({found}); the CA key must be ECDSA P-256", .path.display())]
    UnsupportedCaKey { path: PathBuf, found: String },
    #[error("{} does not match the certificate in {}", .key.display(), .cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{} is not a CA certificate", .path.display())]
    NotACa { path: PathBuf },
    #[error(transparent)]
    SpiffeId(#[from] SpiffeIdError),
    #[error("{id} is not in this CA's trust domain {trust_domain}")]
    ForeignTrustDomain { id: String, trust_domain: String },
    #[error("invalid DNS name {name:?}: {reason}")]
    BadDnsName { name: String, reason: String },
    #[error("the ttl must be longer than zero")]
    ZeroTtl,
    #[error("{what} is reserved for the CA server itself; workloads cannot have it")]
    Reserved { what: String },
    #[error("could not {what}: {source}")]
    Crypto {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("the system random number generator failed")]
    Random,
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Svid(#[from] SvidError),
}

/// Why a certificate signing request was refused. Variants for which
/// [`CsrError::is_forbidden`] is true are authorization failures (HTTP 403);
/// the rest are bad requests (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("the request is not a PEM certificate signing request")]
    NotPem,
    #[error("the certificate signing request could not be parsed: {reason}")]
    Malformed { reason: String },
    #[error("the certificate signing request's signature does not verify: {reason}")]
    BadSignature { reason: String },
    #[error("unsupported key {found} (use ECDSA P-256, ECDSA P-384 or Ed25519)")]
    UnsupportedKey { found: String },
    #[error(
        "the certificate signing request asks for a CA certificate ({what}); workloads get leaves only"
    )]
    CaRequested { what: &'static str },
    #[error("the certificate signing request has no URI SAN; it must name exactly one SPIFFE ID")]
    NoUriSan,
    #[error(
        "the certificate signing request has {count} URI SANs; it must name exactly one SPIFFE ID"
    )]
    TooManyUriSans { count: usize },
    #[error("the requested URI SAN is not a valid workload SPIFFE ID: {source}")]
    InvalidSpiffeId {
        #[source]
        source: SpiffeIdError,
    },
    #[error("{requested} is not in this CA's trust domain {trust_domain}")]
    ForeignTrustDomain {
        requested: String,
        trust_domain: String,
    },
    #[error("the token is for {allowed}, the request asks for {requested}")]
    NotAllowed { requested: String, allowed: String },
    #[error("{requested} is reserved for the CA server itself; workloads cannot have it")]
    Reserved { requested: String },
}

impl CsrError {
    /// True when the request was well formed but asks for an identity the
    /// caller may not have.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            CsrError::ForeignTrustDomain { .. }
                | CsrError::NotAllowed { .. }
                | CsrError::Reserved { .. }
        )
    }
}

/// The OS's words for an I/O error, without Rust's `(os error N)` suffix:
/// `No such file or directory`.
pub fn os_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match err.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map(str::to_owned)
            .unwrap_or(text),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_the_os_says_them() {
        let err = CaError::Read {
            path: PathBuf::from("ca/ca.key"),
            source: io::Error::from_raw_os_error(2),
        };
        assert_eq!(err.to_string(), "ca/ca.key: No such file or directory");
    }

    #[test]
    fn only_identity_refusals_are_forbidden() {
        assert!(
            CsrError::NotAllowed {
                requested: "a".into(),
                allowed: "b".into()
            }
            .is_forbidden()
        );
        assert!(!CsrError::NoUriSan.is_forbidden());
        assert!(!CsrError::CaRequested { what: "cA=true" }.is_forbidden());
    }
}
