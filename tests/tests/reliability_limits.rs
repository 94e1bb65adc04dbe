//! RELIABILITY.md acceptance check O6: header count, header size and
//! request-target limits over HTTP/1.1 (status, memory after 1,000
//! repetitions), and an oversized header list over HTTP/2 that must cost the
//! stream, not the connection.

mod reliability_common;

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use reliability_common::*;

const WAIT: Duration = Duration::from_secs(5);

/// `count` header fields in total (Host included).
fn with_header_count(count: usize) -> Vec<u8> {
    let mut extra = String::new();
    for i in 1..count {
        extra.push_str(&format!("X-H{i}: v\r\n"));
    }
    get_with("/o6-count", &extra)
}

/// A request whose whole header section (request line to the blank line)
/// is `total` bytes, made of Host plus one big field.
fn with_header_section(total: usize) -> Vec<u8> {
    let base = get_with("/o6-size", "X-Big: \r\n").len();
    let value = "a".repeat(total - base);
    get_with("/o6-size", &format!("X-Big: {value}\r\n"))
}

/// A request with one header field whose value is `bytes` long.
fn with_one_header(bytes: usize) -> Vec<u8> {
    get_with("/o6-size", &format!("X-Big: {}\r\n", "a".repeat(bytes)))
}

/// A request whose target is `bytes` long.
fn with_target(bytes: usize) -> Vec<u8> {
    let target = format!("/o6-target/{}", "a".repeat(bytes - "/o6-target/".len()));
    get_with(&target, "")
}

async fn status_of(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Option<u16>> {
    Ok(one_response(addr, request, WAIT).await?.status)
}

/// O6 over HTTP/1.1: 101 fields → 431, 99 → 200; a 61 KiB field → 431, a
/// 59 KiB header section → 200; a 9 KiB target → 414, 7 KiB → 200. Then the
/// rejected ones 1,000 times each: RSS grows < 5 MiB and the proxy is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o6_header_and_target_limits_hold_without_memory_growth() -> anyhow::Result<()> {
    let mut mesh = Mesh::start().await?;
    let addr = mesh.addr();
    let too_many = with_header_count(101);
    let too_big = with_one_header(61 * 1024);
    let too_long = with_target(9 * 1024);
    assert_eq!(with_header_section(59 * 1024).len(), 59 * 1024);
    assert_eq!(
        with_target(7 * 1024).len(),
        get_with("", "").len() + 7 * 1024
    );

    let cases: [(&str, Vec<u8>, u16); 6] = [
        ("101 header fields", too_many.clone(), 431),
        ("99 header fields", with_header_count(99), 200),
        ("one 61 KiB header", too_big.clone(), 431),
        ("59 KiB header section", with_header_section(59 * 1024), 200),
        ("9 KiB target", too_long.clone(), 414),
        ("7 KiB target", with_target(7 * 1024), 200),
    ];
    let mut failures = Vec::new();
    for (name, request, want) in &cases {
        let got = status_of(addr, request).await?;
        if got != Some(*want) {
            failures.push(format!("{name}: expected {want}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "limits: {failures:#?}");
    assert_eq!(
        mesh.ledger.count_target_contains("/o6-"),
        3,
        "exactly the three accepted requests reach the ledger:\n{}",
        mesh.ledger_dump()
    );

    let rss_before = mesh.proxy.rss_kib()?;
    let rejected = Arc::new([(too_many, 431), (too_big, 431), (too_long, 414)]);
    // Four clients in parallel, 1,000 repetitions of each rejected request.
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let rejected = Arc::clone(&rejected);
        tasks.spawn(async move {
            let mut wrong = Vec::new();
            for _ in 0..250 {
                for (request, want) in rejected.iter() {
                    match status_of(addr, request).await {
                        Ok(Some(s)) if s == *want => {}
                        other => wrong.push(format!("worker {worker}: want {want}, got {other:?}")),
                    }
                }
            }
            wrong
        });
    }
    let mut wrong = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        wrong.extend(joined?);
    }
    assert!(
        wrong.is_empty(),
        "{} of 3,000 repeated rejections were wrong, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let rss_after = mesh.proxy.rss_kib()?;
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 5 * 1024,
        "RSS grew by {growth} KiB ({rss_before} → {rss_after} KiB) over 3,000 rejected requests"
    );
    mesh.assert_healthy("after 3,000 rejected requests").await;
    assert_eq!(
        mesh.ledger.count_target_contains("/o6-"),
        3,
        "a rejected request reached the ledger"
    );
    Ok(())
}

/// O6 over HTTP/2 (h2c prior knowledge): a 70 KiB header list gets a stream
/// reset or 431, and the same connection then serves a normal request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o6_h2_oversized_header_list_resets_only_the_stream() -> anyhow::Result<()> {
    let mesh = Mesh::start().await?;
    let stream = tokio::net::TcpStream::connect(mesh.addr()).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);

    // 70 fields of 1 KiB values: 70 KiB of header list (more with names and
    // the 32-byte per-field overhead of RFC 9113 §6.5.2).
    let mut big = http::Request::builder().uri(mesh.url("/o6-h2-big"));
    for i in 0..70 {
        big = big.header(format!("x-big-{i:02}"), "a".repeat(1024));
    }
    let big = big.body(Empty::<Bytes>::new())?;
    let outcome = tokio::time::timeout(WAIT, sender.send_request(big)).await?;
    match outcome {
        Ok(resp) => assert_eq!(
            resp.status(),
            431,
            "a 70 KiB header list must get 431 or a stream reset"
        ),
        Err(e) => {
            let h2 = e
                .source()
                .and_then(|s| s.downcast_ref::<h2::Error>())
                .unwrap_or_else(|| panic!("not an HTTP/2 error: {e:?}"));
            assert!(
                h2.is_reset() && h2.is_remote(),
                "expected a stream reset from the proxy, got {h2:?} ({e})"
            );
        }
    }

    tokio::time::timeout(WAIT, sender.ready())
        .await?
        .map_err(|e| anyhow::anyhow!("connection unusable after the reset: {e:?}"))?;
    let normal = http::Request::builder()
        .uri(mesh.url("/o6-h2-normal"))
        .body(Empty::<Bytes>::new())?;
    let resp = tokio::time::timeout(WAIT, sender.send_request(normal)).await??;
    assert_eq!(resp.status(), 200, "normal request on the same connection");
    let body = resp.into_body().collect().await?.to_bytes();
    assert!(!body.is_empty());
    assert!(!conn.is_finished(), "the connection closed");
    assert_eq!(
        mesh.ledger.count_target_contains("/o6-h2-normal"),
        1,
        "{}",
        mesh.ledger_dump()
    );
    Ok(())
}
