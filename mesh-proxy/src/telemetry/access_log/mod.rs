//! Access logs: `json`, `text` (Envoy's default line) or an Envoy-style
//! format string, to stdout, stderr or a file.
//!
//! Requests never wait for a log write: finished records go through a
//! bounded channel to one writer thread, which formats and writes them. The
//! queue is bounded twice: 4,096 records, and [`QUEUE_BYTE_BUDGET`] bytes
//! (an estimate per record, kept in one atomic), so records carrying large
//! headers cannot grow memory while a sink stalls. A record beyond either
//! bound is dropped and counted. SIGUSR1 makes the writer reopen its files,
//! so logrotate's rename-then-signal works.

mod format;
#[cfg(test)]
mod format_props;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};

use crate::config::{AccessLogSpec, LogFormat, LogTarget};
pub use format::FormatError;
use format::{ENVOY_TEXT, Format, header_key, parse, render};

/// Bytes of records the queue may hold (besides its 4,096 records).
pub const QUEUE_BYTE_BUDGET: u64 = 16 * 1024 * 1024;

/// Records the queue may hold.
const QUEUE_RECORDS: usize = 4096;

/// Why the access logs cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// Validation parses every format first (see [`check_format`]).
    #[error("access_log[{index}].format: {source}")]
    Format {
        index: usize,
        #[source]
        source: FormatError,
    },
    #[error("access_log[{index}].path: {source}")]
    Open {
        index: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the access log writer: {0}")]
    Thread(#[source] std::io::Error),
}

/// Parses a format string as the access log will: config validation calls
/// this, so `--mode validate`, `mesh-cli validate` and start-up agree.
pub(crate) fn check_format(format: &str) -> Result<(), FormatError> {
    parse(format, &mut Vec::new()).map(drop)
}

/// Everything a log line can say about one request.
#[derive(Debug, Clone)]
pub struct Record {
    pub start: SystemTime,
    pub duration: Duration,
    pub method: http::Method,
    pub path: String,
    pub protocol: &'static str,
    pub status: u16,
    /// SPEC response flag (`UF`, `NR`…), `-` when none.
    pub flag: &'static str,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: Option<Arc<str>>,
    pub upstream_ms: Option<u64>,
    pub downstream: SocketAddr,
    pub listener: Arc<str>,
    pub route: Option<Arc<str>>,
    /// The authz rule that allowed the request, if one did.
    pub authz_rule: Option<Arc<str>>,
    pub attempts: u32,
    pub trace_id: Option<String>,
    pub peer_identity: Option<String>,
    /// Request headers named by the formats (`%REQ(X)%`), in [`AccessLog::wanted`] order.
    pub headers: Vec<Option<HeaderValue>>,
}

struct Sink {
    target: LogTarget,
    format: Format,
    out: Option<Box<dyn std::io::Write + Send>>,
}

/// The access logs of one proxy.
pub struct AccessLog {
    tx: SyncSender<Record>,
    /// Request headers the formats need, captured per request.
    pub wanted: Vec<HeaderName>,
    /// Records dropped because the queue held 4,096 records.
    pub dropped: AtomicU64,
    /// Records dropped because the queue held its byte budget.
    pub dropped_over_budget: AtomicU64,
    /// Estimated bytes of the records queued and not yet written.
    queued_bytes: Arc<AtomicU64>,
    budget: u64,
    reopen: Arc<AtomicBool>,
}

impl Record {
    /// What this record holds in memory, estimated cheaply: its own size,
    /// the method, the path and every captured header value (copied, see
    /// [`Record::capture`]), and the strings it owns.
    pub fn estimated_size(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| std::mem::size_of::<Option<HeaderValue>>() + h.as_ref().map_or(0, |v| v.len()))
            .sum();
        // An extension method is a heap copy as long as the client made it.
        let strings = self.method.as_str().len()
            + self.path.capacity()
            + self.trace_id.as_ref().map_or(0, String::capacity)
            + self.peer_identity.as_ref().map_or(0, String::capacity);
        (std::mem::size_of::<Record>() + headers + strings) as u64
    }

    /// A request header value as a record keeps it: copied, so the record
    /// does not keep the whole request head it was parsed from alive (a
    /// shared slice of hyper's read buffer would, and the byte budget
    /// would undercount it).
    pub fn capture(value: &HeaderValue) -> HeaderValue {
        let mut copy =
            HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(value.as_bytes()))
                .unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        copy
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("wanted", &self.wanted)
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Parses the formats and starts the writer thread; `None` when no
    /// access log is configured.
    pub fn start(specs: &[AccessLogSpec]) -> Result<Option<Arc<Self>>, AccessLogError> {
        if specs.is_empty() {
            return Ok(None);
        }
        let mut wanted = Vec::new();
        let sinks = specs
            .iter()
            .enumerate()
            .map(|(index, spec)| Sink::new(index, spec, &mut wanted))
            .collect::<Result<Vec<_>, _>>()?;
        for always in [
            "x-request-id",
            "user-agent",
            "x-forwarded-for",
            ":authority",
        ] {
            if let Some(name) = header_key(always)
                && !wanted.contains(&name)
            {
                wanted.push(name);
            }
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_RECORDS);
        let reopen = Arc::new(AtomicBool::new(false));
        let queued_bytes = Arc::new(AtomicU64::new(0));
        let log = Arc::new(Self {
            tx,
            wanted: wanted.clone(),
            dropped: AtomicU64::new(0),
            dropped_over_budget: AtomicU64::new(0),
            queued_bytes: Arc::clone(&queued_bytes),
            budget: QUEUE_BYTE_BUDGET,
            reopen: Arc::clone(&reopen),
        });
        let out = Writer {
            sinks,
            wanted,
            reopen,
            queued_bytes,
        };
        std::thread::Builder::new()
            .name("mesh-access-log".to_owned())
            .spawn(move || out.run(rx))
            .map_err(AccessLogError::Thread)?;
        Ok(Some(log))
    }

    /// Queues a record within both bounds; never blocks.
    pub fn log(&self, record: Record) {
        let size = record.estimated_size();
        let admitted = self
            .queued_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                (q + size <= self.budget).then_some(q + size)
            })
            .is_ok();
        if !admitted {
            self.dropped_over_budget.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(record)
        {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Estimated bytes of the records waiting for the writer.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Reopens file targets at the next record (SIGUSR1).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }
}

impl Sink {
    /// Access log `index`, opened; its format's request headers are added
    /// to `wanted`.
    fn new(
        index: usize,
        spec: &AccessLogSpec,
        wanted: &mut Vec<HeaderName>,
    ) -> Result<Self, AccessLogError> {
        let format = match &spec.format {
            LogFormat::Json => Format::Json,
            LogFormat::Text => Format::Tokens(
                parse(ENVOY_TEXT, wanted)
                    .map_err(|source| AccessLogError::Format { index, source })?,
            ),
            LogFormat::Custom(f) => Format::Tokens(
                parse(f, wanted).map_err(|source| AccessLogError::Format { index, source })?,
            ),
        };
        let mut sink = Sink {
            target: spec.path.clone(),
            format,
            out: None,
        };
        sink.open()
            .map_err(|source| AccessLogError::Open { index, source })?;
        Ok(sink)
    }

    fn open(&mut self) -> std::io::Result<()> {
        self.out = Some(match &self.target {
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::Stderr => Box::new(std::io::stderr()),
            LogTarget::File(p) => Box::new(std::io::BufWriter::new(open_append(p)?)),
        });
        Ok(())
    }
}

fn open_append(p: &PathBuf) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
}

/// The writer thread's state.
struct Writer {
    sinks: Vec<Sink>,
    wanted: Vec<HeaderName>,
    reopen: Arc<AtomicBool>,
    queued_bytes: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Record>) {
        let mut line = String::with_capacity(512);
        while let Ok(first) = rx.recv() {
            if self.reopen.swap(false, Ordering::Relaxed) {
                for s in &mut self.sinks {
                    if let Err(e) = s.open() {
                        tracing::warn!(error = %e, "cannot reopen an access log");
                    }
                }
            }
            let mut next = Some(first);
            while let Some(record) = next {
                for s in &mut self.sinks {
                    line.clear();
                    render(&s.format, &record, &self.wanted, &mut line);
                    line.push('\n');
                    if let Some(out) = s.out.as_mut() {
                        let _ = out.write_all(line.as_bytes());
                    }
                }
                // Released once written: a stalled sink keeps it counted.
                self.queued_bytes
                    .fetch_sub(record.estimated_size(), Ordering::Relaxed);
                drop(record);
                next = rx.try_recv().ok();
            }
            // Flush once the queue is drained, not per line.
            for s in &mut self.sinks {
                if let Some(out) = s.out.as_mut() {
                    let _ = out.flush();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user_agent: &HeaderValue) -> Record {
        Record {
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(1),
            method: http::Method::GET,
            path: "/".to_owned(),
            protocol: "HTTP/1.1",
            status: 200,
            flag: "-",
            bytes_received: 0,
            bytes_sent: 2,
            upstream_host: None,
            upstream_cluster: None,
            upstream_ms: None,
            downstream: "127.0.0.1:5555".parse().expect("addr"),
            listener: Arc::from("main"),
            route: None,
            authz_rule: None,
            attempts: 1,
            trace_id: None,
            peer_identity: None,
            headers: vec![Some(Record::capture(user_agent)), None],
        }
    }

    #[test]
    fn records_beyond_the_byte_budget_are_dropped_while_the_writer_stalls() {
        // The writer never reads: a stalled sink.
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_RECORDS);
        let log = AccessLog {
            tx,
            wanted: Vec::new(),
            dropped: AtomicU64::new(0),
            dropped_over_budget: AtomicU64::new(0),
            queued_bytes: Arc::new(AtomicU64::new(0)),
            budget: 1024 * 1024,
            reopen: Arc::new(AtomicBool::new(false)),
        };
        let ua = HeaderValue::from_str(&"u".repeat(50 * 1024)).expect("value");
        for _ in 0..100 {
            log.log(record(&ua));
        }
        let queued = rx.try_iter().count() as u64;
        assert!(
            (15..=20).contains(&queued),
            "1 MiB holds about 20 records of 50 KiB: {queued}"
        );
        assert!(log.queued_bytes() <= 1024 * 1024);
        assert_eq!(
            log.dropped_over_budget.load(Ordering::Relaxed),
            100 - queued
        );
        assert_eq!(log.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_long_extension_method_counts_against_the_budget() {
        // A method is any token: hyper takes one as long as the request
        // head may be, and the record holds its own copy of it.
        let ua = HeaderValue::from_static("curl");
        let mut rec = record(&ua);
        rec.method = http::Method::from_bytes("M".repeat(50 * 1024).as_bytes()).expect("method");
        assert!(
            rec.estimated_size() > 50 * 1024,
            "a 50 KiB method is estimated at {} bytes",
            rec.estimated_size()
        );
    }

    #[test]
    fn a_captured_header_value_owns_its_bytes() {
        let head = bytes::Bytes::from(vec![b'a'; 4096]);
        let shared = HeaderValue::from_maybe_shared(head.slice(0..10)).expect("value");
        let copy = Record::capture(&shared);
        assert_eq!(copy, shared);
        drop(shared);
        // Only `head` still refers to the 4 KiB buffer: the copy does not.
        assert!(head.is_unique());
    }
}
