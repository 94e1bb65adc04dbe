//! Writing key and certificate files safely.
//!
//! Every file is written to a fresh temporary file in the target's folder,
//! created with its final mode (so a private key is never readable by others,
//! not even for an instant, whatever the umask), synced, then moved into
//! place: with `force` by `rename` (atomic replace), without it by
//! `hard_link`, which fails atomically if the target exists, so two writers
//! can never both "win" and an existing file is never clobbered.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::CaError;

/// Mode of private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates and bundles.
pub const CERT_MODE: u32 = 0o644;

/// Writes a PEM private key with mode 0600 from its creation; refuses to
/// replace an existing file unless `force`.
pub fn write_private_key(path: &Path, pem: &str, force: bool) -> Result<(), CaError> {
    write_file(path, pem.as_bytes(), KEY_MODE, force)
}

/// Writes a certificate or bundle with mode 0644; refuses to replace an
/// existing file unless `force`.
pub fn write_public_file(path: &Path, contents: &str, force: bool) -> Result<(), CaError> {
    write_file(path, contents.as_bytes(), CERT_MODE, force)
}

/// Reads a whole file; the error names the file and the OS's reason.
pub fn read_file(path: &Path) -> Result<Vec<u8>, CaError> {
    fs::read(path).map_err(|source| CaError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write_file(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<(), CaError> {
    let write_err = |source: io::Error| CaError::Write {
        path: path.to_owned(),
        source,
    };
    if !force && path.symlink_metadata().is_ok() {
        return Err(CaError::Exists {
            path: path.to_owned(),
        });
    }
    let tmp = temp_path(path)?;
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have removed bits from a public file's mode.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        if force {
            fs::rename(&tmp, path)
        } else {
            fs::hard_link(&tmp, path)
        }
    })();
    // The temporary name is gone after a rename; after a link or a failure
    // it still has to go.
    let _ = fs::remove_file(&tmp);
    match result {
        Ok(()) => {
            sync_parent(path);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(CaError::Exists {
            path: path.to_owned(),
        }),
        Err(e) => Err(write_err(e)),
    }
}

/// `.<name>.tmp-<random>` beside `path`.
fn temp_path(path: &Path) -> Result<PathBuf, CaError> {
    let mut suffix = [0u8; 6];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| CaError::Random)?;
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(path.with_file_name(format!(".{name}.tmp-{hex}")))
}

/// Makes the new directory entry durable; best effort.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn private_keys_are_0600_and_public_files_0644() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("k.key");
        let crt = dir.path().join("c.crt");
        write_private_key(&key, "secret", false).expect("key");
        write_public_file(&crt, "public", false).expect("crt");
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&crt), 0o644);
        assert_eq!(fs::read_to_string(&key).expect("read"), "secret");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 2);
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("k.key");
        write_private_key(&key, "one", false).expect("first");
        let err = write_private_key(&key, "two", false).expect_err("exists");
        assert!(matches!(err, CaError::Exists { .. }), "{err}");
        assert_eq!(fs::read_to_string(&key).expect("read"), "one");
        write_private_key(&key, "three", true).expect("forced");
        assert_eq!(fs::read_to_string(&key).expect("read"), "three");
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn forced_key_over_a_world_readable_file_ends_up_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("k.key");
        write_public_file(&key, "was public", false).expect("public");
        write_private_key(&key, "secret", true).expect("forced");
        assert_eq!(mode(&key), 0o600);
    }

    #[test]
    fn write_errors_name_the_file_and_the_reason() {
        let err =
            write_private_key(Path::new("/nonexistent-dir/k.key"), "x", false).expect_err("no dir");
        assert_eq!(
            err.to_string(),
            "/nonexistent-dir/k.key: No such file or directory"
        );
    }
}
