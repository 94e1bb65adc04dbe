//! End-to-end: graceful drain of the real `mesh-proxy` (SPEC §3 "Command
//! line": SIGTERM / SIGINT and admin `POST /quitquitquit`; RELIABILITY D1, D2
//! and check O16) under real load: h2load over HTTP/1.1 keep-alive and h2c,
//! long requests from curl and nghttp in flight, our own HTTP/1.1 keep-alive
//! and h2c clients (which tell a refused connect from a reset, an EOF or an
//! incomplete response, and see each response's `Connection` header), and a
//! raw TCP tunnel through a TCP listener of the same proxy.
//!
//! h2load 1.52 (Debian 12) cannot tell those apart in a timing-based run: an
//! HTTP/1.1 request in flight on a connection that closes is neither "done"
//! nor "failed", it only shows as started − done; and h2c streams it queued
//! but never sent count as "failed" like streams the proxy broke (only its
//! `--log-file` tells them apart: start time 0). So every request is
//! classified by our own clients, and h2load's summary is held to what it can
//! say: every request it reports done succeeded with a 2xx, except requests
//! that provably never reached the proxy.

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use mesh_tests::{
    ConfigBuilder, LedgerUpstream, ProxyProcess, curl, curl_status, free_port, route_prefix,
    wait_until_async,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const POLL: Duration = Duration::from_millis(20);
/// Our own keep-alive clients sending back-to-back fast requests in O16.
const FAST_CLIENTS: usize = 24;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A TCP upstream that echoes every byte and closes after the client's FIN.
async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Writes `msg` into the tunnel and reads the same bytes back (2 s limit).
async fn echo_round_trip(s: &mut TcpStream, msg: &[u8]) -> anyhow::Result<()> {
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut back)).await??;
    anyhow::ensure!(back == msg, "echo mismatch: {back:?}");
    Ok(())
}

/// True once a connect to `port` is refused (the listener closed).
fn refuses(port: u16) -> bool {
    matches!(
        std::net::TcpStream::connect_timeout(&local(port), Duration::from_millis(200)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Runs a client tool (h2load, nghttp) to completion within `limit`.
async fn run_tool(program: &str, args: Vec<String>, limit: Duration) -> Output {
    let child = tokio::process::Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program} ({e}): install Debian's nghttp2-client (scripts/test does)"
            )
        });
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// h2load's closing summary.
#[derive(Debug, Default, Clone, Copy)]
struct H2loadSummary {
    total: u64,
    started: u64,
    done: u64,
    succeeded: u64,
    failed: u64,
    errored: u64,
    timeout: u64,
    s2xx: u64,
    s3xx: u64,
    s4xx: u64,
    s5xx: u64,
}

/// `N word, N word, ...` after `prefix` on one line → (word, N) pairs.
fn counts_after<'a>(text: &'a str, prefix: &str) -> Option<Vec<(&'a str, u64)>> {
    let line = text.lines().find_map(|l| l.trim().strip_prefix(prefix))?;
    line.split(',')
        .map(|item| {
            let mut it = item.split_whitespace();
            let n = it.next()?.parse().ok()?;
            Some((it.next()?, n))
        })
        .collect()
}

/// Parses `requests: N total, N started, N done, N succeeded, N failed, N
/// errored, N timeout` and `status codes: N 2xx, N 3xx, N 4xx, N 5xx`.
fn parse_h2load(stdout: &str) -> Option<H2loadSummary> {
    let mut s = H2loadSummary::default();
    for (word, n) in counts_after(stdout, "requests:")? {
        match word {
            "total" => s.total = n,
            "started" => s.started = n,
            "done" => s.done = n,
            "succeeded" => s.succeeded = n,
            "failed" => s.failed = n,
            "errored" => s.errored = n,
            "timeout" => s.timeout = n,
            _ => {}
        }
    }
    for (word, n) in counts_after(stdout, "status codes:")? {
        match word {
            "2xx" => s.s2xx = n,
            "3xx" => s.s3xx = n,
            "4xx" => s.s4xx = n,
            "5xx" => s.s5xx = n,
            _ => {}
        }
    }
    Some(s)
}

/// A finished h2load run: its output and its `--log-file` (one line per
/// request: start time in µs since the epoch, 0 if its HEADERS never went
/// out; status, -1 for a failure; duration).
struct H2loadRun {
    out: Output,
    log: String,
}

/// Runs h2load with `args` and a per-request log.
async fn h2load(args: &[&str]) -> H2loadRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("requests.log");
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.push(format!("--log-file={}", log.display()));
    let out = run_tool("h2load", all, Duration::from_secs(20)).await;
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    H2loadRun { out, log }
}

impl H2loadRun {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Failed requests in the log: (never sent, sent).
    fn logged_failures(&self) -> (u64, Vec<String>) {
        let mut unsent = 0;
        let mut sent = Vec::new();
        for line in self.log.lines() {
            let mut f = line.split('\t');
            let (start, status) = (f.next(), f.next());
            if status == Some("-1") {
                if start == Some("0") {
                    unsent += 1;
                } else {
                    sent.push(line.to_owned());
                }
            }
        }
        (unsent, sent)
    }

    /// One line for the test output.
    fn summary(&self) -> String {
        let (unsent, sent) = self.logged_failures();
        format!(
            "{:?}; {} could not connect, {} not submitted after GOAWAY, logged failures: \
             {unsent} never sent, {} sent",
            parse_h2load(&self.stdout()),
            self.stderr().matches("could not connect").count(),
            self.stdout().matches("Process Request Failure").count(),
            sent.len()
        )
    }
}

/// What h2load may report after a drain: every request it counts as done
/// succeeded with a 2xx, except requests that never reached the proxy: a
/// client that could not connect again once the listener had closed
/// (HTTP/1.1 after `Connection: close`; h2load says so on stderr), a request
/// h2load could not submit after a GOAWAY (nghttp2 refuses locally; "Process
/// Request Failure" on stdout), streams queued in nghttp2 whose HEADERS never
/// went out before the GOAWAY (logged with start time 0).
fn check_h2load(name: &str, run: &H2loadRun) -> Vec<String> {
    let (stdout, stderr) = (run.stdout(), run.stderr());
    let Some(s) = parse_h2load(&stdout) else {
        return vec![format!("{name}: no h2load summary in:\n{stdout}\n{stderr}")];
    };
    let (unsent, sent) = run.logged_failures();
    let connect_failures = stderr.matches("could not connect").count() as u64;
    let not_submitted = stdout.matches("Process Request Failure").count() as u64;
    let checks = [
        (s.succeeded > 100, "the load barely ran".to_owned()),
        (
            s.s2xx == s.succeeded && s.s3xx + s.s4xx + s.s5xx == 0,
            "non-2xx replies".to_owned(),
        ),
        (s.timeout == 0, "timeouts".to_owned()),
        // `done` counts the failed requests too.
        (
            s.done == s.succeeded + s.errored && s.failed == s.errored,
            "done ≠ succeeded + errored, or failed ≠ errored".to_owned(),
        ),
        (
            sent.is_empty(),
            format!("requests sent to the proxy failed (start µs, status, µs): {sent:?}"),
        ),
        (
            s.failed <= unsent + connect_failures + not_submitted,
            format!(
                "{} failed requests, more than those that never reached the proxy",
                s.failed
            ),
        ),
    ];
    checks
        .into_iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, what)| {
            format!(
                "{name}: {what}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                run.summary()
            )
        })
        .collect()
}

/// `12 ms after SIGTERM` / `3 ms before SIGTERM`.
fn relative(t: SystemTime, signal: SystemTime) -> String {
    match t.duration_since(signal) {
        Ok(d) => format!("{} ms after SIGTERM", d.as_millis()),
        Err(e) => format!("{} ms before SIGTERM", e.duration().as_millis()),
    }
}

/// One response our keep-alive clients received.
#[derive(Debug, Clone)]
struct Reply {
    sent: SystemTime,
    status: u16,
    connection_close: bool,
}

/// What one keep-alive client saw.
#[derive(Debug, Default)]
struct LoadReport {
    replies: Vec<Reply>,
    /// Connects refused (the listener closed), with when.
    refused: Vec<SystemTime>,
    /// Requests written (or connects other than refused) that got no complete
    /// response: reset, EOF / incomplete message, any other error; with the
    /// time the request was sent.
    failures: Vec<(SystemTime, String)>,
    /// Requests hyper did not write because it saw the connection close
    /// first (a client retries these safely; counted, not failed).
    canceled_unsent: u64,
    /// Connections that closed between requests although the last response
    /// had no `Connection: close`.
    closed_while_idle: u64,
    /// Connects reset while the listener closed (a SYN still in its queue):
    /// no connection, no request; counted with `refused` too.
    connect_resets: u64,
    /// HTTP/2 streams the proxy did not process (see [`not_processed`]).
    refused_streams: u64,
}

impl LoadReport {
    fn absorb(&mut self, other: LoadReport) {
        self.replies.extend(other.replies);
        self.refused.extend(other.refused);
        self.failures.extend(other.failures);
        self.canceled_unsent += other.canceled_unsent;
        self.closed_while_idle += other.closed_while_idle;
        self.connect_resets += other.connect_resets;
        self.refused_streams += other.refused_streams;
    }

    /// Connects to `addr`; `None` when that failed (recorded).
    async fn connect(&mut self, addr: SocketAddr) -> Option<TcpStream> {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                Some(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                self.refused.push(SystemTime::now());
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                self.refused.push(SystemTime::now());
                self.connect_resets += 1;
                None
            }
            Err(e) => {
                self.failures
                    .push((SystemTime::now(), format!("connect: {e}")));
                None
            }
        }
    }
}

/// The error's kind in O16's words.
fn classify(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        return format!("incomplete message / unexpected EOF ({e})");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return format!("{:?} ({e})", io.kind());
        }
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return format!("HTTP/2 {h2:?} ({e})");
        }
        source = s.source();
    }
    format!("other: {e}")
}

/// Sends `GET path` sequentially over keep-alive connections (a new one when
/// the proxy says `Connection: close` or closes), until a connect is refused,
/// `stop` is set or `deadline` passes.
async fn keep_alive_client(
    addr: SocketAddr,
    path: &'static str,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    deadline: Instant,
) -> LoadReport {
    let mut rep = LoadReport::default();
    'connection: while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let Some(stream) = rep.connect(addr).await else {
            break;
        };
        let (mut tx, conn) =
            match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
            {
                Ok(pair) => pair,
                Err(e) => {
                    rep.failures
                        .push((SystemTime::now(), format!("handshake: {}", classify(&e))));
                    break;
                }
            };
        tokio::spawn(conn);
        let mut last_close = false;
        loop {
            if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                break 'connection;
            }
            if tx.ready().await.is_err() {
                if !last_close {
                    rep.closed_while_idle += 1;
                }
                continue 'connection;
            }
            let req = http::Request::get(path)
                .header(http::header::HOST, "drain.test")
                .body(Empty::new())
                .expect("request");
            let sent = SystemTime::now();
            let resp = match tx.send_request(req).await {
                Ok(resp) => resp,
                Err(e) if e.is_canceled() => {
                    rep.canceled_unsent += 1;
                    continue 'connection;
                }
                Err(e) => {
                    rep.failures
                        .push((sent, format!("GET {path}: {}", classify(&e))));
                    continue 'connection;
                }
            };
            let status = resp.status().as_u16();
            let connection_close = resp
                .headers()
                .get_all(http::header::CONNECTION)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.eq_ignore_ascii_case("close")));
            if let Err(e) = resp.into_body().collect().await {
                rep.failures
                    .push((sent, format!("GET {path}: body: {}", classify(&e))));
                continue 'connection;
            }
            rep.replies.push(Reply {
                sent,
                status,
                connection_close,
            });
            progress.fetch_add(1, Ordering::Relaxed);
            last_close = connection_close;
            if connection_close {
                continue 'connection;
            }
        }
    }
    rep
}

/// The stream id of the first HEADERS frame nghttp -v sent (its request).
fn request_stream_id(nghttp_log: &str) -> Option<u64> {
    let at = nghttp_log.find("send HEADERS frame <")?;
    let rest = &nghttp_log[at..];
    let id = &rest[rest.find("stream_id=")? + "stream_id=".len()..];
    id.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The HTTP/2 error under a hyper error, if any.
fn h2_error(e: &hyper::Error) -> Option<&h2::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        source = s.source();
    }
    None
}

/// The server did not process this stream, so it is safe to retry (RFC 9113
/// §8.7): RST_STREAM(REFUSED_STREAM), or a stream above the last_stream_id
/// of the server's GOAWAY(NO_ERROR) (the h2 crate's client keeps opening
/// streams after the first, 2^31-1 GOAWAY, and fails those the final one
/// leaves out).
fn not_processed(e: &hyper::Error) -> bool {
    h2_error(e).is_some_and(|h2| {
        h2.reason() == Some(h2::Reason::REFUSED_STREAM)
            || (h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR))
    })
}

/// h2c with prior knowledge: `streams` concurrent sequential `GET path`
/// loops on one connection (a new one once the proxy's GOAWAY closed it),
/// until a connect is refused, `stop` is set or `deadline` passes.
async fn h2c_client(
    addr: SocketAddr,
    streams: usize,
    path: &'static str,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    deadline: Instant,
) -> LoadReport {
    let mut rep = LoadReport::default();
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let Some(stream) = rep.connect(addr).await else {
            break;
        };
        let (tx, conn) = match hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        {
            Ok(pair) => pair,
            Err(e) => {
                rep.failures
                    .push((SystemTime::now(), format!("h2 handshake: {}", classify(&e))));
                break;
            }
        };
        tokio::spawn(conn);
        let loops: Vec<_> = (0..streams)
            .map(|_| {
                let (mut tx, stop, progress) = (tx.clone(), stop.clone(), progress.clone());
                tokio::spawn(async move {
                    let mut rep = LoadReport::default();
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        if tx.ready().await.is_err() {
                            break;
                        }
                        let req = http::Request::get(format!("http://drain.test{path}"))
                            .body(Empty::new())
                            .expect("request");
                        let sent = SystemTime::now();
                        let resp = match tx.send_request(req).await {
                            Ok(resp) => resp,
                            Err(e) if e.is_canceled() => {
                                rep.canceled_unsent += 1;
                                break;
                            }
                            Err(e) if not_processed(&e) => {
                                rep.refused_streams += 1;
                                break;
                            }
                            Err(e) => {
                                rep.failures
                                    .push((sent, format!("h2 GET {path}: {}", classify(&e))));
                                break;
                            }
                        };
                        let status = resp.status().as_u16();
                        if let Err(e) = resp.into_body().collect().await {
                            rep.failures
                                .push((sent, format!("h2 GET {path}: body: {}", classify(&e))));
                            break;
                        }
                        rep.replies.push(Reply {
                            sent,
                            status,
                            connection_close: false,
                        });
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    rep
                })
            })
            .collect();
        drop(tx);
        for l in loops {
            rep.absorb(l.await.expect("join h2 stream loop"));
        }
    }
    rep
}

/// `(last_stream_id, error_code)` of every GOAWAY nghttp -v received.
fn goaways(nghttp_log: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut rest = nghttp_log;
    while let Some(i) = rest.find("recv GOAWAY frame") {
        rest = &rest[i + 1..];
        let Some(j) = rest.find("last_stream_id=") else {
            break;
        };
        let fields = &rest[j + "last_stream_id=".len()..];
        let id = fields
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|d| d.parse().ok())
            .unwrap_or(u64::MAX);
        let code = fields
            .split_once("error_code=")
            .map(|(_, c)| c.split(['(', ',', ')']).next().unwrap_or("").to_owned())
            .unwrap_or_default();
        out.push((id, code));
    }
    out
}

/// O16 with a 15 s drain time: h2load over HTTP/1.1 keep-alive (32
/// connections) and over h2c (4 connections × 10 streams), our own
/// keep-alive clients, two curl and one nghttp request of 4 s, and a raw TCP
/// tunnel; SIGTERM once the long requests reached the upstream and the load
/// ran for 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_finishes_in_flight_work_and_exits_zero() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let echo = echo_upstream().await;
    let (port, tcp_port, admin) = (free_port(), free_port(), free_port());
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "up")])
        .tcp_listener("tunnel", tcp_port, "echo")
        .cluster("up", &[ledger.addr()])
        .cluster("echo", &[echo])
        .admin(admin);
    let mut proxy =
        ProxyProcess::start_and_wait(&cfg.build(), &["--drain-time", "15s"], &[port, tcp_port])
            .await
            .expect("proxy starts");
    let base = format!("http://127.0.0.1:{port}");
    let load_started = Instant::now();

    // The TCP tunnel, used once before the signal.
    let mut tunnel = TcpStream::connect(local(tcp_port)).await.expect("tunnel");
    echo_round_trip(&mut tunnel, b"before the signal")
        .await
        .expect("tunnel works before SIGTERM");

    // Load: h2load (HTTP/1.1 keep-alive, then h2c), our keep-alive clients.
    let url = format!("{base}/");
    let h1 = tokio::spawn({
        let url = url.clone();
        async move { h2load(&["--h1", "-c", "32", "-D", "8", &url]).await }
    });
    let h2 = tokio::spawn(async move { h2load(&["-c", "4", "-m", "10", "-D", "8", &url]).await });
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let client_deadline = Instant::now() + Duration::from_secs(20);
    // Back-to-back fast requests (many connections, so a request arriving
    // just as the drain starts is all but certain), and 1.5 s ones: those are
    // in flight when the signal comes (sent at ~1.5 s), so their responses are
    // written after the drain started.
    let paths =
        std::iter::repeat_n("/", FAST_CLIENTS).chain(std::iter::repeat_n("/slow?ms=1500", 4));
    let clients: Vec<_> = paths
        .map(|path| {
            let (stop, progress) = (stop.clone(), progress.clone());
            let min_upstream = if path == "/" { 0 } else { 1500 };
            let task = tokio::spawn(keep_alive_client(
                local(port),
                path,
                stop,
                progress,
                client_deadline,
            ));
            (Duration::from_millis(min_upstream), task)
        })
        .collect();

    // Two h2c connections × 8 concurrent request loops.
    let h2c_clients: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(h2c_client(
                local(port),
                8,
                "/",
                stop.clone(),
                progress.clone(),
                client_deadline,
            ))
        })
        .collect();

    // The long requests: two curls (HTTP/1.1) and nghttp (h2c), 4 s each.
    let slow_url = format!("{base}/slow?ms=4000");
    let curls: Vec<_> = (0..2)
        .map(|_| {
            let url = slow_url.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let out = curl(&["-s", "-D", "-", "-o", "/dev/null", &url]).await;
                (out, started.elapsed())
            })
        })
        .collect();
    let nghttp = tokio::spawn(run_tool(
        "nghttp",
        vec!["-v".to_owned(), slow_url.clone()],
        Duration::from_secs(20),
    ));

    // SIGTERM once the three long requests reached the upstream (they are
    // then in flight for about 2 more seconds) and the load ran for 2 s.
    let reached = wait_until_async(Duration::from_secs(10), POLL, || {
        ledger.count_target_contains("/slow?ms=4000") >= 3
            && progress.load(Ordering::Relaxed) > 0
            && load_started.elapsed() >= Duration::from_secs(2)
    })
    .await;
    assert!(
        reached,
        "the long requests did not reach the upstream ({} seen) or the load made no progress",
        ledger.count_target_contains("/slow?ms=4000")
    );
    let signal_at = SystemTime::now();
    let signaled = Instant::now();
    proxy.terminate().expect("SIGTERM");

    // Listeners stop accepting, HTTP and TCP alike; /ready turns 503.
    let closed = wait_until_async(Duration::from_secs(2), POLL, || {
        refuses(port) && refuses(tcp_port)
    })
    .await;
    assert!(closed, "a listener still accepts 2 s after SIGTERM");
    let ready = curl(&[
        "-s",
        "-w",
        " %{http_code}",
        &format!("http://127.0.0.1:{admin}/ready"),
    ])
    .await
    .expect("curl /ready");
    assert!(
        ready.stdout.ends_with(" 503"),
        "/ready while draining: {:?}",
        ready.stdout
    );

    // The in-flight long requests complete with 200 (HTTP/1.1: Connection: close).
    for c in curls {
        let (out, took) = c.await.expect("join curl");
        let out = out.expect("curl runs");
        let head = out.stdout.to_ascii_lowercase();
        assert_eq!(out.exit_code, 0, "curl: {out:?}");
        assert!(head.starts_with("http/1.1 200"), "curl got {head:?}");
        assert!(
            head.contains("\r\nconnection: close\r\n"),
            "a response written after SIGTERM has no `Connection: close`: {head:?}"
        );
        assert!(took >= Duration::from_secs(4), "curl took {took:?}");
    }
    let ng = nghttp.await.expect("join nghttp");
    let ng_log = String::from_utf8_lossy(&ng.stdout).into_owned();
    assert!(
        ng.status.success(),
        "nghttp failed ({}): {ng_log}\n{}",
        ng.status,
        String::from_utf8_lossy(&ng.stderr)
    );
    // nghttp opens priority-only streams first; its request is the stream
    // its HEADERS frame went out on.
    let stream = request_stream_id(&ng_log)
        .unwrap_or_else(|| panic!("no request HEADERS in the nghttp log:\n{ng_log}"));
    assert!(
        ng_log.contains(&format!("recv (stream_id={stream}) :status: 200")),
        "nghttp did not get 200 on its stream {stream}:\n{ng_log}"
    );
    let goaway = goaways(&ng_log);
    assert!(!goaway.is_empty(), "nghttp saw no GOAWAY:\n{ng_log}");
    for (last_stream_id, code) in &goaway {
        assert_eq!(code, "NO_ERROR", "GOAWAY {goaway:?}:\n{ng_log}");
        assert!(
            *last_stream_id >= stream,
            "a GOAWAY's last_stream_id does not cover stream {stream}: {goaway:?}"
        );
    }
    // D1: two-phase GOAWAY, 2^31-1 first, then the real last stream id.
    assert_eq!(
        goaway.first().map(|g| g.0),
        Some((1 << 31) - 1),
        "first GOAWAY: {goaway:?}"
    );
    assert_eq!(
        goaway.last().map(|g| g.0),
        Some(stream),
        "final GOAWAY: {goaway:?}"
    );

    // D2: the long requests are done, the tunnel is still open, so the proxy
    // still runs; the tunnel still carries bytes both ways after SIGTERM.
    assert!(proxy.is_running(), "the proxy exited with a tunnel open");
    echo_round_trip(&mut tunnel, b"after the signal")
        .await
        .expect("the tunnel works after SIGTERM");
    tunnel.shutdown().await.expect("close the tunnel");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), tunnel.read_to_end(&mut rest)).await;
    drop(tunnel);
    let tunnel_closed = signaled.elapsed();

    // The proxy exits 0 once idle, within drain time + 1 s of the signal.
    let left = Duration::from_secs(16).saturating_sub(signaled.elapsed());
    let status = proxy.wait_exit(left).await;
    let exited = signaled.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit within 16 s of SIGTERM: {status:?}\nstderr:\n{}",
        proxy.stderr_text()
    );

    // Our clients: nothing but refused connects (or, over HTTP/2, refused
    // streams) after the close.
    stop.store(true, Ordering::Relaxed);
    let mut total = LoadReport::default();
    let (mut must_close, mut missing_close, mut not_ok) = (0, Vec::new(), Vec::new());
    let margin = Duration::from_millis(100);
    for (min_upstream, task) in clients {
        let rep = task.await.expect("join client");
        for r in &rep.replies {
            if r.status != 200 {
                not_ok.push(r.clone());
            }
            // Written by the proxy at least `min_upstream` after it was sent:
            // after the drain started (100 ms after the signal at the latest)?
            if r.sent + min_upstream >= signal_at + margin {
                must_close += 1;
                if !r.connection_close {
                    missing_close.push(r.clone());
                }
            }
        }
        total.absorb(rep);
    }
    let mut h2c = LoadReport::default();
    for task in h2c_clients {
        h2c.absorb(task.await.expect("join h2c client"));
    }
    let early = total
        .refused
        .iter()
        .chain(&h2c.refused)
        .filter(|t| **t < signal_at)
        .count();
    assert_eq!(early, 0, "connects refused before SIGTERM");
    let h1 = h1.await.expect("join h2load h1");
    let h2 = h2.await.expect("join h2load h2c");
    let failures = |rep: &LoadReport| {
        rep.failures
            .iter()
            .map(|(sent, what)| format!("{what}; sent {}", relative(*sent, signal_at)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    eprintln!(
        "O16: SIGTERM {:.2} s into the load; tunnel closed {:.2} s and proxy exited {:.2} s after it\n\
         HTTP/1.1 keep-alive clients: {} responses ({} non-200; {} written after the drain began, \
         {} of them without Connection: close), {} refused connects ({} reset at connect), \
         {} failed requests, {} requests not sent (closed first), {} idle closes\n\
         h2c clients: {} responses, {} refused connects, {} refused streams, {} not sent, {} failed requests\n\
         h2load --h1: {}\nh2load h2c: {}\nnghttp GOAWAYs (last_stream_id, error): {goaway:?}",
        signaled.duration_since(load_started).as_secs_f64(),
        tunnel_closed.as_secs_f64(),
        exited.as_secs_f64(),
        total.replies.len(),
        not_ok.len(),
        must_close,
        missing_close.len(),
        total.refused.len(),
        total.connect_resets,
        total.failures.len(),
        total.canceled_unsent,
        total.closed_while_idle,
        h2c.replies.len(),
        h2c.refused.len(),
        h2c.refused_streams,
        h2c.canceled_unsent,
        h2c.failures.len(),
        h1.summary(),
        h2.summary(),
    );
    let mut problems = Vec::new();
    if !total.failures.is_empty() {
        problems.push(format!(
            "HTTP/1.1 keep-alive requests failed otherwise than by a refused connect ({}):\n{}",
            total.failures.len(),
            failures(&total)
        ));
    }
    if !h2c.failures.is_empty() {
        problems.push(format!(
            "h2c requests failed otherwise than by a refused connect or stream ({}):\n{}",
            h2c.failures.len(),
            failures(&h2c)
        ));
    }
    let h2c_not_ok = h2c.replies.iter().filter(|r| r.status != 200).count();
    if !not_ok.is_empty() || h2c_not_ok > 0 {
        problems.push(format!(
            "non-200 responses: HTTP/1.1 {not_ok:?}, h2c {h2c_not_ok}"
        ));
    }
    if !missing_close.is_empty() {
        problems.push(format!(
            "responses written after SIGTERM without `Connection: close` (signal at {signal_at:?}): {missing_close:?}"
        ));
    }
    if must_close == 0 {
        problems.push(
            "no response was written after the signal: the Connection: close check ran on nothing"
                .to_owned(),
        );
    }
    if total.refused.is_empty() || h2c.refused.is_empty() {
        problems.push("a client never saw the listener closed".to_owned());
    }
    problems.extend(check_h2load("h2load --h1", &h1));
    problems.extend(check_h2load("h2load h2c", &h2));
    assert!(problems.is_empty(), "O16:\n{}", problems.join("\n\n"));
}

/// D2 with a short drain time: a tunnel that stays open works after the
/// signal, and is cut when the drain time ends; the proxy exits 0 at ~1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_drain_time_cuts_an_open_tunnel_and_exits_zero() {
    let echo = echo_upstream().await;
    let tcp_port = free_port();
    let cfg = ConfigBuilder::new()
        .tcp_listener("tunnel", tcp_port, "echo")
        .cluster("echo", &[echo]);
    let mut proxy =
        ProxyProcess::start_and_wait(&cfg.build(), &["--drain-time", "1s"], &[tcp_port])
            .await
            .expect("proxy starts");
    let mut tunnel = TcpStream::connect(local(tcp_port)).await.expect("tunnel");
    echo_round_trip(&mut tunnel, b"before")
        .await
        .expect("tunnel before SIGTERM");
    let signaled = Instant::now();
    proxy.terminate().expect("SIGTERM");
    echo_round_trip(&mut tunnel, b"right after the signal")
        .await
        .expect("the tunnel works during the drain");
    // Keep it open: the proxy ends it when the drain time is over.
    let mut buf = [0u8; 64];
    let ended = tokio::time::timeout(Duration::from_secs(5), tunnel.read(&mut buf)).await;
    let cut_at = signaled.elapsed();
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "tunnel not ended within 5 s of SIGTERM: {ended:?}"
    );
    let status = proxy.wait_exit(Duration::from_secs(3)).await;
    let exited = signaled.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit code: {status:?}"
    );
    eprintln!(
        "drain 1s: tunnel cut at {:.2} s, proxy exited at {:.2} s",
        cut_at.as_secs_f64(),
        exited.as_secs_f64()
    );
    assert!(
        cut_at >= Duration::from_millis(900) && cut_at <= Duration::from_millis(2000),
        "tunnel cut {cut_at:?} after SIGTERM, expected about 1 s"
    );
    assert!(
        exited >= Duration::from_millis(900) && exited <= Duration::from_millis(2000),
        "exit {exited:?} after SIGTERM, expected about 1 s"
    );
}

/// Starts a proxy in front of a ledger with an admin port; a 1.5 s request
/// is in flight (it reached the upstream) when this returns.
async fn proxy_with_request_in_flight(
    drain_time: &str,
) -> (
    ProxyProcess,
    LedgerUpstream,
    u16,
    u16,
    tokio::task::JoinHandle<anyhow::Result<mesh_tests::CurlOut>>,
) {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let (port, admin) = (free_port(), free_port());
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "up")])
        .cluster("up", &[ledger.addr()])
        .admin(admin);
    let proxy =
        ProxyProcess::start_and_wait(&cfg.build(), &["--drain-time", drain_time], &[port, admin])
            .await
            .expect("proxy starts");
    let url = format!("http://127.0.0.1:{port}/slow?ms=1500");
    let inflight =
        tokio::spawn(async move { curl(&["-s", "-D", "-", "-o", "/dev/null", &url]).await });
    ledger
        .wait_for_entries(1, Duration::from_secs(5))
        .await
        .expect("the request reached the upstream");
    (proxy, ledger, port, admin, inflight)
}

/// After a drain started: the listener refuses, the in-flight request ends
/// 200 with `Connection: close`, the proxy exits 0 within `within`.
async fn expect_drain_and_exit(
    proxy: &mut ProxyProcess,
    port: u16,
    inflight: tokio::task::JoinHandle<anyhow::Result<mesh_tests::CurlOut>>,
    within: Duration,
) {
    let started = Instant::now();
    let closed = wait_until_async(Duration::from_secs(2), POLL, || refuses(port)).await;
    assert!(closed, "the listener still accepts 2 s into the drain");
    let out = inflight.await.expect("join").expect("curl");
    let head = out.stdout.to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200"),
        "in-flight request: {head:?}"
    );
    assert!(head.contains("\r\nconnection: close\r\n"), "{head:?}");
    let status = proxy
        .wait_exit(within.saturating_sub(started.elapsed()))
        .await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after the drain: {status:?}\nstderr:\n{}",
        proxy.stderr_text()
    );
}

/// `POST /quitquitquit` on the admin port starts the same drain as SIGTERM;
/// `GET /quitquitquit` does not (405) and the proxy keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_post_quitquitquit_drains_and_get_does_not() {
    let (mut proxy, _ledger, port, admin, inflight) = proxy_with_request_in_flight("5s").await;
    let quit = format!("http://127.0.0.1:{admin}/quitquitquit");
    let (status, _) = curl_status(&quit, &[]).await.expect("GET /quitquitquit");
    assert_eq!(status, 405, "GET /quitquitquit");
    let (ready, _) = curl_status(&format!("http://127.0.0.1:{admin}/ready"), &[])
        .await
        .expect("/ready");
    assert_eq!(ready, 200, "/ready after GET /quitquitquit");
    let (served, _) = curl_status(&format!("http://127.0.0.1:{port}/after-get"), &[])
        .await
        .expect("request after GET /quitquitquit");
    assert_eq!(served, 200, "still serving after GET /quitquitquit");
    assert!(proxy.is_running(), "GET /quitquitquit stopped the proxy");

    let (status, _) = curl_status(&quit, &["-X", "POST"])
        .await
        .expect("POST /quitquitquit");
    assert_eq!(status, 200, "POST /quitquitquit");
    expect_drain_and_exit(&mut proxy, port, inflight, Duration::from_secs(6)).await;
}

/// SIGINT drains like SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_like_sigterm() {
    let (mut proxy, _ledger, port, _admin, inflight) = proxy_with_request_in_flight("5s").await;
    proxy.signal("INT").expect("SIGINT");
    expect_drain_and_exit(&mut proxy, port, inflight, Duration::from_secs(6)).await;
}

#[test]
fn parses_h2load_and_nghttp_output() {
    let h2load = "finished in 4.00s, 12037.75 req/s, 1.49MB/s\n\
        requests: 48151 total, 48183 started, 48151 done, 48150 succeeded, 1 failed, 1 errored, 0 timeout\n\
        status codes: 48150 2xx, 0 3xx, 0 4xx, 0 5xx\n";
    let s = parse_h2load(h2load).expect("parses");
    assert_eq!(
        (s.total, s.started, s.done, s.succeeded, s.failed, s.errored),
        (48151, 48183, 48151, 48150, 1, 1)
    );
    assert_eq!((s.s2xx, s.s5xx), (48150, 0));
    let nghttp = "[  2.196] recv GOAWAY frame <length=8, flags=0x00, stream_id=0>\n          \
        (last_stream_id=2147483647, error_code=NO_ERROR(0x00), opaque_data(0)=[])\n\
        [  2.197] recv GOAWAY frame <length=8, flags=0x00, stream_id=0>\n          \
        (last_stream_id=13, error_code=NO_ERROR(0x00), opaque_data(0)=[])\n";
    assert_eq!(
        goaways(nghttp),
        vec![
            (2147483647, "NO_ERROR".to_owned()),
            (13, "NO_ERROR".to_owned())
        ]
    );
    let sent = "[  0.000] send PRIORITY frame <length=5, flags=0x00, stream_id=11>\n\
        [  0.000] send HEADERS frame <length=50, flags=0x25, stream_id=13>\n";
    assert_eq!(request_stream_id(sent), Some(13));
}
