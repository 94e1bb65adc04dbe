//! The ledger upstream: an HTTP/1.1 + h2c origin that records every request it
//! received completely, so end-to-end checks can assert what actually crossed
//! the proxy (method, raw target, headers in order, body hash) instead of
//! trusting the status code the client saw. A body that fails before its end is
//! recorded with `aborted: true`, which is how "the upstream never got a
//! complete smuggled/broken request" becomes checkable. See RELIABILITY.md,
//! "Harness conventions".

mod respond;

pub use respond::big_body_sha256;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ring::digest;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use respond::{RespBody, plain, respond};

/// One request as the ledger received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Id of the downstream connection (1 for the first accepted connection).
    pub conn_id: u64,
    pub method: String,
    /// The request-target as received: for HTTP/1.x the origin, absolute,
    /// authority or asterisk form; for HTTP/2 the `:path` pseudo-header.
    pub target: String,
    /// The authority from an absolute-form target (HTTP/1.x) or `:authority` (HTTP/2).
    pub authority: Option<String>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Lowercase names, lossy UTF-8 values, every value of repeated fields.
    /// Ordered by each name's first appearance (repeats are grouped after it).
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    /// Lowercase hex SHA-256 of the body bytes received (so far, if aborted).
    pub body_sha256: String,
    /// The body ended with an error (peer closed or reset) before completing.
    pub aborted: bool,
}

impl LedgerEntry {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in received order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Shared {
    entries: Mutex<Vec<LedgerEntry>>,
    len: watch::Sender<usize>,
    connections: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<LedgerEntry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, entry: LedgerEntry) {
        let len = {
            let mut entries = self.lock();
            entries.push(entry);
            entries.len()
        };
        self.len.send_replace(len);
    }
}

/// A running ledger upstream on 127.0.0.1; stops (listener and every
/// connection) when dropped.
pub struct LedgerUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

impl LedgerUpstream {
    /// Binds 127.0.0.1:0 and serves HTTP/1.1 and h2c (prior knowledge) on it.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the ledger upstream on 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            entries: Mutex::new(Vec::new()),
            len: watch::channel(0).0,
            connections: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone())).abort_handle();
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` followed by `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// A snapshot of every entry so far, in the order they were completed.
    pub fn entries(&self) -> Vec<LedgerEntry> {
        self.shared.lock().clone()
    }

    /// Number of entries matching `pred`.
    pub fn count(&self, pred: impl Fn(&LedgerEntry) -> bool) -> usize {
        self.shared.lock().iter().filter(|e| pred(e)).count()
    }

    /// Number of entries whose target contains `needle` (the harness's `ledger_count`).
    pub fn count_target_contains(&self, needle: &str) -> usize {
        self.count(|e| e.target.contains(needle))
    }

    /// The entries as JSON lines, the `$LEDGER` file format; handy in failure messages.
    pub fn to_jsonl(&self) -> String {
        self.shared
            .lock()
            .iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .map(|line| line + "\n")
            .collect()
    }

    /// Waits until the ledger holds at least `n` entries, or fails after `timeout`.
    pub async fn wait_for_entries(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.shared.len.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|len| *len >= n)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => anyhow::bail!("ledger stopped while waiting for {n} entries"),
            Err(_) => {
                let jsonl = self.to_jsonl();
                let have = jsonl.lines().count();
                anyhow::bail!("ledger has {have} entries after {timeout:?}, wanted {n}:\n{jsonl}")
            }
        }
    }

    /// Number of TCP connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for LedgerUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Generous limits: the ledger must see whatever the proxy lets through
    // (the proxy adds headers to requests that sit at its own limits).
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_headers(1000)
        .max_buf_size(1024 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(1024 * 1024)
        .max_concurrent_streams(1000);
    let builder = Arc::new(builder);
    // Dropping the JoinSet (when this task is aborted) aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // e.g. EMFILE: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let conn_id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let builder = builder.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| handle(req, shared.clone(), conn_id));
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    conn_id: u64,
) -> Result<Response<RespBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let mut entry = entry_from_parts(&parts, conn_id);
    let (len, sha, complete) = read_body(body).await;
    entry.body_len = len;
    entry.body_sha256 = sha;
    entry.aborted = !complete;
    shared.push(entry.clone());
    let mut resp = if complete {
        respond(&entry, &parts).await
    } else {
        plain(StatusCode::BAD_REQUEST, "request body aborted\n")
    };
    if let Ok(v) = HeaderValue::from_str(&conn_id.to_string()) {
        resp.headers_mut().insert("x-ledger-conn", v);
    }
    Ok(resp)
}

fn entry_from_parts(parts: &Parts, conn_id: u64) -> LedgerEntry {
    let target = if parts.version == Version::HTTP_2 {
        parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.to_string(), |pq| pq.to_string())
    } else {
        parts.uri.to_string()
    };
    LedgerEntry {
        conn_id,
        method: parts.method.to_string(),
        target,
        authority: parts.uri.authority().map(|a| a.to_string()),
        version: format!("{:?}", parts.version),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_owned(), value)
            })
            .collect(),
        body_len: 0,
        body_sha256: String::new(),
        aborted: false,
    }
}

/// Reads the whole body, returning (length, sha256 hex, completed).
async fn read_body(mut body: Incoming) -> (u64, String, bool) {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut len = 0u64;
    let complete = loop {
        match body.frame().await {
            None => break true,
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    ctx.update(data);
                    len += data.len() as u64;
                }
            }
            Some(Err(_)) => break false,
        }
    };
    (len, hex(ctx.finish().as_ref()), complete)
}
