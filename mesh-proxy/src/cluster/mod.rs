//! Clusters: named sets of upstream endpoints, how they are discovered,
//! how one is picked, and the pooled connections to each.
//!
//! Key types: [`Cluster`] (one per configured cluster, shared by every route
//! that names it), [`Endpoint`] (one upstream address with its connection
//! pool), [`UpstreamError`] (every upstream failure, classified once).
//! The endpoint set is an immutable snapshot behind `arc-swap`: discovery
//! swaps in a new one, requests read it without locking. Must not: build
//! local replies or know about routes.

mod dns;
mod lb;
mod pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};

use crate::body::RequestBody;
use crate::config::{ClusterSpec, Discovery, LbPolicy, UpstreamProtocol};

use pool::Pool;
pub use pool::{ConnGuard, RawConn, UpstreamBody};

/// How an upstream attempt failed. Retry, outlier detection, metrics and
/// local replies all read this one classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// No endpoint is available (none discovered, or all unhealthy).
    NoHealthyEndpoint,
    /// TCP connect refused, unreachable or timed out: nothing was sent.
    ConnectFailure,
    /// The circuit breaker refused a new connection or request.
    Overflow,
    /// The connection closed or reset before response headers.
    Reset,
    /// The upstream answered with something that is not valid HTTP.
    Protocol,
}

#[derive(Debug, thiserror::Error)]
#[error("{kind:?} to {endpoint:?}: {detail}")]
pub struct UpstreamError {
    pub kind: UpstreamErrorKind,
    pub endpoint: Option<SocketAddr>,
    pub detail: String,
    /// The downstream body failed while it was being sent (idle timeout,
    /// size limit, client gone): the fault is the client's, not the upstream's.
    pub body_error: Option<crate::body::BodyErrorKind>,
}

impl UpstreamError {
    fn new(
        kind: UpstreamErrorKind,
        endpoint: Option<SocketAddr>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            endpoint,
            detail: detail.into(),
            body_error: None,
        }
    }
}

/// Counters of one cluster (SPEC §3 "Metrics"); read by the admin API.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub upstream_rq_total: AtomicU64,
    pub upstream_rq_active: AtomicU64,
    pub upstream_cx_total: AtomicU64,
    pub upstream_cx_active: AtomicU64,
    pub upstream_cx_connect_fail: AtomicU64,
}

/// Settings every endpoint pool of a cluster shares.
#[derive(Debug)]
pub(crate) struct PoolSettings {
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: u64,
}

/// One upstream address and its pooled connections.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub active_requests: AtomicU32,
    healthy: AtomicBool,
    pool: Pool,
}

impl Endpoint {
    fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            addr,
            active_requests: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            pool: Pool::default(),
        })
    }

    pub fn is_available(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// An immutable snapshot of a cluster's endpoints.
#[derive(Debug, Default)]
pub struct EndpointSet {
    pub endpoints: Vec<Arc<Endpoint>>,
}

pub(crate) struct ClusterShared {
    pub name: Arc<str>,
    pub settings: PoolSettings,
    pub stats: ClusterStats,
}

pub struct Cluster {
    shared: Arc<ClusterShared>,
    spec: ClusterSpec,
    endpoints: ArcSwap<EndpointSet>,
    rr_next: AtomicUsize,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Builds the cluster and starts its background tasks (DNS refresh, idle
    /// connection reaping); they stop when the last `Arc<Cluster>` is dropped.
    /// Must be called inside a tokio runtime.
    pub fn spawn(spec: ClusterSpec) -> Arc<Self> {
        let initial = match spec.discovery {
            Discovery::Static => EndpointSet {
                endpoints: spec
                    .endpoints
                    .iter()
                    .filter_map(|e| {
                        e.host
                            .parse()
                            .ok()
                            .map(|ip| Endpoint::new(SocketAddr::new(ip, e.port)))
                    })
                    .collect(),
            },
            Discovery::Dns { .. } => EndpointSet::default(),
        };
        let cluster = Arc::new(Self {
            shared: Arc::new(ClusterShared {
                name: Arc::from(spec.name.as_str()),
                settings: PoolSettings {
                    protocol: spec.protocol,
                    connect_timeout: spec.connect_timeout,
                    idle_timeout: spec.idle_timeout,
                    max_connections: u64::from(spec.circuit_breaker.max_connections),
                },
                stats: ClusterStats::default(),
            }),
            endpoints: ArcSwap::from_pointee(initial),
            rr_next: AtomicUsize::new(0),
            spec,
        });
        if let Discovery::Dns { refresh } = cluster.spec.discovery {
            dns::spawn_refresh(
                Arc::downgrade(&cluster),
                cluster.spec.endpoints.clone(),
                refresh,
            );
        }
        pool::spawn_reaper(Arc::downgrade(&cluster));
        cluster
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    pub fn stats(&self) -> &ClusterStats {
        &self.shared.stats
    }

    pub fn endpoints(&self) -> arc_swap::Guard<Arc<EndpointSet>> {
        self.endpoints.load()
    }

    fn set_endpoints(&self, set: EndpointSet) {
        self.endpoints.store(Arc::new(set));
    }

    /// Picks an available endpoint by the cluster's load balancer, avoiding
    /// `avoid` when another one is available (retries go elsewhere).
    pub fn pick(&self, avoid: Option<SocketAddr>) -> Option<Arc<Endpoint>> {
        let set = self.endpoints.load();
        let policy = self.spec.lb;
        let picked = match policy {
            LbPolicy::RoundRobin => lb::round_robin(&set.endpoints, &self.rr_next, avoid),
            LbPolicy::Random => lb::random(&set.endpoints, avoid),
            LbPolicy::LeastRequest => lb::least_request(&set.endpoints, avoid),
        };
        picked.cloned()
    }

    /// Sends one request to one endpoint over a pooled connection and waits
    /// for the response head. The request URI must be in origin form for
    /// HTTP/1.1 upstreams and absolute for HTTP/2 ones.
    pub async fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        pool::send(&self.shared, endpoint, req).await
    }

    /// Opens a raw TCP connection to `endpoint` (TCP listeners).
    pub async fn connect_raw(&self, endpoint: &Endpoint) -> Result<RawConn, UpstreamError> {
        pool::connect_raw(&self.shared, endpoint).await
    }

    pub fn protocol(&self) -> UpstreamProtocol {
        self.shared.settings.protocol
    }
}
