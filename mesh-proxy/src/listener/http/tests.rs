//! In-memory connections through one HTTP server: parking, waking, drain.

use super::*;
use crate::config::ListenerKind;
use crate::router::RouteTable;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const CONFIG: &str = r#"
listeners:
  - name: main
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        direct_response: { status: 200, body: "ok" }
"#;

fn server() -> Arc<HttpServer> {
    let cfg =
        crate::config::load_str(CONFIG, "test.yaml", std::path::Path::new(".")).expect("config");
    let spec = &cfg.listeners[0];
    let ListenerKind::Http { routes } = &spec.kind else {
        panic!("an HTTP listener");
    };
    let table = RouteTable::build(&spec.name, routes, |_| None).expect("routes");
    let ctx = Arc::new(HttpContext {
        listener: Arc::from("main"),
        routes: arc_swap::ArcSwap::from_pointee(table),
        limits: spec.limits,
        trust_forwarded: false,
        stats: HttpStats::default(),
        observe: None,
    });
    Arc::new(HttpServer::new(ctx, None))
}

/// Serves one in-memory connection; returns the client's end and the
/// proxy's drain trigger.
fn connect(server: &Arc<HttpServer>) -> (DuplexStream, crate::listener::DrainTrigger) {
    let (client, conn) = tokio::io::duplex(64 * 1024);
    let (trigger, drain) = Drain::new();
    let server = Arc::clone(server);
    tokio::spawn(async move {
        let down = Downstream::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        server.serve_io(conn, down, drain, Protocol::Sniff).await;
    });
    (client, trigger)
}

/// Reads `n` responses whose body is `ok`.
async fn read_ok(client: &mut DuplexStream, n: usize) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let count = |got: &[u8]| got.windows(6).filter(|w| w == b"\r\n\r\nok").count();
    while count(&got) < n {
        let read = client.read(&mut buf).await.expect("read");
        assert!(read > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..read]);
    }
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), n, "{text}");
    assert!(got.ends_with(b"\r\n\r\nok"), "{text}");
}

fn parked(server: &HttpServer) -> u64 {
    server.stats().downstream_cx_parked.load(Ordering::Relaxed)
}

/// A connection that served one request and has since been parked.
async fn parked_connection(
    server: &Arc<HttpServer>,
) -> (DuplexStream, crate::listener::DrainTrigger) {
    let (mut client, drain) = connect(server);
    client
        .write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    read_ok(&mut client, 1).await;
    assert_eq!(parked(server), 0, "parked while a response was fresh");
    tokio::time::sleep(PARK_AFTER * 2).await;
    assert_eq!(parked(server), 1);
    (client, drain)
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_parked_and_wakes_for_the_next_request() {
    let server = server();
    let (mut client, _drain) = parked_connection(&server).await;

    // Two pipelined requests wake it, and both are answered in order.
    client
        .write_all(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\nGET /c HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    read_ok(&mut client, 2).await;
    assert_eq!(parked(&server), 0);
    tokio::time::sleep(PARK_AFTER * 2).await;
    assert_eq!(parked(&server), 1);
}

#[tokio::test(start_paused = true)]
async fn half_a_request_head_survives_parking_and_the_request_completes() {
    let server = server();
    let (mut client, _drain) = connect(&server);
    client.write_all(b"GET /a HT").await.expect("write");
    // Quiet long enough to park: the buffered half goes back in front
    // of the socket, and no second park follows until the request.
    tokio::time::sleep(PARK_AFTER * 4).await;
    assert_eq!(parked(&server), 0);
    client
        .write_all(b"TP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    read_ok(&mut client, 1).await;
    tokio::time::sleep(PARK_AFTER * 2).await;
    assert_eq!(parked(&server), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_still_open_keeps_its_connection_unparked() {
    let server = server();
    let (mut client, _drain) = connect(&server);
    // A body announced and not sent: the request stays open with
    // nothing moving, as a long poll would.
    client
        .write_all(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(PARK_AFTER * 4).await;
    assert_eq!(parked(&server), 0);
}

/// Sends a request on `client`: it must be answered 200 with
/// `Connection: close`, and the connection then end.
async fn answered_then_closed(client: &mut DuplexStream) {
    client
        .write_all(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.expect("read");
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200 ok\r\n"), "{text:?}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_parked_connection_woken_during_a_drain_is_answered_then_closed() {
    let server = server();
    let (mut client, drain) = parked_connection(&server).await;
    drain.start();
    // A request already on its way when the drain began is answered,
    // with `Connection: close`, and the connection then ends.
    tokio::time::sleep(DRAIN_QUIET / 10).await;
    answered_then_closed(&mut client).await;
}

#[tokio::test(start_paused = true)]
async fn a_parked_connection_left_quiet_during_a_drain_is_closed() {
    let server = server();
    let (mut client, drain) = parked_connection(&server).await;
    drain.start();
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.expect("read");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(started.elapsed() <= DRAIN_QUIET, "{:?}", started.elapsed());
    assert_eq!(parked(&server), 0);
}

/// The O16 race: a keep-alive connection quiet for a while before the
/// drain began was closed at once, resetting the request its client sent
/// a few milliseconds later. Its grace now runs from the drain.
#[tokio::test(start_paused = true)]
async fn a_connection_quiet_before_the_drain_still_answers_a_request_sent_just_after_it() {
    let server = server();
    let (mut client, drain) = parked_connection(&server).await;
    tokio::time::sleep(DRAIN_QUIET * 3).await;
    drain.start();
    tokio::time::sleep(Duration::from_millis(5)).await;
    answered_then_closed(&mut client).await;
}

/// A request that crosses the close (sent after the drain grace ran out)
/// meets an orderly end of stream, not a reset: the proxy reads what
/// arrives after its FIN until the client closes.
#[tokio::test(start_paused = true)]
async fn a_request_crossing_the_drain_close_is_not_met_by_a_reset() {
    let server = server();
    let (mut client, drain) = parked_connection(&server).await;
    drain.start();
    let mut first = [0u8; 1];
    let n = client.read(&mut first).await.expect("the FIN");
    assert_eq!(n, 0);
    // The client had not seen the FIN yet when it wrote: the write lands.
    client
        .write_all(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("a write after the FIN is read, not refused");
}

/// An HTTP/2 HEADERS frame without END_HEADERS, then silence: closed at
/// the listener's `header_read_timeout` (10 s here), not held until the
/// idle timeout (an hour) as h2 alone would.
#[tokio::test(start_paused = true)]
async fn an_http2_header_block_left_open_is_closed_at_the_header_read_timeout() {
    let server = server();
    let (mut client, _drain) = connect(&server);
    let mut hello = H2_PREFACE.to_vec();
    hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS
    // HEADERS on stream 1, END_STREAM but no END_HEADERS: `:method GET`.
    hello.extend_from_slice(&[0, 0, 1, 0x1, 0x1, 0, 0, 0, 1, 0x82]);
    client.write_all(&hello).await.expect("write");
    let started = tokio::time::Instant::now();
    let limit = server.ctx.limits.header_read_timeout;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(limit * 2, client.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "still open after {:?}", limit * 2);
    let took = started.elapsed();
    assert!(
        took >= limit && took <= limit + Duration::from_secs(1),
        "{took:?}"
    );
}

/// A whole request over HTTP/2 still gets its answer, and the connection
/// stays open past the header timeout while no block is open.
#[tokio::test(start_paused = true)]
async fn complete_http2_header_blocks_are_not_cut() {
    let server = server();
    let (client, _drain) = connect(&server);
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(client),
    )
    .await
    .expect("handshake");
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = hyper::Request::get("http://t/a")
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("request");
        let resp = send.send_request(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(server.ctx.limits.header_read_timeout * 2).await;
    }
}
