//! The chain check both SPIFFE verifiers share: the upstream's
//! ([`super::client`]) and a mutual listener's ([`super::server`], for full
//! and resumed handshakes). The signature checks and the SVID rules they
//! share with the CA's verifier are `mesh_ca`'s ([`mesh_ca::HandshakeSignatures`],
//! [`mesh_ca::peer_svid`]).

use rustls::Error;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::ParsedCertificate;

use super::{IdentityStore, provider};

/// The side of the handshake the verified peer is on: a server's leaf must
/// be good for serverAuth, a client's for clientAuth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerRole {
    Server,
    Client,
}

/// The peer's chain against the *current* trust bundle at `now`, so a
/// bundle rotation applies to the next handshake. Names and IPs are not
/// checked: SVIDs need not carry them, identity is the SPIFFE ID, which
/// the caller checks next.
pub(super) fn verify_chain(
    store: &IdentityStore,
    role: PeerRole,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), Error> {
    let identity = store
        .current()
        .ok_or_else(|| Error::General("no identity".to_owned()))?;
    match role {
        PeerRole::Server => rustls::client::verify_server_cert_signed_by_trust_anchor(
            &ParsedCertificate::try_from(end_entity)?,
            &identity.trust.roots,
            intermediates,
            now,
            provider().signature_verification_algorithms.all,
        ),
        PeerRole::Client => identity
            .trust
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)
            .map(|_| ()),
    }
}
