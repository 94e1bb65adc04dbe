//! The CA server (SPEC §2): `GET /v1/bundle`, `POST /v1/sign`, `GET /healthz`
//! over HTTPS with a certificate the CA issues itself.
//!
//! `POST /v1/sign` authenticates the caller either by a join token
//! (`Authorization: Bearer …`, first certificate) or by a still-valid client
//! certificate of the same SPIFFE ID (renewal, over mTLS). Either way it
//! signs only the identity the caller proved; the key stays with the
//! workload (it sends a CSR). Errors are JSON: `{"error": "...", "code": "..."}`.

mod http;
mod used_tokens;

pub use used_tokens::{USED_TOKENS_FILE, UsedError, UsedTokens};

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::{Ca, IssueRequest};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Default lifetime of signed leaves.
    pub ttl: Duration,
    /// Upper bound a caller may ask for with `?ttl=`.
    pub max_ttl: Duration,
    /// Names and addresses the server's own certificate carries, so clients
    /// can verify it by the host they dial.
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// Connections served at once; more are closed at accept, counted and
    /// logged.
    pub max_connections: usize,
    /// A request body (the CSR) must arrive within this, else 408.
    pub body_timeout: Duration,
    /// The CA directory, where used join-token ids are kept
    /// ([`USED_TOKENS_FILE`]); `None` keeps them in memory only.
    pub state_dir: Option<PathBuf>,
}

impl ServerOptions {
    /// Defaults of `mesh-ca serve`, for a server answering to `dns_names`.
    pub fn new(dns_names: Vec<String>, ips: Vec<IpAddr>) -> Self {
        ServerOptions {
            ttl: crate::DEFAULT_LEAF_TTL,
            max_ttl: Duration::from_secs(7 * 24 * 3600),
            dns_names,
            ips,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            state_dir: None,
        }
    }
}

/// `--max-connections` when not given.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// `--body-timeout` when not given.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot issue the server's own certificate: {0}")]
    OwnCert(#[source] crate::CaError),
    #[error("tls: {0}")]
    Tls(String),
    #[error(transparent)]
    UsedTokens(#[from] UsedError),
    #[error(
        "{path} is readable by group or others (mode {mode:03o}); the CA key must be private: run `chmod 600 {path}`"
    )]
    KeyNotPrivate { path: String, mode: u32 },
    #[error("cannot read {path}: {source}")]
    KeyMetadata {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) struct State {
    pub ca: Ca,
    pub opts: ServerOptions,
    pub used: UsedTokens,
}

/// Refuses a CA key (`<dir>/ca.key`) that group or others can read or
/// write: whoever reads it can mint any identity of the mesh.
pub fn check_key_is_private(ca_dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = ca_dir.join(crate::CA_KEY_FILE);
    let meta = std::fs::metadata(&path).map_err(|source| ServerError::KeyMetadata {
        path: path.display().to_string(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    let owner = KeyOwner {
        file_uid: meta.uid(),
        file_gid: meta.gid(),
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
    };
    if !key_mode_is_private(mode, owner) {
        return Err(ServerError::KeyNotPrivate {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Who owns the key file and who runs the CA.
#[derive(Debug, Clone, Copy)]
struct KeyOwner {
    file_uid: u32,
    file_gid: u32,
    uid: u32,
    gid: u32,
}

/// Whether a key of `mode` is private: nothing for others, and nothing
/// for the group, except one shape: a key the CA can read only through its
/// own group (owned by another user, group-read only, the group being the
/// CA's). That is how Kubernetes mounts a Secret for a non-root container
/// (owner root, group `fsGroup`, group-readable whatever `defaultMode`
/// says), and the group is the pod's own.
fn key_mode_is_private(mode: u32, o: KeyOwner) -> bool {
    if mode & 0o007 != 0 {
        return false;
    }
    match mode & 0o070 {
        0 => true,
        0o040 => o.file_uid != o.uid && o.file_gid == o.gid,
        _ => false,
    }
}

/// A bound, ready CA server.
pub struct CaServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    verifier: Arc<dyn ClientCertVerifier>,
    state: Arc<State>,
    refused: Arc<AtomicU64>,
}

impl CaServer {
    /// Issues the server certificate (`spiffe://<td>/mesh-ca` with the given
    /// names) and binds `addr`.
    pub async fn bind(ca: Ca, addr: SocketAddr, opts: ServerOptions) -> Result<Self, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let id = crate::ca_identity::ca_server_id(ca.trust_domain())
            .map_err(|e| ServerError::OwnCert(e.into()))?;
        let mut req = IssueRequest::new(id);
        req.dns_names = opts.dns_names.clone();
        req.ips = opts.ips.clone();
        req.ttl = Duration::from_secs(365 * 24 * 3600);
        let own = ca.issue_any(&req).map_err(ServerError::OwnCert)?;
        let chain = CertificateDer::pem_slice_iter(own.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(own.key_pem.as_bytes())
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.cert_der().to_vec()))
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        // Client certificates are optional: renewal presents one, the first
        // request (with a token) cannot.
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .allow_unauthenticated()
                .build()
                .map_err(|e| ServerError::Tls(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls(e.to_string()))?
            .with_client_cert_verifier(Arc::clone(&verifier))
            .with_single_cert(chain, key)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let used = match &opts.state_dir {
            Some(dir) => UsedTokens::open(dir, time::OffsetDateTime::now_utc().unix_timestamp())?,
            None => UsedTokens::in_memory(),
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            verifier,
            refused: Arc::default(),
            state: Arc::new(State { ca, opts, used }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Connections closed at accept because `max_connections` were open.
    pub fn refused_connections(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.refused)
    }

    /// Serves until the task is dropped.
    pub async fn run(self) {
        let permits = Arc::new(Semaphore::new(self.state.opts.max_connections));
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                self.refuse(peer);
                continue;
            };
            let acceptor = self.acceptor.clone();
            let verifier = Arc::clone(&self.verifier);
            let state = Arc::clone(&self.state);
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => match recheck_resumed(verifier.as_ref(), tls.get_ref().1) {
                        Ok(()) => http::serve(tls, peer, state).await,
                        Err(e) => tracing::info!(%peer, "resumed session refused: {e}"),
                    },
                    Ok(Err(e)) => tracing::info!(%peer, "tls handshake failed: {e}"),
                    Err(_) => tracing::info!(%peer, "tls handshake timed out"),
                }
                drop(permit);
            });
        }
    }

    /// Closes a connection beyond `max_connections` at once (dropping the
    /// socket); counted, and logged at 1, 2, 4, 8 … refusals.
    fn refuse(&self, peer: SocketAddr) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                %peer,
                refused_total = n,
                max_connections = self.state.opts.max_connections,
                "connection refused: too many connections"
            );
        }
    }
}

/// A resumed session restores the client chain verified when the session
/// was first made; renewal trusts that chain, so it is verified again, now,
/// by the same verifier as a full handshake. An expired certificate cannot
/// renew itself through a session ticket. Sessions without a client
/// certificate (join-token requests) and full handshakes pass untouched.
fn recheck_resumed(
    verifier: &dyn ClientCertVerifier,
    conn: &ServerConnection,
) -> Result<(), rustls::Error> {
    if conn.handshake_kind() != Some(rustls::HandshakeKind::Resumed) {
        return Ok(());
    }
    match conn.peer_certificates().and_then(|c| c.split_first()) {
        Some((leaf, intermediates)) => verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(|_| ()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod key_mode_tests {
    use super::{KeyOwner, key_mode_is_private};

    const ME: KeyOwner = KeyOwner {
        file_uid: 10001,
        file_gid: 10001,
        uid: 10001,
        gid: 10001,
    };

    #[test]
    fn only_the_owner_may_read_a_key_of_its_own() {
        assert!(key_mode_is_private(0o600, ME));
        assert!(key_mode_is_private(0o400, ME));
        for mode in [0o640, 0o604, 0o644, 0o660, 0o440, 0o444, 0o606] {
            assert!(!key_mode_is_private(mode, ME), "{mode:03o}");
        }
    }

    #[test]
    fn a_secret_readable_through_the_cas_own_group_is_private() {
        // A Kubernetes Secret under fsGroup: root-owned, group = the pod's.
        let secret = KeyOwner { file_uid: 0, ..ME };
        assert!(key_mode_is_private(0o440, secret));
        assert!(key_mode_is_private(0o640, secret));
        // Never others, never group write, never another group.
        assert!(!key_mode_is_private(0o444, secret));
        assert!(!key_mode_is_private(0o460, secret));
        let other_group = KeyOwner {
            file_gid: 0,
            ..secret
        };
        assert!(!key_mode_is_private(0o440, other_group));
    }
}
