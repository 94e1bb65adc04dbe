//! The attempt loop of one request: pick an endpoint, check out a
//! connection, send, classify the outcome once, and retry when the route's
//! policy, the method, the body, the cluster's retry breaker and the retry
//! budget all allow it. Each outcome also feeds outlier detection.
//!
//! On a route with retries the body streams upstream as it arrives (never
//! held back until it is complete) while its first 64 KiB are kept
//! ([`ReplayBody`]): a retry replays them and reads on. A request that may
//! have reached the upstream is sent again only when its method allows it
//! and everything sent is still kept; one that never reached it
//! (`connect-failure`, `refused-stream`) is sent again whatever its method.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::request::Parts;
use http::{Request, Response};

use super::ProxyError;
use super::table::Route;
use crate::body::{ReplayBody, ReplaySource, RequestBody};
use crate::cluster::{Cluster, SendError, UpstreamBody, UpstreamError};
use crate::resilience::Outcome;

/// The result of forwarding, with how many attempts it took.
pub struct Forwarded {
    pub result: Result<Response<UpstreamBody>, ProxyError>,
    pub attempts: u32,
    /// The endpoint of the last attempt.
    pub endpoint: Option<std::net::SocketAddr>,
    /// Why each retry happened (empty without retries; no allocation then).
    pub retries: Vec<Outcome>,
}

/// Holds one of the cluster's `max_retries` slots while a retry runs.
struct RetrySlot<'a>(&'a Cluster);

impl<'a> RetrySlot<'a> {
    fn try_take(cluster: &'a Cluster) -> Option<Self> {
        let stats = cluster.stats();
        let max = u64::from(cluster.spec().circuit_breaker.max_retries);
        let taken = stats
            .upstream_retries_active
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then(|| n + 1)
            })
            .is_ok();
        // `then`, not `then_some`: a slot built and dropped would release
        // a slot it never took.
        taken.then(|| Self(cluster))
    }
}

impl Drop for RetrySlot<'_> {
    fn drop(&mut self) {
        self.0
            .stats()
            .upstream_retries_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The parts of the request needed to build it again for a retry.
struct Template {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
}

impl Template {
    fn of(parts: &Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
        }
    }

    fn build(&self, body: RequestBody) -> Request<RequestBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

async fn attempt(
    cluster: &Cluster,
    endpoint: &Arc<crate::cluster::Endpoint>,
    req: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, SendError> {
    match cluster.checkout(endpoint).await {
        Ok(conn) => conn.send(req).await,
        Err(error) => Err(SendError {
            error,
            request: Some(req),
        }),
    }
}

/// Wraps a streamed body so retries can replay it; an empty body needs no
/// copy.
fn replayable(body: RequestBody) -> (RequestBody, Option<ReplaySource>) {
    match body {
        RequestBody::Stream { body } => {
            let (first, source) = ReplayBody::new(body);
            (RequestBody::Replay(first), Some(source))
        }
        other => (other, None),
    }
}

/// Whether a request whose attempt took its body may be sent again:
/// whatever its method when nothing reached the upstream, else only for a
/// listed method; in both cases only while everything sent is still kept.
fn may_send_again(
    policy: &crate::resilience::RetryPolicy,
    method: &http::Method,
    outcome: Outcome,
    source: Option<&ReplaySource>,
) -> bool {
    let body_kept = source.is_none_or(ReplaySource::is_replayable);
    body_kept && (outcome.nothing_sent() || policy.may_resend(method, true))
}

pub async fn forward(
    route: &Route,
    cluster: &Arc<Cluster>,
    parts: Parts,
    body: RequestBody,
) -> Forwarded {
    let policy = route.retry.as_ref().filter(|p| p.spec.attempts > 0);
    let method = parts.method.clone();
    let (body, source, template) = match policy {
        Some(p) => {
            p.budget.deposit();
            let (body, source) = replayable(body);
            (body, source, Some(Template::of(&parts)))
        }
        None => (body, None, None),
    };
    let per_try = policy.and_then(|p| p.spec.per_try_timeout);
    let stats = cluster.stats();
    let mut pending: Option<Request<RequestBody>> = Some(Request::from_parts(parts, body));
    // Endpoints already tried; retries go elsewhere when they can.
    let mut tried: Vec<std::net::SocketAddr> = Vec::new();
    let mut retries: Vec<Outcome> = Vec::new();
    let mut attempts = 0u32;
    // The retry slot held by the attempt in flight, if it is a retry.
    let mut _slot: Option<RetrySlot<'_>> = None;
    loop {
        attempts += 1;
        let Some(req) = pending.take() else {
            unreachable_retry();
            return Forwarded {
                result: Err(ProxyError::BadRequest("request cannot be retried")),
                attempts,
                endpoint: tried.last().copied(),
                retries,
            };
        };
        let Some(endpoint) = cluster.pick(&tried) else {
            return Forwarded {
                result: Err(ProxyError::NoHealthyUpstream {
                    cluster: cluster.name().to_owned(),
                }),
                attempts,
                endpoint: tried.last().copied(),
                retries,
            };
        };
        stats.upstream_rq_total.fetch_add(1, Ordering::Relaxed);
        let sent = match per_try {
            Some(t) => tokio::time::timeout(t, attempt(cluster, &endpoint, req))
                .await
                .ok(),
            None => Some(attempt(cluster, &endpoint, req).await),
        };
        let (outcome, result) = match sent {
            Some(Ok(resp)) => (Outcome::Status(resp.status()), Ok(resp)),
            Some(Err(SendError { error, request })) => {
                pending = request;
                (Outcome::Failed(error.kind), Err(error))
            }
            None => {
                stats
                    .upstream_rq_per_try_timeout
                    .fetch_add(1, Ordering::Relaxed);
                let t = per_try.unwrap_or(Duration::ZERO);
                (
                    Outcome::PerTryTimeout,
                    Err(UpstreamError::timeout(endpoint.addr, t)),
                )
            }
        };
        crate::health::record_outcome(cluster, &endpoint, outcome);
        count_class(cluster, &result);
        // This attempt is over: a retry it was holds its slot no longer.
        _slot = None;
        // The client's own body failed: nothing to retry.
        let client_fault = matches!(&result, Err(e) if e.body_error.is_some());
        // A request handed back unsent goes again as it is; otherwise the
        // next attempt needs a body that can be sent again.
        let can_resend = match policy {
            Some(p)
                if !client_fault
                    && attempts <= p.spec.attempts
                    && p.is_retry_condition(outcome) =>
            {
                pending.is_some() || may_send_again(p, &method, outcome, source.as_ref())
            }
            _ => false,
        };
        let admitted = match policy.filter(|_| can_resend) {
            Some(p) => admit_retry(cluster, p).map(|slot| (p, slot)),
            None => None,
        };
        // Taking the body over from the attempt that just ended happens
        // only now that the retry is certain: it makes that attempt's
        // body fail if its connection still reads it.
        let next = match (&admitted, &pending) {
            (Some(_), None) => next_request(template.as_ref(), source.as_ref()),
            _ => None,
        };
        let Some((p, slot)) = admitted.filter(|_| pending.is_some() || next.is_some()) else {
            return Forwarded {
                result: result.map_err(|e| match outcome {
                    Outcome::PerTryTimeout => ProxyError::Timeout(per_try.unwrap_or_default()),
                    _ => ProxyError::Upstream(e),
                }),
                attempts,
                endpoint: Some(endpoint.addr),
                retries,
            };
        };
        if next.is_some() {
            pending = next;
        }
        drop(result);
        tried.push(endpoint.addr);
        retries.push(outcome);
        _slot = Some(slot);
        stats.upstream_rq_retry.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(p.backoff(attempts)).await;
    }
}

/// The request of a retry: the same head, and the body replayed (empty
/// when the request had none). `None` when the body can no longer be
/// replayed.
fn next_request(
    template: Option<&Template>,
    source: Option<&ReplaySource>,
) -> Option<Request<RequestBody>> {
    let body = match source {
        Some(s) => RequestBody::Replay(s.try_replay()?),
        None => RequestBody::Empty,
    };
    Some(template?.build(body))
}

/// As Envoy does, an attempt that got no response is charged as a 5xx, so
/// the classes add up to upstream_rq_total; a failure of the client's own
/// body is not the upstream's.
fn count_class(cluster: &Cluster, result: &Result<Response<UpstreamBody>, UpstreamError>) {
    let class = match result {
        Ok(resp) => Some((resp.status().as_u16() / 100).clamp(1, 5) as usize - 1),
        Err(e) if e.body_error.is_none() => Some(4),
        Err(_) => None,
    };
    if let Some(class) = class {
        cluster.stats().upstream_rq_class[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// A retry needs a free `max_retries` slot of the cluster and a token of
/// the route's retry budget; each refusal is counted.
fn admit_retry<'a>(
    cluster: &'a Cluster,
    policy: &crate::resilience::RetryPolicy,
) -> Option<RetrySlot<'a>> {
    let Some(slot) = RetrySlot::try_take(cluster) else {
        cluster
            .stats()
            .upstream_rq_retry_overflow
            .fetch_add(1, Ordering::Relaxed);
        return None;
    };
    if policy.budget.try_withdraw() {
        return Some(slot);
    }
    cluster
        .stats()
        .upstream_rq_retry_budget_exhausted
        .fetch_add(1, Ordering::Relaxed);
    None
}

fn unreachable_retry() {
    tracing::error!("retry without a request to send; this is a bug");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CircuitBreakerSpec;

    #[tokio::test]
    async fn retry_slots_are_capped_and_released_exactly_once() {
        let mut spec = crate::cluster::test_spec(1);
        spec.circuit_breaker = CircuitBreakerSpec {
            max_retries: 2,
            ..CircuitBreakerSpec::default()
        };
        let cluster = Cluster::spawn(spec);
        let active = || {
            cluster
                .stats()
                .upstream_retries_active
                .load(Ordering::Relaxed)
        };
        let a = RetrySlot::try_take(&cluster).expect("first slot");
        let b = RetrySlot::try_take(&cluster).expect("second slot");
        assert!(RetrySlot::try_take(&cluster).is_none(), "max_retries is 2");
        assert_eq!(active(), 2, "a refused slot must not touch the count");
        drop(a);
        assert_eq!(active(), 1);
        let c = RetrySlot::try_take(&cluster).expect("a released slot is reusable");
        drop((b, c));
        assert_eq!(active(), 0);
    }
}
