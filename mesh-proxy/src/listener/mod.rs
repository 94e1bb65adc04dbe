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
        let mut closing = false;
        loop {
            let accepted = if closing {
                // Take the connections the kernel already queued before
                // closing the socket: closing with them in the backlog would
                // greet those clients with a reset.
                match futures_util::FutureExt::now_or_never(bound.socket.accept()) {
                    Some(a) => a,
                    None => break,
                }
            } else {
                tokio::select! {
                    biased;
                    _ = draining.signaled() => {
                        closing = true;
                        continue;
                    }
                    _ = stop.signaled() => {
                        closing = true;
                        continue;
                    }
                    a = bound.socket.accept() => a,
                }
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
            let drain = drain.clone();
            match &protocol {
                Protocol::Http(server) => {
                    let server = Arc::clone(server);
                    inner_tracker.spawn(async move {
                        server.serve(stream, peer, drain).await;
                        drop(permit);
                    });
                }
                Protocol::Tcp {
                    cluster,
                    limits,
                    tls,
                } => {
                    let cluster = Arc::clone(cluster);
                    let limits = *limits;
                    let tls = tls.clone();
                    inner_tracker.spawn(async move {
                        tcp::serve(stream, peer, &cluster, &limits, tls.as_deref()).await;
                        drop(permit);
                    });
                }
            }
        }
        tracing::info!(listener = %name, "listener closed");
    });
}

/// Builds the HTTP server of one listener around its router context.
pub fn http_server(ctx: Arc<HttpContext>, tls: Option<Arc<TlsServer>>) -> Arc<HttpServer> {
    Arc::new(HttpServer::new(ctx, tls))
}
