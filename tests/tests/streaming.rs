//! End-to-end: 1 GiB up and 1 GiB down through the proxy, streamed with
//! backpressure: checksums match and the proxy's memory stays near idle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use mesh_tests::{
    ConfigBuilder, LedgerUpstream, ProxyProcess, big_body_sha256, free_port, route_prefix,
};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

/// Samples the proxy's RSS until stopped; returns the maximum seen (KiB).
fn spawn_rss_sampler(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let max = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            if let Some(kib) = rss_kib(pid) {
                max.fetch_max(kib, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        max.load(Ordering::Relaxed)
    })
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn h1_client(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>,
> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    tx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_up_and_down_streams_with_flat_memory() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "up")])
        .cluster("up", &[ledger.addr()]);
    let proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(
        mesh_tests::curl_status(&format!("http://{addr}/warmup"), &[])
            .await
            .expect("curl")
            .0,
        200
    );
    let idle = rss_kib(proxy.pid()).expect("rss");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_rss_sampler(proxy.pid(), Arc::clone(&stop));

    // Upload: a streamed body whose bytes vary by chunk, hashed as sent.
    let pattern: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let pattern = Bytes::from(pattern);
    let producer = tokio::spawn(async move {
        let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
        for i in 0..(GIB / CHUNK as u64) {
            let mut chunk = pattern.to_vec();
            chunk[..8].copy_from_slice(&i.to_le_bytes());
            hasher.update(&chunk);
            if body_tx
                .send(Ok(Frame::data(Bytes::from(chunk))))
                .await
                .is_err()
            {
                break;
            }
        }
        hasher
    });
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let body = StreamBody::new(tokio_stream_from(body_rx));
    let req = hyper::Request::post("/upload")
        .header("host", "t")
        .header("content-length", GIB.to_string())
        .body(body)
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(120), tx.send_request(req))
        .await
        .expect("upload in time")
        .expect("response");
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.expect("body");
    let sent = producer.await.expect("producer");
    let sent_hex: String = sent
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let entry = ledger
        .entries()
        .into_iter()
        .find(|e| e.target == "/upload")
        .expect("ledger entry");
    assert!(!entry.aborted);
    assert_eq!(entry.body_len, GIB);
    assert_eq!(entry.body_sha256, sent_hex);

    // Download: hash while reading.
    let mut tx = h1_client(addr).await;
    let req = hyper::Request::get(format!("/big?bytes={GIB}"))
        .header("host", "t")
        .body(StreamBody::new(futures_util::stream::iter(Vec::new())))
        .expect("request");
    let resp = tx.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = ring::digest::Context::new(&ring::digest::SHA256);
    let mut n = 0u64;
    let download = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                n += data.len() as u64;
                got.update(&data);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), download)
        .await
        .expect("download in time");
    assert_eq!(n, GIB);
    let got_hex: String = got
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got_hex, big_body_sha256(GIB));

    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await.expect("sampler");
    let growth = peak.saturating_sub(idle);
    eprintln!("proxy RSS idle {idle} KiB, peak {peak} KiB, growth {growth} KiB");
    assert!(
        growth < 8 * 1024,
        "proxy RSS grew {growth} KiB while streaming 2 GiB (idle {idle} KiB, peak {peak} KiB)"
    );
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
