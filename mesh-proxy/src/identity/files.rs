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

fn file_err(path: &Path, reason: impl std::fmt::Display) -> IdentityError {
    IdentityError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
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
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| IdentityError::Tls {
            path: key.display().to_string(),
            source,
        })?;
    let certified = CertifiedKey::new(chain.clone(), signing_key);
    if certified.keys_match().is_err() {
        return Err(IdentityError::KeyMismatch {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
        });
    }
    let spiffe_id = mesh_ca::svid_spiffe_id(&chain[0]).map_err(|e| IdentityError::Svid {
        path: cert.display().to_string(),
        reason: e.to_string(),
    })?;
    let info = mesh_ca::inspect_der(&chain[0]).map_err(|e| file_err(cert, e))?;

    let mut roots = RootCertStore::empty();
    for root in read_certs(bundle)? {
        roots.add(root).map_err(|source| IdentityError::Tls {
            path: bundle.display().to_string(),
            source,
        })?;
    }
    let parsed = rustls::server::ParsedCertificate::try_from(&chain[0]).map_err(|source| {
        IdentityError::Tls {
            path: cert.display().to_string(),
            source,
        }
    })?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        &chain[1..],
        UnixTime::now(),
        provider().signature_verification_algorithms.all,
    )
    .map_err(|e| IdentityError::Untrusted {
        cert: cert.display().to_string(),
        bundle: bundle.display().to_string(),
        reason: e.to_string(),
    })?;
    let trust = Trust::new(roots).map_err(|source| IdentityError::Tls {
        path: bundle.display().to_string(),
        source,
    })?;
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

/// What identifies the content behind a path without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(u64, u64, u64, Option<std::time::SystemTime>)>);

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp(
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino(), m.len(), m.modified().ok())),
    )
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
    tokio::spawn(async move {
        let paths = [cert.clone(), key.clone(), bundle.clone()];
        let mut last: Vec<Stamp> = paths.iter().map(|p| stamp(p)).collect();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now: Vec<Stamp> = paths.iter().map(|p| stamp(p)).collect();
            if now == last {
                continue;
            }
            last = now;
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
