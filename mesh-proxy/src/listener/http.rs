//! HTTP/1.1 and HTTP/2 on one port: hyper's auto builder reads the HTTP/2
//! connection preface to pick the protocol (h2c prior knowledge); with TLS,
//! ALPN will decide.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use super::Drain;
use super::io::{Activity, ActivityIo};
use crate::identity::server::{PeerIdentity, TlsServer};
use crate::router::{self, Downstream, HttpContext, HttpStats};
use crate::telemetry::metrics::ActiveGuard;

/// During a drain, an HTTP/1.1 connection quiet for this long is closed.
const DRAIN_QUIET: std::time::Duration = std::time::Duration::from_millis(300);

pub struct HttpServer {
    ctx: Arc<HttpContext>,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<Arc<TlsServer>>,
}

impl HttpServer {
    pub fn new(ctx: Arc<HttpContext>, tls: Option<Arc<TlsServer>>) -> Self {
        let limits = ctx.limits;
        let header_bytes = limits.max_request_headers_kb as usize * 1024;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Absolute deadline for the whole header section (slowloris).
            .header_read_timeout(limits.header_read_timeout)
            // The parser's buffer bounds the header section; a little slack
            // for the request line, whose own limit is checked by the router.
            .max_buf_size((header_bytes + 8192).max(8192))
            .max_headers(limits.max_request_headers_count as usize + 1);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .max_header_list_size((header_bytes as u32).max(16 * 1024))
            .initial_stream_window_size(64 * 1024)
            .initial_connection_window_size(1024 * 1024)
            .max_send_buf_size(limits.buffer_kb as usize * 1024);
        Self { ctx, builder, tls }
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
        let mut down = Downstream::new(peer);
        let Some(tls) = &self.tls else {
            return self.serve_io(stream, down, drain).await;
        };
        let Some((stream, identity)) = tls
            .accept(stream, self.ctx.limits.header_read_timeout)
            .await
        else {
            return;
        };
        down.is_tls = true;
        down.is_allowed = identity.is_allowed;
        down.xfcc = xfcc(tls.own_id().as_ref(), &identity);
        down.peer_identity = identity.spiffe_id.as_ref().map(|id| id.to_string());
        self.serve_io(stream, down, drain).await;
    }

    async fn serve_io<I>(&self, stream: I, down: Downstream, mut drain: Drain)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let peer = down.peer;
        let activity = Activity::new();
        let io = TokioIo::new(ActivityIo::new(stream, Arc::clone(&activity)));
        let down = Arc::new(down);
        let conn_state = Arc::clone(&down);
        let ctx = Arc::clone(&self.ctx);
        let service = service_fn(move |req: hyper::Request<Incoming>| {
            let fut = router::handle(Arc::clone(&ctx), Arc::clone(&down), req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = self.builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let idle_timeout = self.ctx.limits.idle_timeout;
        let mut closing = false;
        let mut draining = false;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
                    }
                    return;
                }
                _ = drain.signaled(), if !draining && !closing => {
                    draining = true;
                    // HTTP/1.1: closing an idle keep-alive connection at once
                    // would reset a request already on its way. Responses now
                    // carry `Connection: close` (hyper closes after them), and
                    // a connection that stays quiet is closed below. HTTP/2
                    // gets GOAWAY at once: its clients handle it cleanly.
                    conn_state.draining.store(true, std::sync::atomic::Ordering::Relaxed);
                    if conn_state.is_http2.load(std::sync::atomic::Ordering::Relaxed) {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = activity.idle_for(DRAIN_QUIET), if draining && !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                // A connection accepted while draining learns its protocol
                // from its first request: HTTP/2 then gets GOAWAY.
                _ = tokio::time::sleep(DRAIN_QUIET / 6), if draining && !closing => {
                    if conn_state.is_http2.load(std::sync::atomic::Ordering::Relaxed) {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
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
