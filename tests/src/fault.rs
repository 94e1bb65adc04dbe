//! The fault upstream: a hand-written HTTP/1.1 server on raw tokio sockets that
//! misbehaves on purpose (hangs, resets, garbage, split responses, dripping
//! headers), chosen by the last path segment so `/fault/hang` needs no prefix
//! rewriting. It is deliberately not hyper: a real HTTP library refuses to
//! produce most of these answers. Every complete request is counted before the
//! misbehaviour, so checks such as "a POST is never retried" can count what the
//! upstream really received. See RELIABILITY.md, "Harness conventions".

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::wire::{self, ReadOutcome, RequestHead};

/// One complete request the fault upstream read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRequest {
    pub conn_id: u64,
    pub method: String,
    pub target: String,
    /// Lowercase names, trimmed values, in received order.
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
}

impl FaultRequest {
    /// The behaviour selector: last path segment, query ignored.
    pub fn segment(&self) -> &str {
        last_segment(&self.target)
    }
}

/// Last non-empty path segment of a request-target, ignoring the query.
pub fn last_segment(target: &str) -> &str {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

struct Shared {
    log: Mutex<Vec<FaultRequest>>,
    total: watch::Sender<u64>,
    connections: AtomicU64,
    toggle_healthy: AtomicBool,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Vec<FaultRequest>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fault upstream on 127.0.0.1; stops (listener and every
/// connection) when dropped.
pub struct FaultUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

impl FaultUpstream {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fault upstream on 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            total: watch::channel(0).0,
            connections: AtomicU64::new(0),
            toggle_healthy: AtomicBool::new(false),
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

    /// `/toggle` answers 503 while false (the start state) and 200 once true.
    pub fn set_toggle(&self, healthy: bool) {
        self.shared.toggle_healthy.store(healthy, Ordering::SeqCst);
    }

    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Complete requests whose last path segment is `segment`.
    pub fn requests(&self, segment: &str) -> u64 {
        self.count(|r| r.segment() == segment)
    }

    /// Complete requests with that last path segment and method (case-sensitive).
    pub fn requests_by_method(&self, segment: &str, method: &str) -> u64 {
        self.count(|r| r.segment() == segment && r.method == method)
    }

    pub fn requests_total(&self) -> u64 {
        *self.shared.total.borrow()
    }

    /// Every complete request so far, in the order they were read.
    pub fn requests_seen(&self) -> Vec<FaultRequest> {
        self.shared.log().clone()
    }

    /// Waits until at least `n` complete requests were read, or fails after `timeout`.
    pub async fn wait_for_requests(&self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.shared.total.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|total| *total >= n)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => anyhow::bail!("fault upstream stopped while waiting"),
            Err(_) => anyhow::bail!(
                "fault upstream read {} requests after {timeout:?}, wanted {n}: {:?}",
                self.requests_total(),
                self.requests_seen()
            ),
        }
    }

    fn count(&self, pred: impl Fn(&FaultRequest) -> bool) -> u64 {
        self.shared.log().iter().filter(|r| pred(r)).count() as u64
    }
}

impl Drop for FaultUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Dropping the JoinSet (when this task is aborted) aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let conn_id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            stream,
            buf: Vec::with_capacity(8192),
            conn_id,
            shared: shared.clone(),
        };
        conns.spawn(conn.serve());
    }
}

/// What the connection loop does after a behaviour ran.
enum Next {
    KeepAlive,
    Close,
}

/// Bytes of the `reset-mid` body sent before the reset.
const RESET_MID_SENT: usize = 10_000;
const GARBAGE: &[u8] = b"\x00\x01garbage\xff\r\n\r\n";
/// Both framings at once (RFC 9112 §6.3 calls this an error), followed by a
/// second, unsolicited response that a desynchronised reader takes for the
/// answer to its next request.
const SPLIT: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n\
5\r\nfirst\r\n0\r\n\r\n\
HTTP/1.1 200 OK\r\ncontent-length: 9\r\nx-fault: smuggled\r\n\r\nsmuggled!";
const DRIP_INTERVAL: Duration = Duration::from_secs(2);

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    conn_id: u64,
    shared: Arc<Shared>,
}

impl Conn {
    async fn serve(mut self) {
        loop {
            let head = match wire::read_request(&mut self.stream, &mut self.buf).await {
                Ok(ReadOutcome::Request(head)) => head,
                Ok(ReadOutcome::Bad(status)) => {
                    let _ = self.respond(status, &[], b"bad request\n", None).await;
                    return;
                }
                Ok(ReadOutcome::Eof) | Err(_) => return,
            };
            self.record(&head);
            match self.behave(&head).await {
                Ok(Next::KeepAlive) => {}
                Ok(Next::Close) | Err(_) => return,
            }
        }
    }

    fn record(&self, head: &RequestHead) {
        self.shared.log().push(FaultRequest {
            conn_id: self.conn_id,
            method: head.method.clone(),
            target: head.target.clone(),
            headers: head.headers.clone(),
            body_len: head.body_len,
        });
        self.shared.total.send_modify(|t| *t += 1);
    }

    async fn behave(&mut self, head: &RequestHead) -> io::Result<Next> {
        match last_segment(&head.target) {
            "hang" => {
                self.drain_until_eof().await;
                Ok(Next::Close)
            }
            "reset-after-read" => {
                self.stream.set_zero_linger()?;
                Ok(Next::Close)
            }
            "reset-mid" => {
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
                out.resize(out.len() + RESET_MID_SENT, b'r');
                self.stream.write_all(&out).await?;
                // An RST discards whatever is still in our send queue; give the
                // peer a moment to take the partial body first.
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.stream.set_zero_linger()?;
                Ok(Next::Close)
            }
            "garbage" => {
                self.stream.write_all(GARBAGE).await?;
                let _ = self.stream.shutdown().await;
                Ok(Next::Close)
            }
            "split" => {
                self.stream.write_all(SPLIT).await?;
                Ok(keep_alive_if(head.keep_alive))
            }
            "drip" => {
                self.drip().await;
                Ok(Next::Close)
            }
            "503" => self.respond(503, &[], b"fault: 503\n", Some(head)).await,
            "slow" => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.respond(200, &[], b"ok\n", Some(head)).await
            }
            "toggle" => {
                if self.shared.toggle_healthy.load(Ordering::SeqCst) {
                    self.respond(200, &[], b"ok\n", Some(head)).await
                } else {
                    self.respond(503, &[], b"toggle: 503\n", Some(head)).await
                }
            }
            "close" => {
                let headers = [("connection", "close")];
                self.respond(200, &headers, b"ok\n", Some(head)).await?;
                let _ = self.stream.shutdown().await;
                Ok(Next::Close)
            }
            _ => self.respond(200, &[], b"ok\n", Some(head)).await,
        }
    }

    /// Writes a complete response. `req` is None for a 4xx to a request we
    /// could not parse (then the connection closes).
    async fn respond(
        &mut self,
        status: u16,
        extra: &[(&str, &str)],
        body: &[u8],
        req: Option<&RequestHead>,
    ) -> io::Result<Next> {
        let closes = req.is_none_or(|r| !r.keep_alive)
            || extra
                .iter()
                .any(|(n, v)| n == &"connection" && v == &"close");
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-fault-conn: {}\r\n",
            reason(status),
            body.len(),
            self.conn_id
        );
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if closes && !extra.iter().any(|(n, _)| n == &"connection") {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if req.is_none_or(|r| r.method != "HEAD") {
            bytes.extend_from_slice(body);
        }
        self.stream.write_all(&bytes).await?;
        if closes {
            let _ = self.stream.shutdown().await;
            Ok(Next::Close)
        } else {
            Ok(Next::KeepAlive)
        }
    }

    /// Reads and discards until the peer closes (or errors).
    async fn drain_until_eof(&mut self) {
        let mut sink = [0u8; 4096];
        while let Ok(n) = self.stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    }

    /// Status line at once, then one byte of a never-ending header line every
    /// 2 s, until the peer goes away.
    async fn drip(&mut self) {
        if self.stream.write_all(b"HTTP/1.1 200 OK\r\n").await.is_err() {
            return;
        }
        let line = b"x-drip: ";
        let mut sent = 0usize;
        let mut next = Instant::now() + DRIP_INTERVAL;
        let mut sink = [0u8; 4096];
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    let byte = line.get(sent).copied().unwrap_or(b'a');
                    if self.stream.write_all(&[byte]).await.is_err() {
                        return;
                    }
                    sent += 1;
                    next += DRIP_INTERVAL;
                }
                read = self.stream.read(&mut sink) => {
                    if matches!(read, Ok(0) | Err(_)) {
                        return;
                    }
                }
            }
        }
    }
}

fn keep_alive_if(keep_alive: bool) -> Next {
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
