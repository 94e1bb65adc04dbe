//! `mesh-ca`: the mesh's identity foundation.
//!
//! - [`SpiffeId`] / [`SpiffePattern`]: workload identities and allow-list
//!   globs.
//! - [`Ca`]: a root CA (ECDSA P-256) on disk (`ca.crt`, `ca.key` 0600) that
//!   issues X.509-SVIDs ([`Ca::issue`]) and signs workload CSRs
//!   ([`Ca::sign_csr`]) under a [`SignPolicy`].
//! - [`CaServerVerifier`]: how clients recognise the CA server by its
//!   identity `spiffe://<td>/mesh-ca`, which workloads can never get.
//! - [`svid_spiffe_id`]: the X.509-SVID leaf rules, for verifiers;
//!   [`HandshakeSignatures`], [`peer_svid`] and [`refused`]: what every
//!   verifier of the mesh (the proxy's both ways, the CA's) shares.
//! - [`inspect_pem`] / [`verify_chain`]: certificates for people.
//! - [`token`]: join tokens, signed by the CA key, naming one SPIFFE ID.
//! - `testing` (feature `test-util`): a test PKI with deliberately defective
//!   certificates.
//!
//! Crypto is ring only (via rcgen and x509-parser). Nothing here panics on
//! input: certificates, CSRs and tokens from peers are parsed with errors,
//! never unwraps.

mod ca;
mod ca_identity;
mod chain;
mod csr;
mod error;
mod files;
mod inspect;
mod leaf;
pub mod server;
mod spiffe;
mod svid;
pub mod token;
mod verify;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use ca::{CA_CERT_FILE, CA_KEY_FILE, Ca, DEFAULT_LEAF_TTL, IssueRequest, Issued};
pub use ca_identity::{
    CA_SERVICE, CaServerVerifier, RESERVED_DNS_NAMES, ca_server_id, tls_error_words,
};
pub use chain::{ChainError, VerifiedChain, verify_chain};
pub use csr::{SignPolicy, generate_csr, generate_csr_for_key};
pub use error::{CaError, CsrError, os_reason};
pub use files::{read_file, write_private_key, write_public_file};
pub use inspect::{
    CertInfo, human_duration, inspect_der, inspect_pem, key_matches_cert, validity_words,
};
pub use spiffe::{SpiffeId, SpiffeIdError, SpiffePattern, validate_trust_domain};
pub use svid::{SvidError, svid_spiffe_id};
pub use token::{Token, TokenError};
pub use verify::{HandshakeSignatures, peer_svid, refused};
