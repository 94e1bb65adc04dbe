//! The seam between the retry loop and a cluster: what [`super::forward`]
//! needs of an upstream. [`Cluster`] is the real one; the retry loop's unit
//! tests script a fake one under tokio's paused time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Request, Response};

use super::classify::Classified;
use crate::body::RequestBody;
use crate::cluster::{Cluster, ClusterStats, Endpoint, SendError, UpstreamBody};

/// An upstream the retry loop can send attempts to.
pub trait Upstream: Sync {
    /// One endpoint, as picked for an attempt.
    type Endpoint: Send + Sync;
    /// A response body.
    type Body: Send;

    /// The cluster's name, for local replies.
    fn name(&self) -> &str;
    /// The counters attempts, retries and their refusals go to.
    fn stats(&self) -> &ClusterStats;
    /// How many retries may run at once (the `max_retries` breaker).
    fn max_retries(&self) -> u64;
    /// An available endpoint, avoiding the `tried` ones when it can.
    fn pick(&self, tried: &[SocketAddr]) -> Option<Self::Endpoint>;
    fn addr(endpoint: &Self::Endpoint) -> SocketAddr;
    /// Sends one attempt; a request handed back unsent comes back in the error.
    fn send(
        &self,
        endpoint: &Self::Endpoint,
        req: Request<RequestBody>,
    ) -> impl Future<Output = Result<Response<Self::Body>, SendError>> + Send;
    /// Records an attempt's outcome: the cluster's counters and the
    /// endpoint's passive health.
    fn record(&self, endpoint: &Self::Endpoint, outcome: &Classified);
}

impl Upstream for Arc<Cluster> {
    type Endpoint = Arc<Endpoint>;
    type Body = UpstreamBody;

    fn name(&self) -> &str {
        Cluster::name(self)
    }

    fn stats(&self) -> &ClusterStats {
        Cluster::stats(self)
    }

    fn max_retries(&self) -> u64 {
        u64::from(self.spec().circuit_breaker.max_retries)
    }

    fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Endpoint>> {
        Cluster::pick(self, tried)
    }

    fn addr(endpoint: &Arc<Endpoint>) -> SocketAddr {
        endpoint.addr
    }

    async fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        match self.checkout(endpoint).await {
            Ok(conn) => conn.send(req).await,
            Err(error) => Err(SendError {
                error,
                request: Some(req),
            }),
        }
    }

    fn record(&self, endpoint: &Arc<Endpoint>, outcome: &Classified) {
        record_stats(Cluster::stats(self), outcome);
        if outcome.blames_endpoint() {
            crate::health::record_outcome(self, endpoint, outcome.outcome);
        }
    }
}

/// The cluster counters of one attempt's outcome.
pub fn record_stats(stats: &ClusterStats, outcome: &Classified) {
    if let Some(class) = outcome.class {
        stats.upstream_rq_class[class].fetch_add(1, Ordering::Relaxed);
    }
    if outcome.outcome == crate::cluster::Outcome::PerTryTimeout {
        stats
            .upstream_rq_per_try_timeout
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The cluster counters of a request whose route timeout ended it: the
/// attempt in flight is charged as a 5xx (the 504 the client gets).
pub fn record_route_timeout(stats: &ClusterStats) {
    stats.upstream_rq_timeout.fetch_add(1, Ordering::Relaxed);
    stats.upstream_rq_class[4].fetch_add(1, Ordering::Relaxed);
}
