//! Identity from files: load and check the cert, key and trust bundle, and
//! watch them for replacement.
//!
//! Files are polled (every 500 ms, by device, inode, size and mtime of what
//! the path resolves to) rather than watched with inotify: polling sees the
//! atomic rename and the `..data` symlink swap of Kubernetes secret mounts
//! alike, and works on bind mounts where inotify events never arrive.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::CertifiedKey;

use super::{Identity, IdentityError, IdentityStore, Trust, provider};
use crate::file_watch::FileWatch;

fn file_err(path: &Path, reason: impl std::fmt::Display) -> IdentityError {
    IdentityError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

pub(super) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate in this PEM file"));
    }
    Ok(certs)
}

/// Loads and checks an identity: the key matches the leaf, the leaf is a
/// valid SVID, and it chains to a root of the bundle.
pub fn load_files(cert: &Path, key: &Path, bundle: &Path) -> Result<Identity, IdentityError> {
    let chain = read_certs(cert)?;
    let key_bytes = std::fs::read(key).map_err(|e| file_err(key, e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| file_err(key, format!("not a PEM private key: {e}")))?;
    let roots = read_certs(bundle)?;
    let names = Names {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        bundle: bundle.display().to_string(),
    };
    assemble(chain, key_der, roots, &names)
}

/// What the parts of an identity are called in error messages (file
/// paths, or where a CA answer came from).
pub(super) struct Names {
    pub cert: String,
    pub key: String,
    pub bundle: String,
}

/// Checks and assembles an identity from its parts.
pub(super) fn assemble(
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    root_ders: Vec<CertificateDer<'static>>,
    names: &Names,
) -> Result<Identity, IdentityError> {
    let tls_err = |path: &str| {
        let path = path.to_owned();
        move |source| IdentityError::Tls { path, source }
    };
    let leaf = chain.first().cloned().ok_or_else(|| IdentityError::File {
        path: names.cert.clone(),
        reason: "no certificate".to_owned(),
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(tls_err(&names.key))?;
    let certified = CertifiedKey::new(chain.clone(), signing_key);
    if certified.keys_match().is_err() {
        return Err(IdentityError::KeyMismatch {
            cert: names.cert.clone(),
            key: names.key.clone(),
        });
    }
    let spiffe_id = mesh_ca::svid_spiffe_id(&leaf).map_err(|e| IdentityError::Svid {
        path: names.cert.clone(),
        reason: e.to_string(),
    })?;
    let info = mesh_ca::inspect_der(&leaf).map_err(|e| IdentityError::File {
        path: names.cert.clone(),
        reason: e.to_string(),
    })?;
    let mut roots = RootCertStore::empty();
    for root in root_ders {
        roots.add(root).map_err(tls_err(&names.bundle))?;
    }
    let parsed =
        rustls::server::ParsedCertificate::try_from(&leaf).map_err(tls_err(&names.cert))?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        &chain[1..],
        UnixTime::now(),
        provider().signature_verification_algorithms.all,
    )
    .map_err(|e| IdentityError::Untrusted {
        cert: names.cert.clone(),
        bundle: names.bundle.clone(),
        reason: e.to_string(),
    })?;
    let trust = Trust::new(roots).map_err(tls_err(&names.bundle))?;
    Ok(Identity {
        spiffe_id,
        certified: Arc::new(certified),
        trust: Arc::new(trust),
        serial_hex: info.serial_hex,
        issuer: info.issuer,
        not_before: info.not_before.unix_timestamp(),
        not_after: info.not_after.unix_timestamp(),
    })
}

/// Reloads the identity whenever one of the files changes; a change that
/// does not load (half-written file, mismatched key) keeps the old identity
/// and is retried on the next change. Stops when the store is dropped.
pub fn spawn_file_watcher(
    store: &Arc<IdentityStore>,
    cert: PathBuf,
    key: PathBuf,
    bundle: PathBuf,
) {
    let store = Arc::downgrade(store);
    let mut watch = FileWatch::new(
        vec![cert.clone(), key.clone(), bundle.clone()],
        Duration::from_millis(500),
        Duration::ZERO,
    );
    tokio::spawn(async move {
        loop {
            watch.changed().await;
            let Some(store) = store.upgrade() else { return };
            match load_files(&cert, &key, &bundle) {
                Ok(identity) => store.set(identity),
                Err(e) => {
                    store.rotation_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "identity files changed but do not load; keeping the current identity");
                }
            }
        }
    });
}
