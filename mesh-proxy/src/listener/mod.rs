//! Listeners: binding, the accept loop, per-connection limits, the HTTP
//! (h1 + h2 on one port) and TCP protocols, and graceful drain.
//!
//! Key types: [`BoundListener`] (a socket bound before anything is served,
//! so a bad address fails start-up), [`Drain`] (the signal every accept
//! loop and connection watches). Must not: route requests (that is `router`).

mod http;
mod io;
mod tcp;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Duration, Instant};
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::config::{LimitsSpec, ListenerSpec};
use crate::identity::server::TlsServer;
use crate::router::HttpContext;

pub use http::HttpServer;

/// Tells every listener and connection that the proxy is draining.
#[derive(Clone)]
pub struct Drain {
    rx: watch::Receiver<bool>,
}

/// Starts the drain; cheap to clone (signals, the admin API's
/// `/quitquitquit` and `/ready` share one).
#[derive(Clone)]
pub struct DrainTrigger {
    tx: Arc<watch::Sender<bool>>,
}

impl Drain {
    pub fn new() -> (DrainTrigger, Drain) {
        let (tx, rx) = watch::channel(false);
        (DrainTrigger { tx: Arc::new(tx) }, Drain { rx })
    }

    pub fn is_draining(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once draining started (at once if it already has).
    pub async fn signaled(&mut self) {
        let _ = self.rx.wait_for(|d| *d).await;
    }
}

impl DrainTrigger {
    pub fn start(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once draining started.
    pub async fn started(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

/// A listening socket, bound but not yet serving.
pub struct BoundListener {
    pub name: String,
    pub local_addr: SocketAddr,
    socket: Arc<TcpListener>,
}

/// The socket an accept loop serves, so that a reload replacing the
/// listener at the same address hands the very socket to the new loop: no
/// rebind, no moment where the port refuses connections. Weak: the socket
/// closes when its accept loops end.
#[derive(Clone)]
pub struct SocketHandle(Weak<TcpListener>);

impl SocketHandle {
    /// The same socket, to be served under `name` by a new accept loop;
    /// `None` once its accept loop closed it.
    pub fn rebound(&self, name: &str) -> Option<std::io::Result<BoundListener>> {
        let socket = self.0.upgrade()?;
        Some(socket.local_addr().map(|local_addr| BoundListener {
            name: name.to_owned(),
            local_addr,
            socket,
        }))
    }
}

impl BoundListener {
    /// Binds with SO_REUSEADDR (restarts don't wait for TIME_WAIT) and a
    /// deep accept backlog.
    pub fn bind(spec: &ListenerSpec) -> std::io::Result<Self> {
        let addr = spec.address;
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(4096)?;
        let std_listener: std::net::TcpListener = socket.into();
        let socket = TcpListener::from_std(std_listener)?;
        Ok(Self {
            name: spec.name.clone(),
            local_addr: socket.local_addr()?,
            socket: Arc::new(socket),
        })
    }

    pub fn handle(&self) -> SocketHandle {
        SocketHandle(Arc::downgrade(&self.socket))
    }
}

/// What a listener does with its connections.
pub enum Protocol {
    Http(Arc<HttpServer>),
    Tcp {
        cluster: Arc<Cluster>,
        limits: LimitsSpec,
        tls: Option<Arc<TlsServer>>,
        authz: Arc<crate::policy::authz_tcp::TcpAuthz>,
    },
}

/// Runs the accept loop until drain; every connection task is tracked by
/// `tracker` so shutdown can wait for them.
/// `drain` is the proxy's drain (connections watch it too); `stop` closes
/// only this listener (a reload removed or replaced it), letting its
/// connections finish.
pub fn spawn_accept_loop(
    bound: BoundListener,
    protocol: Protocol,
    max_connections: u32,
    drain: Drain,
    stop: Drain,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    let name: Arc<str> = Arc::from(bound.name.as_str());
    let inner_tracker = tracker.clone();
    tracker.spawn(async move {
        let mut draining = drain.clone();
        let mut stop = stop;
        // Set once closing: until when the handshakes under way are taken.
        let mut closing: Option<Instant> = None;
        loop {
            let accepted = match closing {
                Some(until) => match last_accept(&bound.socket, until).await {
                    Some(a) => a,
                    None => break,
                },
                None => tokio::select! {
                    biased;
                    _ = draining.signaled() => {
                        closing = Some(start_closing(&bound.socket, &name));
                        continue;
                    }
                    _ = stop.signaled() => {
                        closing = Some(start_closing(&bound.socket, &name));
                        continue;
                    }
                    a = bound.socket.accept() => a,
                },
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::debug!(listener = %name, %peer, "max_connections reached; connection closed");
                if let Protocol::Http(server) = &protocol {
                    server
                        .stats()
                        .downstream_cx_overflow
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            spawn_connection(&protocol, &inner_tracker, stream, peer, drain.clone(), permit);
        }
        tracing::info!(listener = %name, "listener closed");
    });
}

/// Serves one accepted connection on its own task, holding its
/// `max_connections` slot until it ends.
fn spawn_connection(
    protocol: &Protocol,
    tracker: &TaskTracker,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    drain: Drain,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    match protocol {
        Protocol::Http(server) => {
            let server = Arc::clone(server);
            tracker.spawn(async move {
                server.serve(stream, peer, drain).await;
                drop(permit);
            });
        }
        Protocol::Tcp {
            cluster,
            limits,
            tls,
            authz,
        } => {
            let cluster = Arc::clone(cluster);
            let limits = *limits;
            let tls = tls.clone();
            let authz = Arc::clone(authz);
            tracker.spawn(async move {
                tcp::serve(stream, peer, &cluster, &limits, tls.as_deref(), &authz).await;
                drop(permit);
            });
        }
    }
}

/// How long a closing listener waits for one more completed handshake.
const LAST_ACCEPT_QUIET: Duration = Duration::from_millis(50);

/// At most this long from the moment a listener starts closing.
const LAST_ACCEPTS_MAX: Duration = Duration::from_millis(500);

/// Stops the kernel taking new connections on a socket about to close, and
/// says until when the handshakes already under way are accepted. Closing
/// with connections in the backlog would reset them, and their clients may
/// have sent a request already (their `connect` returned at the SYN-ACK).
/// A socket a reload handed to a new accept loop stays open: nothing to do.
fn start_closing(socket: &Arc<TcpListener>, name: &str) -> Instant {
    if Arc::strong_count(socket) > 1 {
        return Instant::now();
    }
    if let Err(e) = refuse_new_handshakes(socket) {
        tracing::debug!(listener = %name, error = %e, "cannot filter SYNs on a closing listener");
    }
    Instant::now() + LAST_ACCEPTS_MAX
}

/// The next connection of a closing listener; `None` once none completed
/// for [`LAST_ACCEPT_QUIET`] or `until` passed.
async fn last_accept(
    socket: &TcpListener,
    until: Instant,
) -> Option<std::io::Result<(tokio::net::TcpStream, SocketAddr)>> {
    if Instant::now() >= until {
        return None;
    }
    let quiet = (Instant::now() + LAST_ACCEPT_QUIET).min(until);
    tokio::time::timeout_at(quiet, socket.accept()).await.ok()
}

/// Drops incoming SYNs with a socket filter (`ldb [13]` — the TCP flags;
/// `jset #SYN`; drop; keep): a new client's SYN goes unanswered, its
/// retransmission a second later finds the port closed (refused), while
/// the final ACK of a handshake under way still completes it.
#[cfg(target_os = "linux")]
fn refuse_new_handshakes(socket: &TcpListener) -> std::io::Result<()> {
    use socket2::SockFilter;
    const LD_B_ABS: u16 = 0x30;
    const JMP_JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    const TCP_FLAGS: u32 = 13;
    const SYN: u32 = 0x02;
    let program = [
        SockFilter::new(LD_B_ABS, 0, 0, TCP_FLAGS),
        SockFilter::new(JMP_JSET_K, 0, 1, SYN),
        SockFilter::new(RET_K, 0, 0, 0),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
    ];
    socket2::SockRef::from(socket).attach_filter(&program)
}

#[cfg(not(target_os = "linux"))]
fn refuse_new_handshakes(_: &TcpListener) -> std::io::Result<()> {
    Ok(())
}

/// Builds the HTTP server of one listener around its router context.
pub fn http_server(ctx: Arc<HttpContext>, tls: Option<Arc<TlsServer>>) -> Arc<HttpServer> {
    Arc::new(HttpServer::new(ctx, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection the kernel completed before the listener started
    /// closing is still accepted; a new one is not taken (its SYN dropped:
    /// the connect does not complete) rather than queued and then reset.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_closing_listener_takes_the_queued_handshakes_and_no_new_one() {
        let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        let queued = tokio::net::TcpStream::connect(addr).await.expect("connect");
        refuse_new_handshakes(&socket).expect("filter");
        let late = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        assert!(late.is_err(), "a new handshake completed: {late:?}");
        let (_, peer) = tokio::time::timeout(Duration::from_secs(2), socket.accept())
            .await
            .expect("the queued connection is accepted")
            .expect("accept");
        assert_eq!(peer, queued.local_addr().expect("local addr"));
    }
}
