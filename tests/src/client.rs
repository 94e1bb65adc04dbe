//! Clients for checks: a raw socket exchange (for bytes no HTTP library will
//! send, and to see exactly what came back and how the connection ended), the
//! system curl (the client the acceptance checks are written against), and
//! deadline-bounded waiting helpers that replace "sleep and hope".
//!
//! The network helpers are async so they can run on the same tokio runtime as
//! the in-process upstreams without blocking them.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::find;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CURL_MAX_TIME: &str = "30";

/// What a raw exchange got back.
#[derive(Clone, Debug)]
pub struct RawReply {
    /// Every byte received.
    pub bytes: Vec<u8>,
    /// The peer ended the connection (EOF or an error such as a reset)
    /// before the read timeout.
    pub closed_by_peer: bool,
    /// The read or write error that ended the exchange, if any.
    pub error: Option<io::ErrorKind>,
    /// From the first byte written until EOF, error or the timeout.
    pub elapsed: Duration,
}

impl RawReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The connection ended with a reset (RST) rather than a clean EOF.
    pub fn was_reset(&self) -> bool {
        matches!(
            self.error,
            Some(io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)
        )
    }

    /// Status code of the first status line (a 1xx interim response counts).
    pub fn status(&self) -> Option<u16> {
        let rest = self.bytes.strip_prefix(b"HTTP/1.")?;
        let code = rest.get(2..5)?;
        if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(code).ok()?.parse().ok()
    }

    /// Number of `HTTP/1.x ` status lines at line starts (interim 1xx included).
    pub fn responses(&self) -> usize {
        let starts_response = |i: usize| {
            let rest = &self.bytes[i..];
            rest.starts_with(b"HTTP/1.1 ") || rest.starts_with(b"HTTP/1.0 ")
        };
        (0..self.bytes.len())
            .filter(|&i| (i == 0 || self.bytes[i - 1] == b'\n') && starts_response(i))
            .count()
    }

    /// First value of header `name` (case-insensitive) in the first response's head.
    pub fn header(&self, name: &str) -> Option<String> {
        let end = find(&self.bytes, b"\r\n\r\n").unwrap_or(self.bytes.len());
        let head = String::from_utf8_lossy(&self.bytes[..end]);
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// Bytes after the first response's head (empty if there is no complete head).
    pub fn body(&self) -> &[u8] {
        find(&self.bytes, b"\r\n\r\n").map_or(&[], |i| &self.bytes[i + 4..])
    }
}

/// Connects, writes `request`, then reads until EOF or until `read_timeout`
/// has passed since the write started (then `closed_by_peer` is false).
pub async fn raw_exchange(
    addr: SocketAddr,
    request: &[u8],
    read_timeout: Duration,
) -> anyhow::Result<RawReply> {
    let mut stream = connect(addr).await?;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + read_timeout;
    let mut reply = RawReply {
        bytes: Vec::new(),
        closed_by_peer: false,
        error: None,
        elapsed: Duration::ZERO,
    };
    if let Err(e) = stream.write_all(request).await {
        // Keep reading: the peer may have answered (e.g. 400) before closing.
        reply.error = Some(e.kind());
    }
    loop {
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut reply.bytes)).await {
            Ok(Ok(0)) => {
                reply.closed_by_peer = true;
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                reply.closed_by_peer = true;
                reply.error = Some(e.kind());
                break;
            }
            Err(_) => break,
        }
    }
    reply.elapsed = started.elapsed();
    Ok(reply)
}

/// Connects, writes `bytes` and closes without reading (an aborted request).
pub async fn raw_send_and_close(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<()> {
    let mut stream = connect(addr).await?;
    stream.write_all(bytes).await?;
    stream.shutdown().await?;
    Ok(())
}

async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .with_context(|| format!("connecting to {addr} timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Result of running curl.
#[derive(Clone, Debug)]
pub struct CurlOut {
    /// curl's exit code (-1 if killed by a signal); 0 = success, 18 = partial
    /// transfer, 28 = timeout, 52 = empty reply, 56 = receive error.
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn curl_program() -> &'static str {
    if Path::new("/usr/bin/curl").is_file() {
        "/usr/bin/curl"
    } else {
        "curl"
    }
}

/// Runs the system curl with `args`, limited to 30 s (`--max-time`; a later
/// `--max-time` in `args` overrides it).
pub async fn curl(args: &[&str]) -> anyhow::Result<CurlOut> {
    let output = tokio::process::Command::new(curl_program())
        .args(["--max-time", CURL_MAX_TIME])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(35), output)
        .await
        .context("curl did not exit within 35 s")?
        .context("running curl")?;
    Ok(CurlOut {
        exit_code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// `curl -s -o /dev/null -w '%{http_code} %{time_total}' EXTRA... URL`:
/// (status, seconds). Status is 0 when no response arrived.
pub async fn curl_status(url: &str, extra: &[&str]) -> anyhow::Result<(u16, f64)> {
    let mut args = vec!["-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args).await?;
    let mut fields = out.stdout.split_whitespace();
    let parsed = (|| {
        let code = fields.next()?.parse().ok()?;
        let secs = fields.next()?.parse().ok()?;
        Some((code, secs))
    })();
    match parsed {
        Some(result) => Ok(result),
        None => bail!(
            "unexpected curl -w output {:?} (exit {}): {}",
            out.stdout,
            out.exit_code,
            out.stderr
        ),
    }
}

/// Calls `f` every `poll` until it returns true (→ true) or `deadline` has
/// passed (→ false). Blocks the thread: use [`wait_until_async`] in async code.
pub fn wait_until(deadline: Duration, poll: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(poll);
    }
}

/// Async [`wait_until`].
pub async fn wait_until_async(
    deadline: Duration,
    poll: Duration,
    mut f: impl FnMut() -> bool,
) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(poll).await;
    }
}

/// Like [`wait_until_async`] with an async condition (e.g. a request that must
/// start succeeding).
pub async fn wait_until_ok<F, Fut>(deadline: Duration, poll: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(poll).await;
    }
}

/// One counter or gauge from a proxy's admin `/stats` (`None` when absent).
pub async fn admin_stat(admin_port: u16, name: &str) -> Option<u64> {
    let url = format!("http://127.0.0.1:{admin_port}/stats?filter=^{name}$");
    let out = curl(&["-s", &url]).await.ok()?;
    out.stdout.lines().find_map(|l| {
        l.strip_prefix(&format!("{name}: "))
            .and_then(|v| v.trim().parse().ok())
    })
}
