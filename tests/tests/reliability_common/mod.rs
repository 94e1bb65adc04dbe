//! Shared fixture of the RELIABILITY.md acceptance checks: the "proxy test
//! profile" mapped onto the SPEC §3 schema, served by the real `mesh-proxy`
//! in front of an in-process ledger and fault upstream, plus the small raw
//! clients the checks need. Each `reliability_*.rs` test file includes this
//! module; not every file uses every helper.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mesh_tests::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The profile's route timeout on `/fault/`.
pub const FAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connect timeout of the `/dead` and `/dns` clusters (the profile's per-try timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pooled-connection idle timeout of the fault cluster (O13 waits for it).
pub const FAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// A freshly started proxy with the profile config, its two upstreams and an
/// empty ledger (RELIABILITY "Isolation").
pub struct Mesh {
    pub ledger: LedgerUpstream,
    pub fault: FaultUpstream,
    pub proxy: ProxyProcess,
    /// `$P`, the plaintext HTTP listener.
    pub port: u16,
    /// `$UDEAD`, a port with no listener.
    pub dead_port: u16,
    pub pid: u32,
}

/// Extra settings for [`Mesh::start_with`].
#[derive(Default)]
pub struct MeshOptions {
    /// Keys set on the listener's own `limits:` (overrides the profile).
    pub listener_limits: Option<Value>,
}

impl Mesh {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(MeshOptions::default()).await
    }

    pub async fn start_with(opts: MeshOptions) -> anyhow::Result<Self> {
        let ledger = LedgerUpstream::start().await?;
        let fault = FaultUpstream::start().await?;
        let port = free_port();
        let dead_port = free_port();
        let routes = vec![
            route_path_direct("/admin", 403, "denied\n"),
            route_prefix_direct("/admin/", 403, "denied\n"),
            route_prefix("/fault/", "fault").with("timeout", "2s"),
            route_path("/dead", "dead"),
            route_path("/dns", "dns"),
            route_prefix("/", "ledger"),
        ];
        let listener_extra = match opts.listener_limits {
            Some(limits) => json!({ "limits": limits }),
            None => json!({}),
        };
        let yaml = ConfigBuilder::new()
            .node("reliability")
            .admin(free_port())
            .limits(profile_limits())
            .http_listener_with("main", port, routes, listener_extra)
            .cluster_with(
                "ledger",
                &[ledger.addr()],
                json!({ "connect_timeout": "1s" }),
            )
            .cluster_with(
                "fault",
                &[fault.addr()],
                json!({
                    "connect_timeout": "1s",
                    "idle_timeout": "1s",
                    "circuit_breaker": { "max_connections": 10, "max_pending_requests": 10 },
                    "outlier_detection": { "consecutive_5xx": 5, "base_ejection_time": "10s" },
                }),
            )
            .cluster_with(
                "dead",
                &[format!("127.0.0.1:{dead_port}")],
                json!({ "connect_timeout": "1s" }),
            )
            .cluster_with(
                "dns",
                &["nosuch.invalid:80"],
                json!({ "discovery": "dns", "connect_timeout": "1s" }),
            )
            .build();
        let proxy = ProxyProcess::start_and_wait(&yaml, &["--concurrency", "2"], &[port]).await?;
        let pid = proxy.pid();
        Ok(Self {
            ledger,
            fault,
            proxy,
            port,
            dead_port,
            pid,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path_and_query)
    }

    /// RELIABILITY "Healthy afterwards": `curl .../` answers 200 in < 0.1 s
    /// and the proxy is the same, still running process.
    pub async fn assert_healthy(&mut self, context: &str) {
        assert!(
            self.proxy.is_running(),
            "{context}: proxy (pid {}) exited; stderr:\n{}",
            self.pid,
            self.proxy.stderr_text()
        );
        assert_eq!(self.proxy.pid(), self.pid, "{context}: proxy pid changed");
        let (code, secs) = curl_status(&self.url("/"), &[])
            .await
            .expect("running curl");
        assert_eq!(code, 200, "{context}: healthy check got {code}");
        assert!(
            secs < 0.1,
            "{context}: healthy check took {secs} s (limit 0.1 s)"
        );
        assert!(self.proxy.is_running(), "{context}: proxy exited");
    }

    /// The ledger as JSON lines, for failure messages.
    pub fn ledger_dump(&self) -> String {
        self.ledger.to_jsonl()
    }
}

/// One HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
pub struct OneResponse {
    pub status: Option<u16>,
    /// The response head (status line and fields); see [`OneResponse::header`].
    pub head: String,
    pub body: Vec<u8>,
    /// Everything received (head, body, and anything after).
    pub raw: Vec<u8>,
    pub elapsed: Duration,
}

impl OneResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `request` on a fresh connection and reads exactly one response
/// (head plus a Content-Length or chunked body; else until EOF), without
/// waiting for the connection to close. A reset after part of the reply is
/// tolerated: what arrived is returned. Bounded by `timeout`.
pub async fn one_response(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> anyhow::Result<OneResponse> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    // A server may answer (and close) before reading everything: keep reading.
    let _ = tokio::time::timeout_at(deadline, stream.write_all(request)).await;
    let mut raw = Vec::new();
    let mut eof = false;
    let complete = |raw: &[u8], eof: bool| -> bool {
        let Some(head_end) = find(raw, b"\r\n\r\n") else {
            return eof;
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let body = &raw[head_end + 4..];
        let status_no_body = head
            .get(9..12)
            .is_some_and(|s| s.starts_with('1') || s == "204" || s == "304");
        if status_no_body {
            return true;
        }
        let cl = head.split("\r\n").find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        });
        if let Some(cl) = cl {
            return body.len() >= cl;
        }
        if head.contains("\r\ntransfer-encoding: chunked") {
            return find(body, b"0\r\n\r\n").is_some() || eof;
        }
        eof
    };
    while !complete(&raw, eof) {
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut raw)).await {
            Ok(Ok(0)) | Ok(Err(_)) => eof = true,
            Ok(Ok(_)) => {}
            Err(_) => break,
        }
        if eof {
            break;
        }
    }
    let head_end = find(&raw, b"\r\n\r\n");
    let head = head_end.map_or_else(String::new, |i| {
        String::from_utf8_lossy(&raw[..i]).into_owned()
    });
    let body = head_end.map_or_else(Vec::new, |i| raw[i + 4..].to_vec());
    let status = raw
        .strip_prefix(b"HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse().ok());
    Ok(OneResponse {
        status,
        head,
        body,
        raw,
        elapsed: started.elapsed(),
    })
}

/// `GET PATH HTTP/1.1` with `Host: t` and `extra` header lines (each ending in CRLF).
pub fn get_with(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").into_bytes()
}

/// Number of established TCP connections on this host whose destination
/// port is `port` (`ss -Htn state established "( dport = :PORT )"`).
pub async fn established_to(port: u16) -> anyhow::Result<usize> {
    let filter = format!("( dport = :{port} )");
    let out = tokio::process::Command::new("ss")
        .args(["-Htn", "state", "established", &filter])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(5), out)
        .await
        .context("ss timed out")??;
    anyhow::ensure!(out.status.success(), "ss failed: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count())
}

/// TCP ports in LISTEN state on this host (the `ss -ltn` view, read from
/// /proc/net/tcp and tcp6 so it can be polled cheaply).
pub fn listening_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // fields[1] = local "ADDR:PORT" (hex), fields[3] = state (0A = LISTEN).
            if fields.len() > 3 && fields[3] == "0A" {
                let port = fields[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                ports.extend(port);
            }
        }
    }
    ports
}
