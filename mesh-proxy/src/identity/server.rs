//! Downstream TLS: the handshake of a `tls:` listener, the SPIFFE client
//! verifier, the allow-list, and failure reasons in words.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mesh_ca::{HandshakeSignatures, SpiffeId};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConnection};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, HandshakeKind, ServerConfig,
    SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::allow::{Admission, AllowList};
use super::verify::{PeerRole, verify_chain};
use super::{IdentityStore, human_duration, provider};
use crate::config::{DownstreamTlsSpec, TlsMode};

/// Why a downstream handshake failed; each has a counter
/// (`tls.<listener>.handshake_fail.<reason>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    NoClientCert,
    Expired,
    NotYetValid,
    UnknownCa,
    InvalidSvid,
    BadCertificate,
    NotAllowed,
    Protocol,
    NoIdentity,
    Timeout,
    Io,
}

impl FailReason {
    pub const ALL: [FailReason; 11] = [
        FailReason::NoClientCert,
        FailReason::Expired,
        FailReason::NotYetValid,
        FailReason::UnknownCa,
        FailReason::InvalidSvid,
        FailReason::BadCertificate,
        FailReason::NotAllowed,
        FailReason::Protocol,
        FailReason::NoIdentity,
        FailReason::Timeout,
        FailReason::Io,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::NoClientCert => "no_client_cert",
            FailReason::Expired => "expired",
            FailReason::NotYetValid => "not_yet_valid",
            FailReason::UnknownCa => "unknown_ca",
            FailReason::InvalidSvid => "invalid_svid",
            FailReason::BadCertificate => "bad_certificate",
            FailReason::NotAllowed => "not_allowed",
            FailReason::Protocol => "protocol",
            FailReason::NoIdentity => "no_identity",
            FailReason::Timeout => "timeout",
            FailReason::Io => "io",
        }
    }
}

/// Handshake failures by reason, and connections a reload revoked.
#[derive(Debug, Default)]
pub struct TlsStats {
    pub handshake_fail: [AtomicU64; FailReason::ALL.len()],
    pub handshakes: AtomicU64,
    /// TCP connections closed because a reload dropped their peer from
    /// `allow` (`tls.<listener>.revoked`).
    pub revoked: AtomicU64,
}

impl TlsStats {
    fn count(&self, reason: FailReason) {
        self.handshake_fail[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// What a successful handshake established about the peer.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// The peer's SPIFFE ID; `None` on a server-only TLS listener.
    pub spiffe_id: Option<SpiffeId>,
    /// SHA-256 of the peer's leaf certificate (DER), lower-case hex.
    pub cert_sha256: Option<String>,
    /// Whether the allow-list admits the peer at the handshake.
    pub is_allowed: bool,
}

thread_local! {
    // The SPIFFE ID named by the certificate being verified on this thread,
    // so a failed handshake can be logged with the identity it claimed. The
    // verifier runs inside the same poll that returns the failure.
    static PRESENTED: RefCell<Option<String>> = const { RefCell::new(None) };
}

pub struct TlsServer {
    acceptor: TlsAcceptor,
    store: Arc<IdentityStore>,
    mode: TlsMode,
    allow: Arc<AllowList>,
    pub stats: TlsStats,
    listener: Arc<str>,
}

impl TlsServer {
    /// `alpn`: `h2`/`http/1.1` for HTTP listeners, nothing for TCP ones.
    pub fn new(
        listener: &str,
        spec: &DownstreamTlsSpec,
        store: Arc<IdentityStore>,
        alpn: &[&[u8]],
    ) -> Result<Self, rustls::Error> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match spec.mode {
            TlsMode::Mutual => builder.with_client_cert_verifier(Arc::new(SpiffeClientVerifier {
                store: Arc::clone(&store),
                signatures: HandshakeSignatures::new(&provider()),
            })),
            TlsMode::Server => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(StoreResolver(Arc::clone(&store))));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            store,
            mode: spec.mode,
            allow: Arc::new(AllowList::new(spec.allow.clone())),
            stats: TlsStats::default(),
            listener: Arc::from(listener),
        })
    }

    /// Completes the handshake within `deadline`. Failures are logged once
    /// with the reason in words and counted; the connection is then dropped.
    pub async fn accept(
        &self,
        stream: TcpStream,
        deadline: Duration,
    ) -> Option<(TlsStream<TcpStream>, PeerIdentity)> {
        let peer_addr = stream.peer_addr().ok();
        if self.store.current().is_none() {
            self.fail(
                FailReason::NoIdentity,
                "no certificate of our own yet".to_owned(),
                peer_addr,
                None,
            );
            return None;
        }
        PRESENTED.with(|p| p.borrow_mut().take());
        let result = tokio::time::timeout(deadline, self.acceptor.accept(stream)).await;
        let tls = match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof
                    && e.get_ref()
                        .is_none_or(|i| i.downcast_ref::<Error>().is_none()) =>
            {
                // Closed before or during the handshake without a TLS error:
                // port probes and health checkers. Counted, not logged.
                self.stats.count(FailReason::Io);
                tracing::debug!(listener = %self.listener, peer = ?peer_addr, "tls: connection closed during the handshake");
                return None;
            }
            Ok(Err(e)) => {
                let claimed = PRESENTED.with(|p| p.borrow_mut().take());
                let (reason, words) = classify(&e);
                self.fail(reason, words, peer_addr, claimed);
                return None;
            }
            Err(_) => {
                self.fail(
                    FailReason::Timeout,
                    format!("no handshake within {deadline:?}"),
                    peer_addr,
                    None,
                );
                return None;
            }
        };
        if let Err(e) = self.recheck_resumed(tls.get_ref().1) {
            let (reason, words) = classify_tls(&e);
            let claimed = PRESENTED.with(|p| p.borrow_mut().take());
            self.fail(
                reason,
                format!("resumed session: {words}"),
                peer_addr,
                claimed,
            );
            return None;
        }
        self.stats.handshakes.fetch_add(1, Ordering::Relaxed);
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned();
        let peer = match (self.mode, leaf) {
            (TlsMode::Mutual, Some(leaf)) => {
                let id = mesh_ca::svid_spiffe_id(&leaf).ok();
                let is_allowed = id.as_ref().is_some_and(|id| self.allow.admits(id));
                if !is_allowed {
                    let claimed = id.as_ref().map(|i| i.to_string());
                    let words = format!(
                        "identity {} not allowed",
                        claimed.as_deref().unwrap_or("(none)")
                    );
                    self.fail(FailReason::NotAllowed, words, peer_addr, None);
                }
                PeerIdentity {
                    spiffe_id: id,
                    cert_sha256: Some(sha256_hex(&leaf)),
                    is_allowed,
                }
            }
            _ => PeerIdentity {
                spiffe_id: None,
                cert_sha256: None,
                is_allowed: self.mode == TlsMode::Server,
            },
        };
        Some((tls, peer))
    }

    /// A resumed session carries the chain verified when it was first
    /// established, not a fresh one: check that chain again against the
    /// current bundle and the current time, through the same verifier as a
    /// full handshake, so an expired certificate or a removed root cannot
    /// live on through session tickets. Full handshakes pass untouched.
    fn recheck_resumed(&self, conn: &ServerConnection) -> Result<(), Error> {
        if self.mode != TlsMode::Mutual || conn.handshake_kind() != Some(HandshakeKind::Resumed) {
            return Ok(());
        }
        let Some((leaf, intermediates)) = conn.peer_certificates().and_then(|c| c.split_first())
        else {
            return Err(Error::NoCertificatesPresented);
        };
        verify_svid_chain(&self.store, leaf, intermediates, UnixTime::now())
    }

    fn fail(
        &self,
        reason: FailReason,
        words: String,
        peer: Option<std::net::SocketAddr>,
        claimed: Option<String>,
    ) {
        self.stats.count(reason);
        let who = claimed.map(|c| format!(" ({c})")).unwrap_or_default();
        tracing::info!(listener = %self.listener, peer = ?peer, reason = reason.as_str(), "tls: {words}{who}");
    }

    /// Installs a reloaded allow-list: open connections re-check their
    /// peer against it (HTTP on the next request, TCP at once).
    pub fn replace_allow(&self, spec: &DownstreamTlsSpec) {
        self.allow.replace(spec.allow.clone());
    }

    /// The peer's standing against this listener's current allow-list;
    /// `None` (always admitted) without mutual TLS.
    pub fn admission(&self, peer: &PeerIdentity) -> Option<Admission> {
        (self.mode == TlsMode::Mutual)
            .then(|| Admission::new(Arc::clone(&self.allow), peer.spiffe_id.clone()))
    }

    /// Resolves once a reload removed the peer behind `admission` from the
    /// allow-list, logged and counted (`tls.<listener>.revoked`): the
    /// caller then closes its tunnel (`what`: "tcp connection", ...).
    pub async fn revoked(&self, admission: &Admission, peer: std::net::SocketAddr, what: &str) {
        admission.revoked().await;
        self.stats.revoked.fetch_add(1, Ordering::Relaxed);
        let id = admission.peer().map(|id| id.to_string());
        tracing::info!(listener = %self.listener, %peer, identity = id.as_deref().unwrap_or("(none)"), "{what} closed: identity no longer in allow after a reload");
    }

    /// Our own SPIFFE ID now (for `x-forwarded-client-cert: By=`).
    pub fn own_id(&self) -> Option<SpiffeId> {
        self.store.current().map(|i| i.spiffe_id.clone())
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Maps a handshake error to a reason and a sentence.
fn classify(e: &std::io::Error) -> (FailReason, String) {
    match e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        Some(tls) => classify_tls(tls),
        None => (FailReason::Io, format!("handshake failed: {e}")),
    }
}

fn classify_tls(tls: &Error) -> (FailReason, String) {
    match tls {
        Error::NoCertificatesPresented => {
            (FailReason::NoClientCert, "no client certificate".to_owned())
        }
        Error::InvalidCertificate(c) => classify_cert(c),
        Error::PeerIncompatible(p) => (FailReason::Protocol, format!("incompatible client: {p:?}")),
        Error::AlertReceived(a) => (
            FailReason::Protocol,
            format!("client aborted the handshake: {a:?}"),
        ),
        other => (FailReason::Protocol, format!("handshake failed: {other}")),
    }
}

fn classify_cert(c: &CertificateError) -> (FailReason, String) {
    let ago = |then: UnixTime, now: UnixTime| {
        human_duration(Duration::from_secs(
            now.as_secs().saturating_sub(then.as_secs()),
        ))
    };
    match c {
        CertificateError::ExpiredContext { time, not_after } => (
            FailReason::Expired,
            format!("peer certificate expired {} ago", ago(*not_after, *time)),
        ),
        CertificateError::Expired => (FailReason::Expired, "peer certificate expired".to_owned()),
        CertificateError::NotValidYetContext { time, not_before } => (
            FailReason::NotYetValid,
            format!(
                "peer certificate not valid for another {}",
                ago(*time, *not_before)
            ),
        ),
        CertificateError::NotValidYet => (
            FailReason::NotYetValid,
            "peer certificate not yet valid".to_owned(),
        ),
        CertificateError::UnknownIssuer => {
            (FailReason::UnknownCa, "issued by an unknown CA".to_owned())
        }
        // A root of the same name but another key (a rogue or rotated-out
        // CA): the chain's signature does not verify against the bundle.
        CertificateError::BadSignature => (
            FailReason::UnknownCa,
            "issued by an unknown CA (signature does not verify against the trust bundle)"
                .to_owned(),
        ),
        CertificateError::Other(o) => match o.0.downcast_ref::<webpki::Error>() {
            Some(webpki::Error::CaUsedAsEndEntity) => (
                FailReason::InvalidSvid,
                "not a valid SPIFFE SVID: a CA certificate was presented as a workload identity"
                    .to_owned(),
            ),
            Some(other) => (
                FailReason::BadCertificate,
                format!("bad peer certificate: {other}"),
            ),
            None => (
                FailReason::InvalidSvid,
                format!("not a valid SPIFFE SVID: {o}"),
            ),
        },
        other => (
            FailReason::BadCertificate,
            format!("bad peer certificate: {other:?}"),
        ),
    }
}

#[derive(Debug)]
struct StoreResolver(Arc<IdentityStore>);

impl ResolvesServerCert for StoreResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current().map(|i| Arc::clone(&i.certified))
    }
}

/// Verifies client certificates against the *current* trust bundle (so a
/// bundle rotation applies to the next handshake), then the SVID rules.
#[derive(Debug)]
struct SpiffeClientVerifier {
    store: Arc<IdentityStore>,
    signatures: HandshakeSignatures,
}

/// The one client-chain check of a mutual listener, for full handshakes
/// (through [`SpiffeClientVerifier`]) and resumed ones alike: the chain
/// against the current bundle at `now`, then the SVID rules.
fn verify_svid_chain(
    store: &IdentityStore,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), Error> {
    let claimed = mesh_ca::svid_spiffe_id(end_entity);
    PRESENTED.with(|p| *p.borrow_mut() = claimed.as_ref().ok().map(|id| id.to_string()));
    verify_chain(store, PeerRole::Client, end_entity, intermediates, now)?;
    claimed.map_err(mesh_ca::refused)?;
    Ok(())
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: workloads hold exactly one certificate and send it.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        verify_svid_chain(&self.store, end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
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
