//! Clusters: named sets of upstream endpoints, how they are discovered,
//! how one is picked, and the pooled connections to each.
//!
//! Key types: [`Cluster`] (one per configured cluster, shared by every route
//! that names it), [`Endpoint`] (one upstream address with its connection
//! pool), [`UpstreamError`] (every upstream failure, classified once).
//! The endpoint set is an immutable snapshot behind `arc-swap`: discovery
//! swaps in a new one, requests read it without locking. Must not: build
//! local replies or know about routes.

mod classify;
mod dns;
mod io;
mod lb;
mod pool;
mod probe;
mod upstream_body;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{CircuitBreakerSpec, ClusterSpec, Discovery, LbPolicy, UpstreamProtocol};
use crate::health::EndpointHealth;

pub use io::UpstreamIo;
use pool::Pool;
pub use pool::{ConnGuard, PooledConn, RawConn, SendError};
pub use probe::probe;
pub use upstream_body::UpstreamBody;

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
    /// HTTP/2 REFUSED_STREAM: the upstream did not process the request.
    RefusedStream,
    /// The upstream answered with something that is not valid HTTP.
    Protocol,
}

/// What one attempt ended with. Retry, outlier detection and metrics all
/// read this one classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Status(http::StatusCode),
    /// The attempt failed before response headers.
    Failed(UpstreamErrorKind),
    /// The per-try timeout elapsed before response headers.
    PerTryTimeout,
}

impl Outcome {
    /// Nothing reached the upstream: safe to retry any request.
    pub fn nothing_sent(self) -> bool {
        matches!(
            self,
            Outcome::Failed(UpstreamErrorKind::ConnectFailure | UpstreamErrorKind::RefusedStream)
        )
    }
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
    pub fn timeout(endpoint: SocketAddr, after: Duration) -> Self {
        Self::new(
            UpstreamErrorKind::Reset,
            Some(endpoint),
            format!("per-try timeout after {after:?}"),
        )
    }

    pub fn overflow(endpoint: SocketAddr, what: &str) -> Self {
        Self::new(UpstreamErrorKind::Overflow, Some(endpoint), what)
    }

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
    /// Attempts sent (each retry counts).
    pub upstream_rq_total: AtomicU64,
    /// By status class of the upstream's answer: index 0 = 1xx … 4 = 5xx.
    /// An attempt without an answer (connect failure, reset, timeout) is a 5xx.
    pub upstream_rq_class: [AtomicU64; 5],
    /// Time from sending to response headers, retries included.
    pub upstream_rq_time: crate::telemetry::metrics::LatencyHistogram,
    pub upstream_rq_active: AtomicU64,
    pub upstream_rq_pending_active: AtomicU64,
    pub upstream_rq_pending_overflow: AtomicU64,
    pub upstream_rq_overflow: AtomicU64,
    pub upstream_rq_retry: AtomicU64,
    pub upstream_rq_retry_overflow: AtomicU64,
    pub upstream_rq_retry_budget_exhausted: AtomicU64,
    pub upstream_rq_timeout: AtomicU64,
    pub upstream_rq_per_try_timeout: AtomicU64,
    pub upstream_retries_active: AtomicU64,
    pub upstream_cx_total: AtomicU64,
    pub upstream_cx_active: AtomicU64,
    pub upstream_cx_connect_fail: AtomicU64,
    pub upstream_cx_overflow: AtomicU64,
    pub outlier_ejections_total: AtomicU64,
}

/// Settings every endpoint pool of a cluster shares.
#[derive(Debug)]
pub(crate) struct PoolSettings {
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub breaker: CircuitBreakerSpec,
}

/// One upstream address and its pooled connections.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub active_requests: AtomicU32,
    /// Active checks' and outlier detection's verdicts; written by `health` only.
    health: EndpointHealth,
    pool: Pool,
}

impl Endpoint {
    fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            addr,
            active_requests: AtomicU32::new(0),
            health: EndpointHealth::default(),
            pool: Pool::default(),
        })
    }

    /// Healthy by active checks and not ejected by outlier detection.
    pub fn is_available(&self) -> bool {
        self.health.is_available()
    }

    pub fn health(&self) -> &EndpointHealth {
        &self.health
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
    /// TLS origination, when the cluster has `tls:`.
    pub tls: Option<crate::identity::client::UpstreamTls>,
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
    pub fn try_spawn(
        spec: ClusterSpec,
        identity: Option<Arc<crate::identity::IdentityStore>>,
    ) -> Result<Arc<Self>, String> {
        let tls = match &spec.tls {
            Some(tls) => {
                // SNI when the spec has none: a DNS endpoint's name, else the cluster's.
                let default_name = spec
                    .endpoints
                    .iter()
                    .find(|e| e.host.parse::<std::net::IpAddr>().is_err())
                    .map_or(spec.name.as_str(), |e| e.host.as_str());
                Some(
                    crate::identity::client::UpstreamTls::new(
                        tls,
                        identity,
                        Some(spec.protocol),
                        default_name,
                    )
                    .map_err(|e| e.to_string())?,
                )
            }
            None => None,
        };
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
                    breaker: spec.circuit_breaker,
                },
                stats: ClusterStats::default(),
                tls,
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
        Ok(cluster)
    }

    /// A plain (no TLS) cluster, for tests.
    #[cfg(test)]
    pub fn spawn(spec: ClusterSpec) -> Arc<Self> {
        match Self::try_spawn(spec, None) {
            Ok(c) => c,
            Err(e) => panic!("test cluster: {e}"),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The name as a shared string (cheap to keep per request).
    pub fn name_arc(&self) -> &Arc<str> {
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
    /// the endpoints in `avoid` when another one is available (retries go
    /// elsewhere).
    ///
    /// Panic threshold (Envoy's, at 50 %): when fewer than half of the
    /// endpoints are available, the balancer ignores health and ejection and
    /// spreads load over all of them, rather than crushing the few survivors
    /// with the whole load. When none is available at all, there is nothing
    /// to pick (503 `UH`, RELIABILITY R4).
    pub fn pick(&self, avoid: &[SocketAddr]) -> Option<Arc<Endpoint>> {
        let set = self.endpoints.load();
        let all = &set.endpoints;
        let available = all.iter().filter(|e| e.is_available()).count();
        if available == 0 {
            return None;
        }
        let panic = available * 2 < all.len();
        let picked = match self.spec.lb {
            LbPolicy::RoundRobin => lb::round_robin(all, &self.rr_next, avoid, panic),
            LbPolicy::Random => lb::random(all, avoid, panic),
            LbPolicy::LeastRequest => lb::least_request(all, avoid, panic),
        };
        picked.cloned()
    }

    /// Takes a connection to `endpoint` from its pool (or opens one), after
    /// the circuit breakers allow the request. The request itself is not
    /// touched, so a failure here can always be retried.
    pub async fn checkout(&self, endpoint: &Arc<Endpoint>) -> Result<PooledConn, UpstreamError> {
        pool::checkout(&self.shared, endpoint).await
    }

    /// Opens a raw TCP connection to `endpoint` (TCP listeners).
    pub async fn connect_raw(&self, endpoint: &Endpoint) -> Result<RawConn, UpstreamError> {
        pool::connect_raw(&self.shared, endpoint).await
    }

    pub fn protocol(&self) -> UpstreamProtocol {
        self.shared.settings.protocol
    }
}

/// A static cluster of `n` endpoints on 127.0.0.1, for unit tests.
#[cfg(test)]
pub(crate) fn test_spec(n: u16) -> ClusterSpec {
    use crate::config::EndpointAddr;
    ClusterSpec {
        name: "test".to_owned(),
        endpoints: (0..n)
            .map(|i| EndpointAddr {
                host: "127.0.0.1".to_owned(),
                port: 1000 + i,
            })
            .collect(),
        discovery: Discovery::Static,
        protocol: UpstreamProtocol::Http1,
        lb: LbPolicy::RoundRobin,
        connect_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(60),
        tls: None,
        circuit_breaker: CircuitBreakerSpec::default(),
        health_check: None,
        outlier_detection: None,
    }
}
