//! End-to-end: a stalled access-log sink cannot grow the proxy's memory
//! beyond the queue's byte budget (16 MiB), however large the headers the
//! records carry (issue 12 item 10).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use mesh_tests::{ConfigBuilder, ProxyProcess, admin_stat, free_port, wait_until_ok};
use serde_json::json;

const BUDGET_KIB: u64 = 16 * 1024;
/// Allocator and connection buffers beyond the queued records.
const SLACK_KIB: u64 = 8 * 1024;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `n` GETs with a User-Agent of `ua_len` bytes on one keep-alive connection.
async fn send(port: u16, n: usize, ua_len: usize) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let ua = "u".repeat(ua_len);
    for _ in 0..n {
        let req = hyper::Request::get("/")
            .header("host", "t")
            .header("user-agent", ua.as_str())
            .body(Empty::<Bytes>::new())
            .expect("request");
        // A keep-alive connection takes the next request once it has
        // finished the previous exchange.
        tx.ready().await.expect("connection ready");
        let resp = tx.send_request(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.expect("body");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_access_log_with_50_kb_headers_grows_memory_by_at_most_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("access.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // A reader that holds the FIFO open and never reads: once the pipe's
    // 64 KiB are full, every write of the access log writer blocks.
    let mut reader = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec sleep 120 < '{}'", fifo.display()))
        .kill_on_drop(true)
        .spawn()
        .expect("reader");
    let (port, admin) = (free_port(), free_port());
    let cfg = ConfigBuilder::new()
        .admin(admin)
        .http_listener(
            "main",
            port,
            vec![mesh_tests::route_prefix_direct("/", 200, "ok")],
        )
        .set("access_log", json!([{"path": fifo, "format": "text"}]));
    let proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port, admin])
        .await
        .expect("proxy starts");
    let pid = proxy.pid();

    // Warm up (connections, buffers, allocator) and fill the pipe.
    let warm = tokio::spawn(send(port, 50, 50_000)).await;
    assert!(
        warm.is_ok(),
        "warm-up failed; proxy log:\n{}",
        proxy.stderr_text()
    );
    let before = rss_kib(pid).expect("rss");

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // 2,000 records of 50 KB: 100 MB if the queue held them all.
    let clients: Vec<_> = (0..4)
        .map(|_| tokio::spawn(send(port, 500, 50_000)))
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    // Each record is queued or dropped when its response ends; wait until
    // the proxy has counted them all.
    let done = wait_until_ok(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { admin_stat(admin, "http.main.downstream_rq_total").await >= Some(2050) },
    )
    .await;
    assert!(done, "the proxy did not count every request");
    stop.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let after = rss_kib(pid).expect("rss").max(peak.load(Ordering::Relaxed));
    let grew = after.saturating_sub(before);
    eprintln!("rss before {before} KiB, peak/after {after} KiB, grew {grew} KiB");
    assert!(
        grew < BUDGET_KIB + SLACK_KIB,
        "RSS grew by {grew} KiB with a stalled access log (budget {BUDGET_KIB} KiB)"
    );
    let over = admin_stat(admin, "access_log.dropped_over_budget").await;
    assert!(
        over.is_some_and(|n| n >= 1500),
        "records beyond the budget are dropped and counted: {over:?}"
    );
    let prometheus =
        mesh_tests::curl(&["-s", &format!("http://127.0.0.1:{admin}/stats/prometheus")])
            .await
            .expect("prometheus");
    assert!(
        prometheus.stdout.contains("access_log_dropped_over_budget"),
        "not in /stats/prometheus"
    );
    let _ = reader.start_kill();
    drop(proxy);
}
