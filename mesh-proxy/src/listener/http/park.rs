//! HTTP/1.1 connections, parked when idle (see the parent module's docs),
//! and closed on drain without losing a request already on its way.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::super::Drain;
use super::super::io::{Activity, ActivityIo};
use super::{DRAIN_QUIET, HttpServer, PARK_AFTER, drain_quiet, upgrade};
use crate::router::Downstream;
use crate::telemetry::metrics::ActiveGuard;

impl HttpServer {
    pub(super) async fn serve_h1<I>(
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
        // When this connection saw the drain begin: its grace runs from then.
        let mut drain_seen: Option<Instant> = None;
        // After a park that found half a request head buffered, no parking
        // again until that request arrives: parking restarts the parser's
        // header deadline.
        let mut park_after_request: Option<u64> = None;
        loop {
            // Woken while draining: its responses must say `Connection: close`.
            if drain_seen.is_none() && drain.is_draining() {
                drain_seen = Some(saw_drain(&down));
            }
            // Boxed, so that a parked connection's task does not keep room
            // for it.
            let mut conn = Box::new(self.h1.serve_connection(TokioIo::new(io), service));
            let mut closing = false;
            let mut parking = false;
            let ended = loop {
                let may_park = drain_seen.is_none()
                    && park_after_request.is_none_or(|n| down.requests.load(Ordering::Relaxed) > n);
                tokio::select! {
                    res = poll_fn(|cx| conn.poll_without_shutdown(cx)) => break res,
                    // Closing an idle keep-alive connection at once would
                    // reset a request already on its way. Responses now carry
                    // `Connection: close` (hyper closes after them), and a
                    // connection that stays quiet is closed below.
                    _ = drain.signaled(), if drain_seen.is_none() => drain_seen = Some(saw_drain(&down)),
                    _ = drain_quiet(activity, drain_seen), if drain_seen.is_some() && !closing => {
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
            service = parts.service;
            let mut inner = parts.io.into_inner();
            inner.unread(parts.read_buf);
            let upgrade = down.upgrade.lock().ok().and_then(|mut u| u.take());
            if let Some(upstream) = upgrade {
                return self.tunnel(inner, upstream, activity, &down).await;
            }
            if !parking || closing {
                return close(inner).await;
            }
            match self
                .park(inner, activity, &down, &mut drain, &mut park_after_request)
                .await
            {
                Some(woken) => io = woken,
                None => return,
            }
        }
    }

    /// Joins an upgraded (101) connection to its upstream until either side
    /// ends, or a reload stops admitting the peer.
    async fn tunnel<I>(
        &self,
        inner: ActivityIo<I>,
        upstream: hyper::upgrade::OnUpgrade,
        activity: &Activity,
        down: &Downstream,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let revoked = async {
            match (&self.tls, &down.admission) {
                (Some(tls), Some(admission)) => {
                    tls.revoked(admission, down.peer, "upgraded connection")
                        .await;
                }
                _ => std::future::pending().await,
            }
        };
        let idle_timeout = self.ctx.limits.idle_timeout;
        upgrade::tunnel(inner, upstream, activity, idle_timeout, revoked).await;
    }

    /// Parks a connection until the client sends again (`Some`), or closes
    /// it (`None`). With half a request head buffered it is not parked:
    /// the parser gets it back at once.
    async fn park<I>(
        &self,
        mut io: ActivityIo<I>,
        activity: &Activity,
        down: &Downstream,
        drain: &mut Drain,
        park_after_request: &mut Option<u64>,
    ) -> Option<ActivityIo<I>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        if io.has_unread() {
            *park_after_request = Some(down.requests.load(Ordering::Relaxed));
            return Some(io);
        }
        let parked = ActiveGuard::gauge(&self.ctx.stats.downstream_cx_parked);
        let woke = self.first_bytes(&mut io, activity, drain, false).await;
        drop(parked);
        match woke {
            Some(_) => Some(io),
            None => {
                close(io).await;
                None
            }
        }
    }
}

/// Marks the connection draining (its responses say `Connection: close`);
/// returns when, the start of its drain grace.
fn saw_drain(down: &Downstream) -> Instant {
    down.draining.store(true, Ordering::Relaxed);
    Instant::now()
}

/// Closes a connection without resetting a request that crossed the close:
/// FIN first, then whatever the client still sends is read and dropped
/// until it closes too (as nginx's lingering close), for at most
/// [`DRAIN_QUIET`]. Closing the socket with unread bytes would send a
/// reset, which can destroy a response the client has not read yet.
pub(super) async fn close<I>(mut io: ActivityIo<I>)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + DRAIN_QUIET;
    if !matches!(timeout_at(deadline, io.shutdown()).await, Ok(Ok(()))) {
        return;
    }
    let mut buf = [0u8; 64];
    while let Ok(Ok(n)) = timeout_at(deadline, io.read(&mut buf)).await {
        if n == 0 {
            break;
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
