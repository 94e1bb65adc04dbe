//! Outlier detection (Envoy's, simplified): `consecutive_5xx` 5xx answers
//! or `consecutive_gateway_failure` gateway failures (502/503/504, connect
//! failures, resets, per-try timeouts) eject an endpoint for
//! `base_ejection_time × ejections so far` (at most 10×), never ejecting
//! more than `max_ejection_percent` of the cluster's endpoints.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::cluster::{Cluster, Endpoint, Outcome, UpstreamErrorKind};

/// Feeds one attempt's outcome into the endpoint's counters; ejects it
/// when a threshold is crossed.
pub fn record_outcome(cluster: &Arc<Cluster>, endpoint: &Arc<Endpoint>, outcome: Outcome) {
    let Some(od) = cluster.spec().outlier_detection else {
        return;
    };
    let (is_5xx, is_gateway) = match outcome {
        Outcome::Status(s) => (s.is_server_error(), matches!(s.as_u16(), 502..=504)),
        Outcome::PerTryTimeout => (true, true),
        Outcome::Failed(kind) => match kind {
            UpstreamErrorKind::ConnectFailure
            | UpstreamErrorKind::Reset
            | UpstreamErrorKind::RefusedStream
            | UpstreamErrorKind::Protocol => (true, true),
            // Our own decisions say nothing about the endpoint.
            UpstreamErrorKind::Overflow | UpstreamErrorKind::NoHealthyEndpoint => return,
        },
    };
    let streaks = endpoint.health().count_outcome(is_5xx, is_gateway);
    if (od.consecutive_5xx > 0 && streaks.consecutive_5xx >= od.consecutive_5xx)
        || (od.consecutive_gateway_failure > 0
            && streaks.consecutive_gateway_failure >= od.consecutive_gateway_failure)
    {
        eject(
            cluster,
            endpoint,
            od.base_ejection_time,
            od.max_ejection_percent,
        );
    }
}

fn eject(
    cluster: &Arc<Cluster>,
    endpoint: &Arc<Endpoint>,
    base: std::time::Duration,
    max_percent: u32,
) {
    let set = cluster.endpoints();
    let total = set.endpoints.len();
    let ejected = set
        .endpoints
        .iter()
        .filter(|e| e.health().is_ejected())
        .count();
    if (ejected + 1) * 100 > total * max_percent as usize {
        return;
    }
    let Some(n) = endpoint.health().eject() else {
        return;
    };
    let duration = base * n;
    cluster
        .stats()
        .outlier_ejections_total
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(cluster = %cluster.name(), endpoint = %endpoint.addr, ejection = n, duration = ?duration, "endpoint ejected");
    let cluster_name = cluster.name().to_owned();
    let endpoint = Arc::clone(endpoint);
    tokio::spawn(async move {
        tokio::time::sleep(duration).await;
        endpoint.health().readmit();
        tracing::info!(cluster = %cluster_name, endpoint = %endpoint.addr, "endpoint readmitted");
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterSpec, OutlierDetectionSpec};
    use http::StatusCode;
    use std::time::Duration;

    fn cluster(n: u16, max_percent: u32) -> Arc<Cluster> {
        let spec = ClusterSpec {
            outlier_detection: Some(OutlierDetectionSpec {
                consecutive_5xx: 3,
                consecutive_gateway_failure: 2,
                base_ejection_time: Duration::from_secs(10),
                max_ejection_percent: max_percent,
            }),
            ..crate::cluster::test_spec(n)
        };
        Cluster::spawn(spec)
    }

    fn fail(c: &Arc<Cluster>, e: &Arc<Endpoint>, o: Outcome, times: usize) {
        for _ in 0..times {
            record_outcome(c, e, o);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_for_a_growing_time() {
        let c = cluster(3, 50);
        let e = Arc::clone(&c.endpoints().endpoints[0]);
        fail(
            &c,
            &e,
            Outcome::Status(StatusCode::INTERNAL_SERVER_ERROR),
            2,
        );
        assert!(!e.health().is_ejected(), "two 500s are under the threshold");
        record_outcome(&c, &e, Outcome::Status(StatusCode::OK));
        fail(
            &c,
            &e,
            Outcome::Status(StatusCode::INTERNAL_SERVER_ERROR),
            2,
        );
        assert!(!e.health().is_ejected(), "a success resets the streak");
        record_outcome(&c, &e, Outcome::Status(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(e.health().is_ejected(), "three in a row eject");
        assert!(c.pick(&[]).is_some_and(|p| p.addr != e.addr));

        tokio::time::sleep(Duration::from_millis(10_001)).await;
        tokio::task::yield_now().await;
        assert!(!e.health().is_ejected(), "readmitted after the base time");

        fail(
            &c,
            &e,
            Outcome::Failed(UpstreamErrorKind::ConnectFailure),
            2,
        );
        assert!(e.health().is_ejected(), "two gateway failures eject");
        tokio::time::sleep(Duration::from_millis(10_001)).await;
        tokio::task::yield_now().await;
        assert!(
            e.health().is_ejected(),
            "second ejection lasts twice as long"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        tokio::task::yield_now().await;
        assert!(!e.health().is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_ejection_percent() {
        let c = cluster(4, 50);
        let eps: Vec<_> = c.endpoints().endpoints.iter().map(Arc::clone).collect();
        for e in &eps {
            fail(&c, e, Outcome::PerTryTimeout, 5);
        }
        let ejected = eps.iter().filter(|e| e.health().is_ejected()).count();
        assert_eq!(ejected, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn local_overflow_is_not_the_endpoints_fault() {
        let c = cluster(2, 100);
        let e = Arc::clone(&c.endpoints().endpoints[0]);
        fail(&c, &e, Outcome::Failed(UpstreamErrorKind::Overflow), 10);
        assert!(!e.health().is_ejected());
    }
}
