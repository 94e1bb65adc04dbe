//! Where `mesh-cli up` keeps the CA key, join tokens and configs: a private
//! directory (0700). Without `--state-dir` it is a fresh `mkdtemp` under the
//! temp dir (`mesh-up-XXXXXX`, random), never a predictable name another
//! local user could create first or read.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub(super) fn make_state_dir(given: Option<&Path>) -> Result<PathBuf> {
    let dir = match given {
        Some(d) => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .with_context(|| format!("cannot create the state dir {}", d.display()))?;
            d.to_path_buf()
        }
        // A random name, created (mkdir with mode 0700) only if new.
        None => tempfile::Builder::new()
            .prefix("mesh-up-")
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir()
            .context("cannot create a private state dir in the temp dir")?
            .keep(),
    };
    let empty = fs::read_dir(&dir)
        .with_context(|| format!("cannot read the state dir {}", dir.display()))?
        .next()
        .is_none();
    if !empty {
        bail!(
            "the state dir {} is not empty; give another --state-dir or remove it",
            dir.display()
        );
    }
    // Absolute, since the rendered configs name files in it.
    fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn the_default_state_dir_is_private_and_unpredictable() {
        let a = make_state_dir(None).expect("dir");
        let b = make_state_dir(None).expect("dir");
        let names = [&a, &b].map(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned()
        });
        let pid = format!("mesh-up-{}", std::process::id());
        for (dir, name) in [(&a, &names[0]), (&b, &names[1])] {
            assert_eq!(mode(dir), 0o700, "{}", dir.display());
            assert!(name.starts_with("mesh-up-") && *name != pid, "{name}");
        }
        assert_ne!(a, b, "two runs share a state dir");
        fs::remove_dir(&a).expect("cleanup");
        fs::remove_dir(&b).expect("cleanup");
    }

    #[test]
    fn a_given_state_dir_is_created_private_and_must_be_empty() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("state/nested");
        let made = make_state_dir(Some(&dir)).expect("dir");
        assert_eq!(mode(&made), 0o700);
        fs::write(dir.join("x"), "x").expect("write");
        let err = make_state_dir(Some(&dir)).expect_err("not empty");
        assert!(err.to_string().contains("is not empty"), "{err}");
    }
}
