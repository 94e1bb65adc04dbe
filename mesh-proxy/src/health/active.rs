//! Active health checks: every `interval` (±10 % jitter, so proxies started
//! together do not probe in lockstep) each endpoint gets `GET path` within
//! `timeout`; `unhealthy_threshold` failures in a row take it out of load
//! balancing, `healthy_threshold` successes bring it back. A 2xx is a success.

use std::sync::Arc;

use crate::cluster::{Cluster, Endpoint, probe};
use crate::config::HealthCheckSpec;

/// Starts the checks of a cluster that has `health_check`; they stop when
/// the cluster is dropped.
pub fn spawn_health_checks(cluster: &Arc<Cluster>) {
    let Some(spec) = cluster.spec().health_check.clone() else {
        return;
    };
    let weak = Arc::downgrade(cluster);
    tokio::spawn(async move {
        loop {
            // ±10 % so proxies started together do not probe in lockstep.
            tokio::time::sleep(spec.interval.mul_f64(0.9 + fastrand::f64() * 0.2)).await;
            let Some(cluster) = weak.upgrade() else {
                return;
            };
            let endpoints: Vec<Arc<Endpoint>> = cluster
                .endpoints()
                .endpoints
                .iter()
                .map(Arc::clone)
                .collect();
            let probes = endpoints.iter().map(|e| check_one(&cluster, e, &spec));
            futures_util::future::join_all(probes).await;
        }
    });
}

async fn check_one(cluster: &Cluster, endpoint: &Endpoint, spec: &HealthCheckSpec) {
    let ok = matches!(
        tokio::time::timeout(spec.timeout, probe(cluster, endpoint, &spec.path)).await,
        Ok(Ok(status)) if status.is_success()
    );
    let flipped =
        endpoint
            .health()
            .mark_active_result(ok, spec.healthy_threshold, spec.unhealthy_threshold);
    match flipped {
        Some(true) => {
            tracing::info!(cluster = %cluster.name(), endpoint = %endpoint.addr, "endpoint healthy again");
        }
        Some(false) => {
            tracing::warn!(cluster = %cluster.name(), endpoint = %endpoint.addr, "endpoint failed health checks; removed from load balancing");
        }
        None => {}
    }
}
