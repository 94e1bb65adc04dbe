//! HTTP/1.1 and HTTP/2 on one port: without TLS the first bytes tell them
//! apart (the HTTP/2 connection preface: h2c prior knowledge); with TLS,
//! ALPN decides.
//!
//! An HTTP/1.1 connection with no request open and no bytes moving for
//! [`PARK_AFTER`] is *parked*: hyper's connection (its 8–16 KiB read and
//! write buffers and the request future's slot) is taken apart and only the
//! socket is kept, until the client sends again. So an idle keep-alive
//! connection costs a socket and a small task, as it does in nginx.

use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Drain;
use super::io::{Activity, ActivityIo};
use crate::identity::server::{PeerIdentity, TlsServer};
use crate::router::{self, Downstream, HttpContext, HttpStats, ObservedBody};
use crate::telemetry::metrics::ActiveGuard;

/// During a drain, an HTTP/1.1 connection quiet for this long is closed.
const DRAIN_QUIET: Duration = Duration::from_millis(300);

/// An HTTP/1.1 connection with no open request, quiet for this long, gives
/// its parser buffers back (see the module docs).
pub const PARK_AFTER: Duration = Duration::from_millis(50);

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Boxed, so that hyper may poll it by `&mut` (parking needs
/// `poll_without_shutdown`) and keeps no room for it between requests.
type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<hyper::Response<OpenBody>, Infallible>> + Send>>;

pub struct HttpServer {
    ctx: Arc<HttpContext>,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    tls: Option<Arc<TlsServer>>,
}

/// Which protocol a connection speaks, when known before its first bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Sniff,
    Http1,
    Http2,
}

impl HttpServer {
    pub fn new(ctx: Arc<HttpContext>, tls: Option<Arc<TlsServer>>) -> Self {
        let limits = ctx.limits;
        let header_bytes = limits.max_request_headers_kb as usize * 1024;
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            // Absolute deadline for the whole header section (slowloris).
            .header_read_timeout(limits.header_read_timeout)
            // The parser's buffer bounds the header section; a little slack
            // for the request line, whose own limit is checked by the router.
            .max_buf_size((header_bytes + 8192).max(8192))
            .max_headers(limits.max_request_headers_count as usize + 1);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .max_header_list_size((header_bytes as u32).max(16 * 1024))
            .initial_stream_window_size(64 * 1024)
            .initial_connection_window_size(1024 * 1024)
            .max_send_buf_size(limits.buffer_kb as usize * 1024);
        Self { ctx, h1, h2, tls }
    }

    pub fn stats(&self) -> &HttpStats {
        &self.ctx.stats
    }

    /// Serves one connection: the TLS handshake first on a `tls:` listener
    /// (a failed one is logged and counted by [`TlsServer`]), then HTTP/1.1
    /// or HTTP/2 (by ALPN with TLS, by the connection preface without).
    pub async fn serve(&self, stream: TcpStream, peer: SocketAddr, drain: Drain) {
        let stats = &self.ctx.stats;
        let _cx = ActiveGuard::new(&stats.downstream_cx_active, &stats.downstream_cx_total);
        let down = Downstream::new(peer);
        match &self.tls {
            None => self.serve_io(stream, down, drain, Protocol::Sniff).await,
            // Boxed: the handshake's state would otherwise make every
            // connection task, TLS or not, as large as itself.
            Some(tls) => Box::pin(self.serve_tls(tls, stream, down, drain)).await,
        }
    }

    async fn serve_tls(
        &self,
        tls: &TlsServer,
        stream: TcpStream,
        mut down: Downstream,
        drain: Drain,
    ) {
        let Some((stream, identity)) = tls
            .accept(stream, self.ctx.limits.header_read_timeout)
            .await
        else {
            return;
        };
        down.is_tls = true;
        down.admission = tls.admission(&identity);
        down.xfcc = xfcc(tls.own_id().as_ref(), &identity);
        down.peer_identity = identity.spiffe_id.as_ref().map(|id| id.to_string());
        let protocol = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        };
        self.serve_io(stream, down, drain, protocol).await;
    }

    async fn serve_io<I>(&self, stream: I, down: Downstream, mut drain: Drain, protocol: Protocol)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let mut io = ActivityIo::new(stream, Arc::clone(&activity));
        let is_http2 = match protocol {
            Protocol::Http1 => false,
            Protocol::Http2 => true,
            Protocol::Sniff => match self.first_bytes(&mut io, &activity, &mut drain, true).await {
                Some(is_http2) => is_http2,
                None => return,
            },
        };
        let down = Arc::new(down);
        // Boxed: the connection task itself stays small, and holds no room
        // for the protocol it does not speak.
        if is_http2 {
            down.is_http2.store(true, Ordering::Relaxed);
            Box::pin(self.serve_h2(io, &activity, down, drain)).await;
        } else {
            Box::pin(self.serve_h1(io, &activity, down, drain)).await;
        }
    }

    /// Waits for the client's next bytes and keeps them for the parser:
    /// `None` if the connection closed, stayed idle for the listener's
    /// `idle_timeout`, or stayed quiet for `DRAIN_QUIET` while the proxy
    /// drains. With `sniff`, reads on until
    /// the bytes are known to be, or not to be, the HTTP/2 preface, and
    /// says which.
    async fn first_bytes<I>(
        &self,
        io: &mut ActivityIo<I>,
        activity: &Activity,
        drain: &mut Drain,
        sniff: bool,
    ) -> Option<bool>
    where
        I: AsyncRead + Unpin,
    {
        let limits = &self.ctx.limits;
        let mut buf = [0u8; H2_PREFACE.len()];
        // While draining, a connection is closed once quiet for
        // DRAIN_QUIET, as a busy one is: closing it at once would reset a
        // request already on its way.
        let mut draining = drain.is_draining();
        let n = loop {
            tokio::select! {
                biased;
                read = io.read(&mut buf) => break read.ok().filter(|&n| n > 0)?,
                _ = drain.signaled(), if !draining => draining = true,
                _ = activity.idle_for(DRAIN_QUIET), if draining => return None,
                _ = activity.idle_for(limits.idle_timeout) => return None,
            }
        };
        let mut len = n;
        if sniff {
            // A preface trickling in is bounded like a request head.
            let deadline = tokio::time::Instant::now() + limits.header_read_timeout;
            while len < buf.len() && buf[..len] == H2_PREFACE[..len] {
                let read = tokio::time::timeout_at(deadline, io.read(&mut buf[len..])).await;
                match read {
                    Ok(Ok(n)) if n > 0 => len += n,
                    _ => return None,
                }
            }
        }
        io.unread(Bytes::copy_from_slice(&buf[..len]));
        Some(sniff && buf[..len] == H2_PREFACE[..])
    }

    fn service(
        &self,
        down: &Arc<Downstream>,
    ) -> impl hyper::service::Service<
        hyper::Request<Incoming>,
        Response = hyper::Response<OpenBody>,
        Error = Infallible,
        Future = ServiceFuture,
    > + Unpin
    + Send
    + 'static {
        let ctx = Arc::clone(&self.ctx);
        let down = Arc::clone(down);
        service_fn(move |req: hyper::Request<Incoming>| {
            down.requests.fetch_add(1, Ordering::Relaxed);
            let open = OpenRequest::new(&down);
            let fut = router::handle(Arc::clone(&ctx), Arc::clone(&down), req);
            Box::pin(async move {
                let resp = fut.await;
                Ok::<_, Infallible>(resp.map(|inner| OpenBody { inner, _open: open }))
            }) as ServiceFuture
        })
    }

    async fn serve_h1<I>(
        &self,
        mut io: ActivityIo<I>,
        activity: &Activity,
        down: Arc<Downstream>,
        mut drain: Drain,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = down.peer;
        let idle_timeout = self.ctx.limits.idle_timeout;
        let mut service = self.service(&down);
        let mut draining = false;
        // After a park that found half a request head buffered, no parking
        // again until that request arrives: parking restarts the parser's
        // header deadline.
        let mut park_after_request: Option<u64> = None;
        loop {
            // Woken while draining: its responses must say `Connection: close`.
            if !draining && drain.is_draining() {
                draining = true;
                down.draining.store(true, Ordering::Relaxed);
            }
            // Boxed, so that a parked connection's task does not keep room
            // for it.
            let mut conn = Box::new(self.h1.serve_connection(TokioIo::new(io), service));
            let mut closing = false;
            let mut parking = false;
            let ended = loop {
                let may_park = !draining
                    && park_after_request.is_none_or(|n| down.requests.load(Ordering::Relaxed) > n);
                tokio::select! {
                    res = poll_fn(|cx| conn.poll_without_shutdown(cx)) => break res,
                    _ = drain.signaled(), if !draining => {
                        // Closing an idle keep-alive connection at once would
                        // reset a request already on its way. Responses now
                        // carry `Connection: close` (hyper closes after
                        // them), and a connection that stays quiet is closed
                        // below.
                        draining = true;
                        down.draining.store(true, Ordering::Relaxed);
                    }
                    _ = activity.idle_for(DRAIN_QUIET), if draining && !closing => {
                        closing = true;
                        Pin::new(&mut *conn).graceful_shutdown();
                    }
                    _ = quiet_and_done(activity, &down), if may_park && !closing && !parking => {
                        // Hyper closes an idle connection's state at once,
                        // and hands the socket back without shutting it.
                        parking = true;
                        Pin::new(&mut *conn).graceful_shutdown();
                    }
                    _ = activity.idle_for(idle_timeout), if !closing => {
                        tracing::debug!(%peer, "downstream connection idle; closing");
                        closing = true;
                        Pin::new(&mut *conn).graceful_shutdown();
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
                return;
            }
            let parts = conn.into_parts();
            let mut inner = parts.io.into_inner();
            inner.unread(parts.read_buf);
            let upgrade = down.upgrade.lock().ok().and_then(|mut u| u.take());
            if let Some(upstream) = upgrade {
                return tunnel(inner, upstream).await;
            }
            if !parking || closing {
                let _ = tokio::time::timeout(DRAIN_QUIET, inner.shutdown()).await;
                return;
            }
            service = parts.service;
            if inner.has_unread() {
                park_after_request = Some(down.requests.load(Ordering::Relaxed));
            } else {
                let parked = ActiveGuard::gauge(&self.ctx.stats.downstream_cx_parked);
                let woke = self
                    .first_bytes(&mut inner, activity, &mut drain, false)
                    .await;
                drop(parked);
                if woke.is_none() {
                    let _ = tokio::time::timeout(DRAIN_QUIET, inner.shutdown()).await;
                    return;
                }
            }
            io = inner;
        }
    }

    async fn serve_h2<I>(
        &self,
        io: ActivityIo<I>,
        activity: &Activity,
        down: Arc<Downstream>,
        mut drain: Drain,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = down.peer;
        let idle_timeout = self.ctx.limits.idle_timeout;
        let conn = self
            .h2
            .serve_connection(TokioIo::new(io), self.service(&down));
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
                    }
                    return;
                }
                // HTTP/2 gets GOAWAY at once: its clients handle it cleanly.
                _ = drain.signaled(), if !closing => {
                    closing = true;
                    down.draining.store(true, Ordering::Relaxed);
                    conn.as_mut().graceful_shutdown();
                }
                _ = activity.idle_for(idle_timeout), if !closing => {
                    tracing::debug!(%peer, "downstream connection idle; closing");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Resolves once no request is open and no bytes moved for [`PARK_AFTER`].
async fn quiet_and_done(activity: &Activity, down: &Downstream) {
    loop {
        activity.idle_for(PARK_AFTER).await;
        if down.open_requests.load(Ordering::Relaxed) == 0 {
            return;
        }
        // A request still open with nothing moving (a long poll): look again later.
        tokio::time::sleep(PARK_AFTER).await;
    }
}

/// Joins the downstream connection to the upstream one after a 101.
async fn tunnel<I>(mut downstream: ActivityIo<I>, upstream: hyper::upgrade::OnUpgrade)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let upstream = match upstream.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
    }
}

/// Counts a request as open until its response body is done or dropped.
struct OpenRequest(Arc<Downstream>);

impl OpenRequest {
    fn new(down: &Arc<Downstream>) -> Self {
        down.open_requests.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(down))
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.open_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// The response body, holding its request open.
    pub struct OpenBody {
        #[pin]
        inner: ObservedBody,
        _open: OpenRequest,
    }
}

impl Body for OpenBody {
    type Data = Bytes;
    type Error = <ObservedBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `By=<our id>;Hash=<sha256 of the peer's leaf>;URI=<peer id>` (Envoy's
/// `x-forwarded-client-cert` format), or nothing without a peer identity.
fn xfcc(own: Option<&mesh_ca::SpiffeId>, peer: &PeerIdentity) -> Option<hyper::http::HeaderValue> {
    let peer_id = peer.spiffe_id.as_ref()?;
    let mut value = String::with_capacity(160);
    if let Some(own) = own {
        value.push_str("By=");
        value.push_str(own.as_str());
        value.push(';');
    }
    if let Some(hash) = &peer.cert_sha256 {
        value.push_str("Hash=");
        value.push_str(hash);
        value.push(';');
    }
    value.push_str("URI=");
    value.push_str(peer_id.as_str());
    hyper::http::HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ListenerKind;
    use crate::router::RouteTable;
    use tokio::io::DuplexStream;

    const CONFIG: &str = r#"
listeners:
  - name: main
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        direct_response: { status: 200, body: "ok" }
"#;

    fn server() -> Arc<HttpServer> {
        let cfg = crate::config::load_str(CONFIG, "test.yaml", std::path::Path::new("."))
            .expect("config");
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
    fn connect(server: &Arc<HttpServer>) -> (DuplexStream, super::super::DrainTrigger) {
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
    ) -> (DuplexStream, super::super::DrainTrigger) {
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

    #[tokio::test(start_paused = true)]
    async fn a_parked_connection_woken_during_a_drain_is_answered_then_closed() {
        let server = server();
        let (mut client, drain) = parked_connection(&server).await;
        drain.start();
        // A request already on its way when the drain began is answered,
        // with `Connection: close`, and the connection then ends.
        tokio::time::sleep(DRAIN_QUIET / 10).await;
        client
            .write_all(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200 ok\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
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
}
