//! Identity: this workload's certificate (its X.509-SVID) and the mesh trust
//! bundle, rotated without dropping connections; the rustls configs built on
//! them; SPIFFE verification of peers in both directions.
//!
//! Key types: [`IdentityStore`] (the current [`Identity`] behind `arc-swap`;
//! every handshake reads it, so a rotation applies to the next handshake and
//! never touches established connections), [`server::TlsServer`] and
//! [`client::UpstreamTls`]. Must not: decide routing or authorization of
//! requests beyond the allow-list of a listener.

pub mod allow;
mod ca_client;
pub mod client;
mod files;
pub mod server;
mod verify;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use mesh_ca::SpiffeId;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;

pub use ca_client::{CaSource, spawn_ca_client};
pub use files::{load_files, spawn_file_watcher};

/// The one crypto provider of the process (ring; see DEPENDENCIES.md).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}: {source}")]
    Tls {
        path: String,
        #[source]
        source: rustls::Error,
    },
    #[error("{path}: not a valid SPIFFE SVID: {reason}")]
    Svid { path: String, reason: String },
    #[error("{cert}: the private key in {key} does not match this certificate")]
    KeyMismatch { cert: String, key: String },
    #[error("{cert}: not issued by any root in {bundle}: {reason}")]
    Untrusted {
        cert: String,
        bundle: String,
        reason: String,
    },
}

/// The roots peers are verified against, with the verifier built on them.
pub struct Trust {
    pub roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl Trust {
    pub fn new(roots: RootCertStore) -> Result<Self, rustls::Error> {
        let roots = Arc::new(roots);
        let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&roots),
            provider(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(Self {
            roots,
            client_verifier,
        })
    }
}

/// This workload's identity at one moment.
#[derive(Debug)]
pub struct Identity {
    pub spiffe_id: SpiffeId,
    pub certified: Arc<CertifiedKey>,
    pub trust: Arc<Trust>,
    pub serial_hex: String,
    pub issuer: String,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl Identity {
    /// Seconds until the certificate expires (negative once expired).
    pub fn expires_in_secs(&self) -> i64 {
        self.not_after - unix_now()
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The current identity, swapped atomically on rotation.
#[derive(Debug, Default)]
pub struct IdentityStore {
    current: ArcSwapOption<Identity>,
    pub rotations: AtomicU64,
    pub rotation_failures: AtomicU64,
}

impl IdentityStore {
    pub fn new(initial: Option<Identity>) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwapOption::from(initial.map(Arc::new)),
            ..Default::default()
        })
    }

    pub fn current(&self) -> Option<Arc<Identity>> {
        self.current.load_full()
    }

    pub fn set(&self, identity: Identity) {
        tracing::info!(
            spiffe_id = %identity.spiffe_id,
            serial = %identity.serial_hex,
            expires_in = %human_duration(Duration::from_secs(identity.expires_in_secs().max(0) as u64)),
            "identity loaded"
        );
        self.current.store(Some(Arc::new(identity)));
        self.rotations.fetch_add(1, Ordering::Relaxed);
    }
}

/// `3m`, `2h 5m`, `4d 1h`: the coarse units a person reads (mesh-ca's wording).
pub fn human_duration(d: Duration) -> String {
    mesh_ca::human_duration(time::Duration::seconds(d.as_secs() as i64))
}
