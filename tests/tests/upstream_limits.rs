//! End-to-end: an upstream response header section beyond the limit
//! (60 KiB, Envoy's `max_response_headers_kb` default) is a 502 `UPE`
//! local reply, never forwarded, and that connection is not reused
//! (RELIABILITY U5; issue 12 item 9).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mesh_tests::{ConfigBuilder, ProxyProcess, curl, free_port, route_prefix};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A response head of about `kib` KiB: 2 KiB headers, then a small body.
fn big_head(kib: usize) -> Vec<u8> {
    let mut head = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n".to_vec();
    for i in 0..kib / 2 {
        head.extend_from_slice(format!("x-big-{i}: {}\r\n", "v".repeat(2040)).as_bytes());
    }
    head.extend_from_slice(b"\r\nok\n");
    head
}

/// A raw HTTP/1.1 upstream answering every request with a `kib` KiB head;
/// counts connections and requests.
async fn bighead_upstream(kib: usize) -> (std::net::SocketAddr, Arc<[AtomicU64; 2]>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let c = Arc::clone(&counts);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c[0].fetch_add(1, Ordering::SeqCst);
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        c[1].fetch_add(1, Ordering::SeqCst);
                        if s.write_all(&big_head(kib)).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, counts)
}

/// `(status, lowercase head)` of a GET through curl, head size included.
async fn get(url: &str) -> (u16, String, usize) {
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-w",
        "%{http_code} %{size_header}",
        url,
    ])
    .await
    .expect("curl");
    let (head, tail) = out
        .stdout
        .rsplit_once("\r\n\r\n")
        .unwrap_or(("", &out.stdout));
    let mut tail = tail.split_whitespace();
    let code = tail.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let size = tail.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, head.to_ascii_lowercase(), size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upstream_response_head_is_a_502_upe_and_its_connection_is_not_reused() {
    let (big, big_counts) = bighead_upstream(100).await;
    let (fits, fits_counts) = bighead_upstream(40).await;
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener(
            "main",
            port,
            vec![route_prefix("/big", "big"), route_prefix("/fits", "fits")],
        )
        .cluster("big", &[big])
        .cluster("fits", &[fits]);
    let _proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts");

    for _ in 0..2 {
        let (status, head, size) = get(&format!("http://127.0.0.1:{port}/big")).await;
        assert_eq!(status, 502, "{head}");
        assert!(head.contains("x-mesh-error: upe"), "{head}");
        assert!(!head.contains("x-big-"), "the oversized head was forwarded");
        assert!(size < 4096, "{size} bytes of head reached the client");
    }
    assert_eq!(big_counts[1].load(Ordering::SeqCst), 2);
    assert_eq!(
        big_counts[0].load(Ordering::SeqCst),
        2,
        "a connection that sent an oversized head was used again"
    );

    // A 40 KiB head is within the limit, and its connection is reused.
    for _ in 0..2 {
        let (status, head, _) = get(&format!("http://127.0.0.1:{port}/fits")).await;
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("x-big-19:"), "{head}");
    }
    assert_eq!(fits_counts[0].load(Ordering::SeqCst), 1);
    assert_eq!(fits_counts[1].load(Ordering::SeqCst), 2);
}

/// The same over HTTP/2 (h2c upstream): the header list is refused by the
/// limit the proxy advertises, 502 `UPE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_http2_response_header_list_is_a_502_upe() {
    use hyper::service::service_fn;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let svc = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                let mut resp = hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"ok\n"),
                ));
                for i in 0..50 {
                    let name = http::HeaderName::try_from(format!("x-big-{i}")).expect("name");
                    let value = http::HeaderValue::try_from("v".repeat(2040)).expect("value");
                    resp.headers_mut().insert(name, value);
                }
                Ok::<_, Infallible>(resp)
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc),
            );
        }
    });
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "h2")])
        .cluster_with("h2", &[addr], json!({"protocol": "http2"}));
    let _proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts");
    let (status, head, _) = tokio::time::timeout(
        Duration::from_secs(10),
        get(&format!("http://127.0.0.1:{port}/")),
    )
    .await
    .expect("answered");
    assert_eq!(status, 502, "{head}");
    assert!(head.contains("x-mesh-error: upe"), "{head}");
}
