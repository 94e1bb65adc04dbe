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
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

mod body;
mod h2watch;
mod park;
mod upgrade;

use body::{OpenBody, OpenRequest};
use h2watch::{BlockClock, FrameWatch, block_stalled};

use super::Drain;
use super::io::{Activity, ActivityIo};
use crate::identity::server::{PeerIdentity, TlsServer};
use crate::router::{self, Downstream, HttpContext, HttpStats};
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
        // DRAIN_QUIET from when it saw the drain begin, as a busy one is:
        // closing it at once would reset a request already on its way.
        let mut drain_seen = drain.is_draining().then(tokio::time::Instant::now);
        let n = loop {
            tokio::select! {
                biased;
                read = io.read(&mut buf) => break read.ok().filter(|&n| n > 0)?,
                _ = drain.signaled(), if drain_seen.is_none() => drain_seen = Some(tokio::time::Instant::now()),
                _ = drain_quiet(activity, drain_seen), if drain_seen.is_some() => return None,
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
                Ok::<_, Infallible>(resp.map(|inner| OpenBody::new(inner, open)))
            }) as ServiceFuture
        })
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
        let limits = &self.ctx.limits;
        let blocks = BlockClock::new();
        let io = FrameWatch::new(io, Arc::clone(&blocks));
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
                _ = activity.idle_for(limits.idle_timeout), if !closing => {
                    tracing::debug!(%peer, "downstream connection idle; closing");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                // No GOAWAY: h2 would wait for the rest of the block.
                _ = block_stalled(&blocks, limits.header_read_timeout) => {
                    tracing::debug!(%peer, "HTTP/2 header block open for header_read_timeout; connection closed");
                    return;
                }
            }
        }
    }
}

/// Resolves once the connection was quiet for [`DRAIN_QUIET`], counted
/// from when it saw the drain begin (`since`) at the earliest: a connection
/// quiet for a while before the drain still gets the whole grace.
async fn drain_quiet(activity: &Activity, since: Option<tokio::time::Instant>) {
    if let Some(since) = since {
        tokio::time::sleep_until(since + DRAIN_QUIET).await;
    }
    activity.idle_for(DRAIN_QUIET).await;
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
mod tests;
