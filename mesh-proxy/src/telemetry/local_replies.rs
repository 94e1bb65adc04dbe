//! The last local replies of a listener (SPEC §3 "Local replies"), for the
//! admin dashboard. Touched only when the proxy answers a request itself,
//! which is the error path: a short mutex there is fine, and the request
//! path proper never takes it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many local replies each listener remembers.
pub const RECENT_CAPACITY: usize = 50;
/// Paths and details are cut to this many bytes (at a char boundary).
const MAX_TEXT: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReplyRecord {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub listener: Arc<str>,
    pub method: String,
    /// The request path as received, without the query (which may carry
    /// tokens), cut to 200 bytes.
    pub path: String,
    pub status: u16,
    /// The SPEC response flag (`NR`, `UF`, ...).
    pub flag: &'static str,
    /// What happened, in words.
    pub detail: String,
}

impl LocalReplyRecord {
    pub fn new(
        listener: Arc<str>,
        method: &str,
        path: &str,
        status: u16,
        flag: &'static str,
        detail: &str,
    ) -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            unix_ms,
            listener,
            method: cut(method).to_owned(),
            path: cut(path).to_owned(),
            status,
            flag,
            detail: cut(detail).to_owned(),
        }
    }
}

fn cut(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A ring buffer of the last [`RECENT_CAPACITY`] local replies.
#[derive(Debug, Default)]
pub struct LocalReplyLog {
    recent: Mutex<VecDeque<LocalReplyRecord>>,
}

impl LocalReplyLog {
    pub fn push(&self, record: LocalReplyRecord) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= RECENT_CAPACITY {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    /// Oldest first.
    pub fn recent(&self) -> Vec<LocalReplyRecord> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_most_recent_replies() {
        let log = LocalReplyLog::default();
        let listener: Arc<str> = Arc::from("main");
        for i in 0..(RECENT_CAPACITY + 5) {
            let path = format!("/r/{i}");
            log.push(LocalReplyRecord::new(
                Arc::clone(&listener),
                "GET",
                &path,
                503,
                "UF",
                "x",
            ));
        }
        let recent = log.recent();
        assert_eq!(recent.len(), RECENT_CAPACITY);
        assert_eq!(recent[0].path, "/r/5");
        assert_eq!(
            recent[RECENT_CAPACITY - 1].path,
            format!("/r/{}", RECENT_CAPACITY + 4)
        );
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let long = "é".repeat(150);
        let r = LocalReplyRecord::new(Arc::from("l"), "GET", &long, 404, "NR", &long);
        assert!(r.path.len() <= MAX_TEXT);
        assert!(r.path.chars().all(|c| c == 'é'));
    }
}
