//! Join tokens are single use (SPEC §11), across restarts: the id (`jti`)
//! of every token that obtained a certificate is appended to
//! `<ca-dir>/used-tokens` and fsynced BEFORE the certificate is signed, so
//! no crash can let a token sign twice. One line per use, `<jti> <exp>`;
//! a torn last line (a crash mid-write, before anything was signed) is
//! ignored. Entries whose token has expired can never match again and are
//! pruned (on start and whenever they outnumber the live ones), so the file
//! stays bounded by the tokens alive at once.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The used-token file's name in the CA directory.
pub const USED_TOKENS_FILE: &str = "used-tokens";
/// Pruning starts once the file has this many lines at least (small in
/// unit tests, each use being an fsync).
const PRUNE_FLOOR: usize = if cfg!(test) { 64 } else { 1024 };

#[derive(Debug, thiserror::Error)]
pub enum UsedError {
    #[error("this join token was already used (token id {jti}); tokens are single use")]
    AlreadyUsed { jti: String },
    #[error("cannot record the join token as used in {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The set of used token ids, mirrored in a file (or only in memory).
pub struct UsedTokens {
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
}

struct Inner {
    /// jti → the token's expiry (Unix seconds).
    seen: HashMap<String, i64>,
    file: Option<File>,
    /// Lines in the file, and live entries after the last pruning: the
    /// next pruning comes once the file doubled (amortised O(1) per use).
    lines: usize,
    live_at_prune: usize,
}

impl UsedTokens {
    /// Only in memory: forgotten on restart (library users and tests).
    pub fn in_memory() -> Self {
        UsedTokens {
            path: None,
            inner: Mutex::new(Inner {
                seen: HashMap::new(),
                file: None,
                lines: 0,
                live_at_prune: 0,
            }),
        }
    }

    /// Loads `dir/used-tokens` (creating it, 0600), dropping entries
    /// expired at `now`.
    pub fn open(dir: &Path, now: i64) -> Result<Self, UsedError> {
        let path = dir.join(USED_TOKENS_FILE);
        let io = |source| UsedError::Io {
            path: path.clone(),
            source,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let seen: HashMap<String, i64> = text
            .lines()
            .filter_map(parse_line)
            .filter(|(_, exp)| *exp > now)
            .collect();
        let file = rewrite(&path, &seen).map_err(io)?;
        Ok(UsedTokens {
            inner: Mutex::new(Inner {
                lines: seen.len(),
                live_at_prune: seen.len(),
                seen,
                file: Some(file),
            }),
            path: Some(path),
        })
    }

    /// Records `jti` (of a token valid until `exp`) as used, durably, or
    /// says it already was. Of concurrent calls with one jti exactly one
    /// succeeds. Blocking (fsync): call from a blocking thread.
    pub fn consume(&self, jti: &str, exp: i64, now: i64) -> Result<(), UsedError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.seen.contains_key(jti) {
            return Err(UsedError::AlreadyUsed {
                jti: jti.to_owned(),
            });
        }
        if let Some(path) = &self.path {
            let io = |source| UsedError::Io {
                path: path.clone(),
                source,
            };
            if inner.lines >= PRUNE_FLOOR.max(2 * inner.live_at_prune) {
                inner.seen.retain(|_, e| *e > now);
                inner.file = Some(rewrite(path, &inner.seen).map_err(io)?);
                inner.lines = inner.seen.len();
                inner.live_at_prune = inner.seen.len();
            }
            if let Some(file) = inner.file.as_mut() {
                file.write_all(format!("{jti} {exp}\n").as_bytes())
                    .and_then(|()| file.sync_data())
                    .map_err(io)?;
            }
            inner.lines += 1;
        }
        inner.seen.insert(jti.to_owned(), exp);
        Ok(())
    }
}

fn parse_line(line: &str) -> Option<(String, i64)> {
    let (jti, exp) = line.split_once(' ')?;
    let ok = !jti.is_empty() && jti.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some(())?;
    Some((jti.to_owned(), exp.parse().ok()?))
}

/// Replaces the file with `seen` (temp file, fsync, rename, fsync of the
/// directory) and returns it opened for appending.
fn rewrite(path: &Path, seen: &HashMap<String, i64>) -> std::io::Result<File> {
    let tmp = path.with_extension("tmp");
    let mut text = String::new();
    for (jti, exp) in seen {
        text.push_str(&format!("{jti} {exp}\n"));
    }
    {
        let mut f = private_file(&tmp, true)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    private_file(path, false)
}

fn private_file(path: &Path, truncate: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.create(true).mode(0o600);
    if truncate {
        o.write(true).truncate(true);
    } else {
        o.append(true);
    }
    o.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_used_once_and_remembered_across_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let used = UsedTokens::open(dir.path(), 100).expect("open");
        used.consume("aa01", 200, 100).expect("first use");
        let err = used.consume("aa01", 200, 100).expect_err("second use");
        assert!(err.to_string().contains("already used"), "{err}");
        used.consume("bb02", 150, 100).expect("another token");
        drop(used);
        let again = UsedTokens::open(dir.path(), 120).expect("reopen");
        assert!(again.consume("aa01", 200, 120).is_err(), "remembered");
        // Expired entries are pruned on open (bb02 expired at 150).
        let reopened = UsedTokens::open(dir.path(), 160).expect("reopen");
        drop(reopened);
        let text = std::fs::read_to_string(dir.path().join(USED_TOKENS_FILE)).expect("file");
        assert!(!text.contains("bb02") && text.contains("aa01"), "{text}");
    }

    #[test]
    fn a_torn_or_garbled_line_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(USED_TOKENS_FILE),
            "aa01 200\nzz\nbad line here\nb\u{e9} 300\ncc03 2",
        )
        .expect("write");
        let used = UsedTokens::open(dir.path(), 100).expect("open");
        assert!(used.consume("aa01", 200, 100).is_err());
        used.consume("cc03", 300, 100)
            .expect("the torn entry did not count");
    }

    #[test]
    fn concurrent_uses_of_one_token_let_exactly_one_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let used = std::sync::Arc::new(UsedTokens::open(dir.path(), 0).expect("open"));
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| used.consume("ab12", 100, 0).is_ok()))
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().expect("thread")))
                .sum()
        });
        assert_eq!(wins, 1);
    }

    #[test]
    fn the_file_stays_bounded_by_live_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let used = UsedTokens::open(dir.path(), 0).expect("open");
        // 10 floors' worth of tokens, each expired by the time the next one
        // is used.
        for i in 0..(10 * PRUNE_FLOOR as i64) {
            used.consume(&format!("t{i}"), i + 1, i + 1).expect("use");
        }
        let lines = std::fs::read_to_string(dir.path().join(USED_TOKENS_FILE))
            .expect("file")
            .lines()
            .count();
        assert!(lines <= 2 * PRUNE_FLOOR, "{lines} lines kept");
    }
}
