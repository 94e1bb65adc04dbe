//! Per-endpoint connection pools: idle HTTP/1.1 connections reused LIFO,
//! one multiplexed HTTP/2 connection shared by all requests.
//!
//! An HTTP/1.1 connection goes back to the pool when its response body has
//! been read to the end (see [`UpstreamBody`]); one whose body was dropped
//! half-read is closed, never reused. Idle connections older than the
//! cluster's `idle_timeout` are closed by a reaper task.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::classify::classify;
use super::io::UpstreamIo;
use super::upstream_body::{ActiveRequest, Lease, UpstreamBody, wrap};
use tokio::time::Instant;

use super::{Cluster, ClusterShared, Endpoint, UpstreamError, UpstreamErrorKind};
use crate::body::RequestBody;
use crate::config::UpstreamProtocol;

pub(super) type H1Sender = http1::SendRequest<RequestBody>;

/// An upstream response header section beyond this is not forwarded: 502
/// `UPE`, and the connection is closed (Envoy's `max_response_headers_kb`
/// default). HTTP/1.1 also stops at hyper's (and Envoy's) 100 fields.
const MAX_RESPONSE_HEADERS: usize = 60 * 1024;
pub(super) type H2Sender = http2::SendRequest<RequestBody>;

#[derive(Default)]
pub(crate) struct Pool {
    /// The mutex is held only to push or pop one entry.
    idle: Mutex<Vec<IdleConn>>,
    h2: Mutex<Option<H2Conn>>,
    /// Single-flight for opening the shared HTTP/2 connection.
    h2_connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

struct IdleConn {
    tx: H1Sender,
    since: Instant,
}

struct H2Conn {
    tx: H2Sender,
    last_used: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the data inconsistent
    // (push/pop/replace only), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    fn take_idle(&self, idle_timeout: Duration) -> Option<H1Sender> {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        while let Some(conn) = idle.pop() {
            if !conn.tx.is_closed() && now.duration_since(conn.since) < idle_timeout {
                return Some(conn.tx);
            }
        }
        None
    }

    pub(super) fn put_idle(&self, tx: H1Sender) {
        if !tx.is_closed() {
            lock(&self.idle).push(IdleConn {
                tx,
                since: Instant::now(),
            });
        }
    }

    fn shared_h2(&self) -> Option<H2Sender> {
        let mut slot = lock(&self.h2);
        match slot.as_mut() {
            Some(conn) if !conn.tx.is_closed() => {
                conn.last_used = Instant::now();
                Some(conn.tx.clone())
            }
            _ => {
                *slot = None;
                None
            }
        }
    }

    /// Closes idle connections unused for `idle_timeout`.
    fn reap(&self, idle_timeout: Duration) {
        let now = Instant::now();
        lock(&self.idle)
            .retain(|c| !c.tx.is_closed() && now.duration_since(c.since) < idle_timeout);
        let mut h2 = lock(&self.h2);
        if h2
            .as_ref()
            .is_some_and(|c| c.tx.is_closed() || now.duration_since(c.last_used) >= idle_timeout)
        {
            *h2 = None;
        }
    }
}

/// A connection ready to carry one request (HTTP/1.1) or one more stream
/// (HTTP/2), checked out of an endpoint's pool.
pub struct PooledConn {
    conn: Conn,
    endpoint: Arc<Endpoint>,
    shared: Arc<ClusterShared>,
}

enum Conn {
    H1(H1Sender),
    H2(H2Sender),
}

/// A failed send. `request` is the request back when it never reached the
/// connection, so it can be retried as is, whatever its method or body.
pub struct SendError {
    pub error: UpstreamError,
    pub request: Option<Request<RequestBody>>,
}

/// Counts a request waiting for a connection (`max_pending_requests`).
struct PendingGuard<'a>(&'a ClusterShared);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0
            .stats
            .upstream_rq_pending_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Checks the request circuit breakers, then takes an idle connection or
/// opens one (within the connect timeout and the connection breaker).
pub(crate) async fn checkout(
    shared: &Arc<ClusterShared>,
    endpoint: &Arc<Endpoint>,
) -> Result<PooledConn, UpstreamError> {
    let stats = &shared.stats;
    let limits = &shared.settings.breaker;
    if stats.upstream_rq_active.load(Ordering::Relaxed) >= u64::from(limits.max_requests) {
        stats.upstream_rq_overflow.fetch_add(1, Ordering::Relaxed);
        return Err(UpstreamError::new(
            UpstreamErrorKind::Overflow,
            Some(endpoint.addr),
            "max_requests reached",
        ));
    }
    if stats
        .upstream_rq_pending_active
        .fetch_add(1, Ordering::Relaxed)
        >= u64::from(limits.max_pending_requests)
    {
        stats
            .upstream_rq_pending_active
            .fetch_sub(1, Ordering::Relaxed);
        stats
            .upstream_rq_pending_overflow
            .fetch_add(1, Ordering::Relaxed);
        return Err(UpstreamError::new(
            UpstreamErrorKind::Overflow,
            Some(endpoint.addr),
            "max_pending_requests reached",
        ));
    }
    let _pending = PendingGuard(shared);
    let conn = match shared.settings.protocol {
        UpstreamProtocol::Http1 => Conn::H1(checkout_h1(shared, endpoint).await?),
        UpstreamProtocol::Http2 => Conn::H2(checkout_h2(shared, endpoint).await?),
    };
    Ok(PooledConn {
        conn,
        endpoint: Arc::clone(endpoint),
        shared: Arc::clone(shared),
    })
}

async fn checkout_h1(
    shared: &Arc<ClusterShared>,
    endpoint: &Arc<Endpoint>,
) -> Result<H1Sender, UpstreamError> {
    loop {
        match endpoint.pool.take_idle(shared.settings.idle_timeout) {
            Some(mut tx) => {
                // An idle connection the upstream closed meanwhile fails
                // here, before anything is sent; try the next one.
                if tx.ready().await.is_ok() {
                    return Ok(tx);
                }
            }
            // Boxed: connecting (TCP, TLS, handshake) is the cold path, and
            // its state would otherwise grow every request's future.
            None => return Box::pin(connect(shared, endpoint)).await,
        }
    }
}

async fn checkout_h2(
    shared: &Arc<ClusterShared>,
    endpoint: &Arc<Endpoint>,
) -> Result<H2Sender, UpstreamError> {
    let mut tx = match endpoint.pool.shared_h2() {
        Some(tx) => tx,
        None => {
            let _single = endpoint.pool.h2_connecting.lock().await;
            match endpoint.pool.shared_h2() {
                Some(tx) => tx,
                None => {
                    let tx: H2Sender = Box::pin(connect(shared, endpoint)).await?;
                    *lock(&endpoint.pool.h2) = Some(H2Conn {
                        tx: tx.clone(),
                        last_used: Instant::now(),
                    });
                    tx
                }
            }
        }
    };
    tx.ready().await.map_err(|e| classify(e, endpoint))?;
    Ok(tx)
}

impl PooledConn {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Sends the request and waits for the response head.
    pub async fn send(
        self,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let active = ActiveRequest::new(&self.shared, &self.endpoint);
        let endpoint = &self.endpoint;
        let failed = |mut e: hyper::client::conn::TrySendError<Request<RequestBody>>| SendError {
            request: e.take_message(),
            error: classify(e.into_error(), endpoint),
        };
        match self.conn {
            Conn::H1(mut tx) => {
                let is_upgrade = req.headers().contains_key(http::header::UPGRADE);
                let resp = tx.try_send_request(req).await.map_err(failed)?;
                let reusable = !is_upgrade
                    && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
                    && !has_connection_close(&resp);
                let lease = reusable.then(|| Lease {
                    tx,
                    endpoint: Arc::clone(&self.endpoint),
                });
                Ok(wrap(resp, lease, active))
            }
            Conn::H2(mut tx) => {
                let resp = tx.try_send_request(req).await.map_err(failed)?;
                Ok(wrap(resp, None, active))
            }
        }
    }
}

fn has_connection_close(resp: &Response<Incoming>) -> bool {
    resp.headers()
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
        })
}

/// Opens a TCP connection within the cluster's connect timeout and the
/// circuit breaker's connection limit.
pub(super) async fn connect_tcp(
    shared: &Arc<ClusterShared>,
    endpoint: &Endpoint,
) -> Result<(TcpStream, ConnGuard), UpstreamError> {
    let stats = &shared.stats;
    if stats.upstream_cx_active.load(Ordering::Relaxed)
        >= u64::from(shared.settings.breaker.max_connections)
    {
        stats.upstream_cx_overflow.fetch_add(1, Ordering::Relaxed);
        return Err(UpstreamError::new(
            UpstreamErrorKind::Overflow,
            Some(endpoint.addr),
            "max_connections reached",
        ));
    }
    let guard = ConnGuard::new(shared);
    let stream = match tokio::time::timeout(
        shared.settings.connect_timeout,
        TcpStream::connect(endpoint.addr),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            stats
                .upstream_cx_connect_fail
                .fetch_add(1, Ordering::Relaxed);
            return Err(UpstreamError::new(
                UpstreamErrorKind::ConnectFailure,
                Some(endpoint.addr),
                e.to_string(),
            ));
        }
        Err(_) => {
            stats
                .upstream_cx_connect_fail
                .fetch_add(1, Ordering::Relaxed);
            return Err(UpstreamError::new(
                UpstreamErrorKind::ConnectFailure,
                Some(endpoint.addr),
                format!(
                    "connect timeout after {:?}",
                    shared.settings.connect_timeout
                ),
            ));
        }
    };
    // Latency matters more than packet count for proxied requests.
    let _ = stream.set_nodelay(true);
    Ok((stream, guard))
}

/// The handshake of one upstream protocol: what differs between opening an
/// HTTP/1.1 and an HTTP/2 connection. The sender is what the pool keeps.
pub(super) trait Handshake: Sized {
    const PROTOCOL: &'static str;

    fn handshake(
        io: TokioIo<UpstreamIo>,
    ) -> impl Future<
        Output = hyper::Result<(
            Self,
            impl Future<Output = hyper::Result<()>> + Send + 'static,
        )>,
    > + Send;
}

impl Handshake for H1Sender {
    const PROTOCOL: &'static str = "http/1.1";

    async fn handshake(
        io: TokioIo<UpstreamIo>,
    ) -> hyper::Result<(
        Self,
        impl Future<Output = hyper::Result<()>> + Send + 'static,
    )> {
        let (tx, conn) = http1::Builder::new()
            .max_header_size(MAX_RESPONSE_HEADERS)
            .handshake(io)
            .await?;
        Ok((tx, conn.with_upgrades()))
    }
}

impl Handshake for H2Sender {
    const PROTOCOL: &'static str = "http/2";

    async fn handshake(
        io: TokioIo<UpstreamIo>,
    ) -> hyper::Result<(
        Self,
        impl Future<Output = hyper::Result<()>> + Send + 'static,
    )> {
        http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_RESPONSE_HEADERS as u32)
            .handshake(io)
            .await
    }
}

/// Opens a connection (TCP within the connect timeout and the connection
/// breaker, TLS when the cluster has it) and completes the protocol's
/// handshake; the connection is driven by its own task, counted in the
/// cluster's connection stats until it ends.
pub(super) async fn connect<S: Handshake>(
    shared: &Arc<ClusterShared>,
    endpoint: &Endpoint,
) -> Result<S, UpstreamError> {
    let (stream, guard) = super::io::connect(shared, endpoint).await?;
    let (tx, conn) = S::handshake(TokioIo::new(stream)).await.map_err(|e| {
        UpstreamError::new(
            UpstreamErrorKind::ConnectFailure,
            Some(endpoint.addr),
            e.to_string(),
        )
    })?;
    tokio::spawn(async move {
        let _guard = guard;
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream {} connection ended with an error", S::PROTOCOL);
        }
    });
    Ok(tx)
}

/// A raw TCP connection to an endpoint (TCP listeners), counted in the
/// cluster's connection stats while it lives.
pub struct RawConn {
    stream: UpstreamIo,
    guard: ConnGuard,
}

impl RawConn {
    pub fn into_parts(self) -> (UpstreamIo, ConnGuard) {
        (self.stream, self.guard)
    }
}

pub(crate) async fn connect_raw(
    shared: &Arc<ClusterShared>,
    endpoint: &Endpoint,
) -> Result<RawConn, UpstreamError> {
    let (stream, guard) = super::io::connect(shared, endpoint).await?;
    Ok(RawConn { stream, guard })
}

/// Counts a connection in `upstream_cx_active` for as long as it lives.
pub struct ConnGuard(Arc<ClusterShared>);

impl ConnGuard {
    fn new(shared: &Arc<ClusterShared>) -> Self {
        shared
            .stats
            .upstream_cx_active
            .fetch_add(1, Ordering::Relaxed);
        shared
            .stats
            .upstream_cx_total
            .fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(shared))
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0
            .stats
            .upstream_cx_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Periodically closes expired idle connections of every endpoint; ends
/// when the cluster is dropped.
pub(crate) fn spawn_reaper(cluster: Weak<Cluster>) {
    let Some(c) = cluster.upgrade() else { return };
    let idle_timeout = c.shared.settings.idle_timeout;
    drop(c);
    let period = (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            for e in &cluster.endpoints().endpoints {
                e.pool.reap(idle_timeout);
            }
        }
    });
}
