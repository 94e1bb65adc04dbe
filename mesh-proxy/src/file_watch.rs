//! Noticing that files changed, for the config reload (`app`) and the
//! identity files (`identity`): each path's device, inode, size and mtime,
//! polled, so editors' renames and Kubernetes' `..data` symlink swaps are
//! seen alike (a notify API would miss the swap of a symlink's target).
//! Must not: read or parse the files; that is the caller's.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What identifies the content behind a path without reading it; `None`
/// while the path does not exist.
type Stamp = Option<(u64, u64, u64, Option<SystemTime>)>;

fn stamp(path: &std::path::Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.len(), m.modified().ok()))
}

/// A set of paths polled every `period`.
#[derive(Debug)]
pub(crate) struct FileWatch {
    paths: Vec<PathBuf>,
    last: Vec<Stamp>,
    period: Duration,
    settle: Duration,
}

impl FileWatch {
    /// Starts from the paths' current stamps. `settle`: after seeing a
    /// change, wait this long and take the stamps then, to let a writer
    /// finish (zero: act at once).
    pub(crate) fn new(paths: Vec<PathBuf>, period: Duration, settle: Duration) -> Self {
        let last = paths.iter().map(|p| stamp(p)).collect();
        Self {
            paths,
            last,
            period,
            settle,
        }
    }

    /// Resolves at the next change of any path, returning whether all the
    /// paths exist now. Cancel-safe: a change seen by a dropped call is
    /// seen again by the next one.
    pub(crate) async fn changed(&mut self) -> bool {
        loop {
            tokio::time::sleep(self.period).await;
            if self.stamps() == self.last {
                continue;
            }
            if !self.settle.is_zero() {
                tokio::time::sleep(self.settle).await;
            }
            self.last = self.stamps();
            return self.last.iter().all(Option::is_some);
        }
    }

    fn stamps(&self) -> Vec<Stamp> {
        self.paths.iter().map(|p| stamp(p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_replaced_or_removed_file_is_a_change_and_an_untouched_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.yaml");
        std::fs::write(&path, "one").expect("write");
        let mut watch = FileWatch::new(
            vec![path.clone()],
            Duration::from_millis(10),
            Duration::ZERO,
        );
        let quiet = tokio::time::timeout(Duration::from_millis(100), watch.changed()).await;
        assert!(quiet.is_err(), "nothing changed");
        // A rename over the file: a new inode, whatever the size and mtime.
        let next = dir.path().join("a.yaml.new");
        std::fs::write(&next, "two").expect("write");
        std::fs::rename(&next, &path).expect("rename");
        assert!(watch.changed().await, "replaced, and there");
        std::fs::remove_file(&path).expect("remove");
        assert!(!watch.changed().await, "removed: a change, but not there");
    }
}
