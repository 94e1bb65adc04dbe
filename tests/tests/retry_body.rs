//! End-to-end: a route with retries streams the request body as it arrives
//! and keeps only its first 64 KiB for replay (SPEC §3 Retries, issue 12
//! item 8). Raw upstreams answer before the body is complete, or reset in
//! the middle of it; the ledger proves what a replay carried.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mesh_tests::{
    ConfigBuilder, JsonExt, LedgerUpstream, ProxyProcess, curl, free_port, route_prefix,
    sha256_hex, wait_until_async,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a raw upstream does with each connection once it has read the
/// request head.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers at once (before any body byte), then reads and drops the rest.
    Answer(&'static str),
    /// Reads `n` body bytes, then resets the connection (SO_LINGER 0).
    ResetAfter(usize),
}

/// A raw HTTP/1.1 upstream on 127.0.0.1: counts connections and answers.
struct RawUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let (c, a) = (Arc::clone(&connections), Arc::clone(&answered));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, behaviour, Arc::clone(&a)));
            }
        });
        Self {
            addr,
            connections,
            answered,
            task,
        }
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour, answered: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    match behaviour {
        Behaviour::Answer(status) => {
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: 6\r\nconnection: close\r\n\r\nearly\n"
            );
            if stream.write_all(resp.as_bytes()).await.is_ok() {
                answered.fetch_add(1, Ordering::SeqCst);
            }
            // Read and drop the rest (bounded), as the acceptance's `early` peer.
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        Behaviour::ResetAfter(n) => {
            let mut body = buf.len() - head_end;
            while body < n {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => body += k,
                }
            }
            answered.fetch_add(1, Ordering::SeqCst);
            let std = stream.into_std().expect("std stream");
            let sock = socket2::Socket::from(std);
            let _ = sock.set_linger(Some(Duration::ZERO));
            drop(sock);
        }
    }
}

fn retry(on: &[&str]) -> serde_json::Value {
    json!({"attempts": 2, "on": on, "backoff": {"base": "10ms", "max": "50ms"}})
}

async fn start(cfg: &ConfigBuilder, port: u16) -> ProxyProcess {
    ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts")
}

/// Sends the head of a chunked request and its first chunk; the caller
/// decides when (and whether) the rest follows.
async fn start_chunked(port: u16, method: &str, path: &str, first: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: t\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
        first.len()
    )
    .into_bytes();
    req.extend_from_slice(first);
    req.extend_from_slice(b"\r\n");
    s.write_all(&req).await.expect("write head");
    s
}

/// Reads one response head (and its content-length body) within `limit`;
/// `None` when nothing complete arrived.
async fn read_response(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= i + 4 + len {
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

/// Acceptance `stream_retry` (sec_probes.py `stream-early`): the upstream
/// answers 200 right after the request head while the client still holds
/// the rest of its chunked body; through a route with a retry policy the
/// client gets that 200 as fast as through a plain route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_route_streams_the_body_and_passes_an_early_answer_through() {
    let early = RawUpstream::start(Behaviour::Answer("200 OK")).await;
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener(
            "edge",
            port,
            vec![
                route_prefix("/stream/plain", "early"),
                route_prefix("/stream/retry", "early")
                    .with("retry", retry(&["connect-failure", "5xx"])),
            ],
        )
        .cluster("early", &[early.addr]);
    let _proxy = start(&cfg, port).await;
    for path in ["/stream/plain/up", "/stream/retry/up"] {
        let t0 = Instant::now();
        let mut s = start_chunked(port, "POST", path, b"hello").await;
        let resp = read_response(&mut s, Duration::from_secs(3)).await;
        let took = t0.elapsed();
        let resp = resp.unwrap_or_else(|| panic!("{path}: no response within 3 s"));
        assert!(resp.starts_with("HTTP/1.1 200"), "{path}: {resp}");
        assert!(resp.ends_with("early\n"), "{path}: {resp}");
        assert!(took < Duration::from_secs(1), "{path}: took {took:?}");
    }
    assert_eq!(early.answered(), 2);
}

/// A retry while the client is still sending: the first endpoint answers
/// 503 after the head, the retry replays what was kept and then carries
/// on with the bytes the client sends afterwards; the ledger receives the
/// whole body, byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_the_body_streams_replays_the_kept_bytes_then_continues() {
    let failing = RawUpstream::start(Behaviour::Answer("503 Service Unavailable")).await;
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    // Round robin starts at the first endpoint: the 503 one.
    let cfg = ConfigBuilder::new()
        .http_listener(
            "main",
            port,
            vec![route_prefix("/", "svc").with("retry", retry(&["5xx"]))],
        )
        .cluster("svc", &[failing.addr, ledger.addr()]);
    let _proxy = start(&cfg, port).await;

    let first = b"first part, sent before any answer;";
    let mut s = start_chunked(port, "PUT", "/upload", first).await;
    let answered = wait_until_async(Duration::from_secs(5), Duration::from_millis(10), || {
        failing.answered() >= 1
    })
    .await;
    assert!(
        answered,
        "the upstream never saw the request while its body was incomplete (held back until the end?)"
    );
    let rest = b" second part, sent after the first try failed";
    let mut tail = format!("{:x}\r\n", rest.len()).into_bytes();
    tail.extend_from_slice(rest);
    tail.extend_from_slice(b"\r\n0\r\n\r\n");
    s.write_all(&tail).await.expect("write rest");
    let resp = read_response(&mut s, Duration::from_secs(5))
        .await
        .expect("a response");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-mesh-attempt-count: 2"),
        "{resp}"
    );
    let entries = ledger.entries();
    assert_eq!(entries.len(), 1, "{}", ledger.to_jsonl());
    let whole = [&first[..], &rest[..]].concat();
    assert_eq!(entries[0].body_len, whole.len() as u64);
    assert_eq!(entries[0].body_sha256, sha256_hex(&whole));
    assert!(!entries[0].aborted);
}

fn random_body(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// `(status, lowercase head)` of a curl request with the body in `file`.
async fn curl_body(
    url: &str,
    method: &str,
    file: &std::path::Path,
    chunked: bool,
) -> (u16, String) {
    let data = format!("@{}", file.display());
    let mut args = vec!["-s", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}"];
    args.extend_from_slice(&["-X", method, "--data-binary", &data, "-H", "expect:"]);
    if chunked {
        args.extend_from_slice(&["-H", "transfer-encoding: chunked"]);
    }
    args.push(url);
    let out = curl(&args).await.expect("curl");
    let (head, code) = out.stdout.split_at(out.stdout.len().saturating_sub(3));
    (code.parse().unwrap_or(0), head.to_ascii_lowercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_503_replays_a_small_body_byte_exact_and_a_large_one_is_sent_once() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener(
            "main",
            port,
            vec![route_prefix("/", "up").with("retry", retry(&["5xx"]))],
        )
        .cluster("up", &[ledger.addr()]);
    let _proxy = start(&cfg, port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{port}/status/503");

    // 20 KiB, chunked and with a length: kept, replayed twice, byte-exact.
    let small = random_body(20 * 1024);
    let small_file = dir.path().join("small");
    std::fs::write(&small_file, &small).expect("write");
    for chunked in [true, false] {
        let before = ledger.entries().len();
        let (status, head) = curl_body(&url, "PUT", &small_file, chunked).await;
        assert_eq!(status, 503, "{head}");
        assert!(head.contains("x-mesh-attempt-count: 3"), "{head}");
        let entries = ledger.entries();
        assert_eq!(entries.len() - before, 3, "{}", ledger.to_jsonl());
        for e in &entries[before..] {
            assert_eq!(e.body_sha256, sha256_hex(&small), "chunked={chunked}");
            assert!(!e.aborted);
        }
    }

    // 100 KiB: more than the 64 KiB kept, so once sent it is not sent again.
    let large = random_body(100 * 1024);
    let large_file = dir.path().join("large");
    std::fs::write(&large_file, &large).expect("write");
    let before = ledger.entries().len();
    let (status, head) = curl_body(&url, "PUT", &large_file, true).await;
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("x-mesh-attempt-count: 1"), "{head}");
    let entries = ledger.entries();
    assert_eq!(entries.len() - before, 1, "{}", ledger.to_jsonl());
    assert_eq!(entries[before].body_sha256, sha256_hex(&large));
}

/// A reset in the middle of the body: the POST may have reached the
/// upstream, so it is not sent again; a PUT (idempotent) is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_not_sent_again_after_a_reset_mid_write() {
    let resetting = RawUpstream::start(Behaviour::ResetAfter(4 * 1024)).await;
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener(
            "main",
            port,
            vec![
                route_prefix("/", "up").with("retry", retry(&["connect-failure", "reset", "5xx"])),
            ],
        )
        .cluster("up", &[resetting.addr]);
    let _proxy = start(&cfg, port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("body");
    std::fs::write(&file, random_body(32 * 1024)).expect("write");
    let url = format!("http://127.0.0.1:{port}/upload");

    let (status, head) = curl_body(&url, "POST", &file, true).await;
    assert_eq!(status, 502, "{head}");
    assert!(head.contains("x-mesh-error: ur"), "{head}");
    assert!(head.contains("x-mesh-attempt-count: 1"), "{head}");
    assert_eq!(resetting.connections(), 1, "the POST was sent again");

    let (status, head) = curl_body(&url, "PUT", &file, true).await;
    assert_eq!(status, 502, "{head}");
    assert!(head.contains("x-mesh-attempt-count: 3"), "{head}");
    assert_eq!(resetting.connections(), 4, "the PUT is retried twice");
}

/// A TLS 1.3 upstream whose client verifier trusts another CA: it refuses
/// the proxy's certificate with an alert that reaches the proxy after its
/// handshake looked complete, i.e. after it started writing the request.
async fn refusing_tls_upstream(
    pki: &mesh_ca::testing::TestPki,
    server_id: &str,
) -> (SocketAddr, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let leaf = pki.leaf(server_id);
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
    let mut other_roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.other_bundle_pem().as_bytes()) {
        other_roots.add(c.expect("root")).expect("add root");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(other_roots),
        Arc::clone(&provider),
    )
    .build()
    .expect("verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls 1.3")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handshakes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&handshakes);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Fails (and sends the alert) on the proxy's certificate.
                // The socket is then drained rather than closed with the
                // request unread, which would turn the alert into a reset.
                if let Err((_, mut tcp)) = acceptor.accept(stream).into_fallible().await {
                    let mut sink = [0u8; 4096];
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
                    })
                    .await;
                }
            });
        }
    });
    (addr, handshakes, task)
}

/// A TLS alert after the request started to be written is not a connect
/// failure: a POST is not sent again (a GET, idempotent, is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_not_sent_again_after_a_tls_alert_on_its_first_read() {
    const SERVER: &str = "spiffe://mesh.test/upstream";
    let pki = mesh_ca::testing::TestPki::new("mesh.test");
    let dir = tempfile::tempdir().expect("tempdir");
    let me = pki.write(dir.path(), "me", &pki.leaf("spiffe://mesh.test/me"));
    let (addr, handshakes, task) = refusing_tls_upstream(&pki, SERVER).await;
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .set(
            "identity",
            json!({"cert": me.cert, "key": me.key, "trust_bundle": dir.path().join("ca.crt")}),
        )
        .http_listener(
            "main",
            port,
            vec![
                route_prefix("/", "up").with("retry", retry(&["connect-failure", "reset", "5xx"])),
            ],
        )
        .cluster_with(
            "up",
            &[addr],
            json!({"tls": {"mode": "mutual", "peer": SERVER}}),
        );
    let _proxy = start(&cfg, port).await;
    let file = dir.path().join("body");
    std::fs::write(&file, b"order=1").expect("write");
    let url = format!("http://127.0.0.1:{port}/orders");

    let (status, head) = curl_body(&url, "POST", &file, false).await;
    assert!(matches!(status, 502 | 503), "{head}");
    assert!(head.contains("x-mesh-attempt-count: 1"), "{head}");
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        1,
        "the POST was sent again"
    );

    let (status, head) = curl_body(&url, "PUT", &file, false).await;
    assert!(matches!(status, 502 | 503), "{head}");
    assert!(head.contains("x-mesh-attempt-count: 3"), "{head}");
    task.abort();
}

/// A request body the test feeds frame by frame.
struct Fed(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl hyper::body::Body for Fed {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|d| d.map(|d| Ok(hyper::body::Frame::data(d))))
    }
}

/// A bidirectional stream over HTTP/2 end to end (as a bidi gRPC call):
/// the upstream echoes each message as it arrives, and the client sends
/// the next one only after the previous echo came back. Through a route
/// with retries nothing is held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidirectional_http2_stream_flows_through_a_retry_route() {
    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("addr");
    let echo = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            // The response body is the request body, frame by frame.
            let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(req.into_body()))
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc),
            );
        }
    });
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener(
            "main",
            port,
            vec![
                route_prefix("/", "h2").with("retry", retry(&["connect-failure", "reset", "5xx"])),
            ],
        )
        .cluster_with("h2", &[upstream], json!({"protocol": "http2"}));
    let _proxy = start(&cfg, port).await;

    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut client, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let req = hyper::Request::post(format!("http://127.0.0.1:{port}/chat.Chat/Talk"))
        .header("content-type", "application/grpc")
        .body(Fed(rx))
        .expect("request");
    tx.send(bytes::Bytes::from_static(b"ping-1"))
        .await
        .expect("send");
    let resp = tokio::time::timeout(Duration::from_secs(3), client.send_request(req))
        .await
        .expect("response head while the request still streams")
        .expect("response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    for i in 1..=3 {
        let echoed = tokio::time::timeout(Duration::from_secs(3), body.frame())
            .await
            .unwrap_or_else(|_| panic!("message {i} was not echoed while the stream was open"))
            .expect("a frame")
            .expect("no error")
            .into_data()
            .expect("data");
        assert_eq!(echoed, format!("ping-{i}"));
        if i < 3 {
            tx.send(bytes::Bytes::from(format!("ping-{}", i + 1)))
                .await
                .expect("send");
        }
    }
    drop(tx);
    echo.abort();
}
