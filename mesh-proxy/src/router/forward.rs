//! The attempt loop of one request: pick an endpoint, send, classify the
//! outcome once, and retry when the route's policy, the method, the body,
//! the cluster's retry breaker and the retry budget all allow it. Each
//! outcome is recorded by the upstream (counters, passive health).
//!
//! On a route with retries the body streams upstream as it arrives (never
//! held back until it is complete) while its first 64 KiB are kept
//! ([`ReplayBody`]): a retry replays them and reads on. A request that may
//! have reached the upstream is sent again only when its method allows it
//! and everything sent is still kept; one that never reached it
//! (`connect-failure`, `refused-stream`) is sent again whatever its method.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::request::Parts;
use http::{Request, Response};

use super::ProxyError;
use super::classify::Classified;
use super::upstream::Upstream;
use crate::body::{ReplayBody, ReplaySource, RequestBody};
use crate::cluster::{ClusterStats, Outcome, SendError, UpstreamError};
use crate::resilience::RetryPolicy;

/// The result of forwarding, with how many attempts it took.
pub struct Forwarded<B> {
    pub result: Result<Response<B>, ProxyError>,
    pub attempts: u32,
    /// The endpoint of the last attempt.
    pub endpoint: Option<SocketAddr>,
    /// Why each retry happened (empty without retries; no allocation then).
    pub retries: Vec<Outcome>,
}

/// Holds one of the cluster's `max_retries` slots while a retry runs.
struct RetrySlot<'a>(&'a ClusterStats);

impl<'a> RetrySlot<'a> {
    fn try_take(stats: &'a ClusterStats, max: u64) -> Option<Self> {
        let taken = stats
            .upstream_retries_active
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then(|| n + 1)
            })
            .is_ok();
        // `then`, not `then_some`: a slot built and dropped would release
        // a slot it never took.
        taken.then(|| Self(stats))
    }
}

impl Drop for RetrySlot<'_> {
    fn drop(&mut self) {
        self.0
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

/// What one request's attempts share.
struct Attempts<'p> {
    policy: Option<&'p RetryPolicy>,
    method: http::Method,
    /// The request of the next attempt, when it is ready to go.
    pending: Option<Request<RequestBody>>,
    /// For a retry: the head again, and the kept body.
    template: Option<Template>,
    source: Option<ReplaySource>,
    /// Endpoints already tried; retries go elsewhere when they can.
    tried: Vec<SocketAddr>,
    retries: Vec<Outcome>,
    count: u32,
}

impl<'p> Attempts<'p> {
    fn new(policy: Option<&'p RetryPolicy>, parts: Parts, body: RequestBody) -> Self {
        let policy = policy.filter(|p| p.spec.attempts > 0);
        let method = parts.method.clone();
        let (body, source, template) = match policy {
            Some(p) => {
                p.budget.deposit();
                let (body, source) = replayable(body);
                (body, source, Some(Template::of(&parts)))
            }
            None => (body, None, None),
        };
        Self {
            policy,
            method,
            pending: Some(Request::from_parts(parts, body)),
            template,
            source,
            tried: Vec::new(),
            retries: Vec::new(),
            count: 0,
        }
    }

    fn per_try(&self) -> Option<Duration> {
        self.policy.and_then(|p| p.spec.per_try_timeout)
    }

    /// Whether the policy wants another attempt after `outcome` and a
    /// request can be sent again: the one handed back unsent as it is,
    /// otherwise one with the body replayed.
    fn can_resend(&self, outcome: &Classified) -> bool {
        match self.policy {
            Some(p)
                if !outcome.client_fault
                    && self.count <= p.spec.attempts
                    && p.is_retry_condition(outcome.outcome) =>
            {
                self.pending.is_some()
                    || may_send_again(p, &self.method, outcome.outcome, self.source.as_ref())
            }
            _ => false,
        }
    }

    fn done<B>(
        self,
        result: Result<Response<B>, ProxyError>,
        endpoint: Option<SocketAddr>,
    ) -> Forwarded<B> {
        Forwarded {
            result,
            attempts: self.count,
            endpoint: endpoint.or_else(|| self.tried.last().copied()),
            retries: self.retries,
        }
    }
}

/// Sends the request to `upstream`, retrying as the route's `policy` says.
pub async fn forward<U: Upstream>(
    policy: Option<&RetryPolicy>,
    upstream: &U,
    parts: Parts,
    body: RequestBody,
) -> Forwarded<U::Body> {
    let mut at = Attempts::new(policy, parts, body);
    let stats = upstream.stats();
    // The retry slot held by the attempt in flight, if it is a retry.
    let mut _slot: Option<RetrySlot<'_>> = None;
    loop {
        at.count += 1;
        let Some(req) = at.pending.take() else {
            tracing::error!("retry without a request to send; this is a bug");
            return at.done(
                Err(ProxyError::BadRequest("request cannot be retried")),
                None,
            );
        };
        let Some(endpoint) = upstream.pick(&at.tried) else {
            let cluster = upstream.name().to_owned();
            return at.done(Err(ProxyError::NoHealthyUpstream { cluster }), None);
        };
        let addr = U::addr(&endpoint);
        stats.upstream_rq_total.fetch_add(1, Ordering::Relaxed);
        let (outcome, result) =
            try_once(upstream, &endpoint, req, at.per_try(), &mut at.pending).await;
        upstream.record(&endpoint, &outcome);
        // This attempt is over: a retry it was holds its slot no longer.
        _slot = None;
        let Some(slot) = next_attempt(&mut at, upstream, &outcome) else {
            let per_try = at.per_try().unwrap_or_default();
            let result = result.map_err(|e| match outcome.outcome {
                Outcome::PerTryTimeout => ProxyError::Timeout(per_try),
                _ => ProxyError::Upstream(e),
            });
            return at.done(result, Some(addr));
        };
        drop(result);
        at.tried.push(addr);
        at.retries.push(outcome.outcome);
        _slot = Some(slot);
        stats.upstream_rq_retry.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = at.policy {
            tokio::time::sleep(p.backoff(at.count)).await;
        }
    }
}

/// One attempt, bounded by the per-try timeout. A request the upstream
/// handed back unsent goes to `pending`.
async fn try_once<U: Upstream>(
    upstream: &U,
    endpoint: &U::Endpoint,
    req: Request<RequestBody>,
    per_try: Option<Duration>,
    pending: &mut Option<Request<RequestBody>>,
) -> (Classified, Result<Response<U::Body>, UpstreamError>) {
    let sent = match per_try {
        Some(t) => tokio::time::timeout(t, upstream.send(endpoint, req))
            .await
            .ok(),
        None => Some(upstream.send(endpoint, req).await),
    };
    let result = match sent {
        Some(Ok(resp)) => Ok(resp),
        Some(Err(SendError { error, request })) => {
            *pending = request;
            Err(error)
        }
        None => {
            let classified = Classified::of::<U::Body>(None);
            let addr = U::addr(endpoint);
            return (
                classified,
                Err(UpstreamError::timeout(addr, per_try.unwrap_or_default())),
            );
        }
    };
    (Classified::of(Some(&result)), result)
}

/// Decides on a retry after `outcome`: a slot of the cluster's retry
/// breaker and a budget token are taken, and the next request is made
/// ready. `None`: this outcome is the answer.
fn next_attempt<'u, U: Upstream>(
    at: &mut Attempts<'_>,
    upstream: &'u U,
    outcome: &Classified,
) -> Option<RetrySlot<'u>> {
    if !at.can_resend(outcome) {
        return None;
    }
    let slot = admit_retry(upstream, at.policy?)?;
    if at.pending.is_none() {
        // Taking the body over from the attempt that just ended happens
        // only now that the retry is certain: it makes that attempt's
        // body fail if its connection still reads it.
        at.pending = next_request(at.template.as_ref(), at.source.as_ref());
    }
    at.pending.is_some().then_some(slot)
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
    policy: &RetryPolicy,
    method: &http::Method,
    outcome: Outcome,
    source: Option<&ReplaySource>,
) -> bool {
    let body_kept = source.is_none_or(ReplaySource::is_replayable);
    body_kept && (outcome.nothing_sent() || policy.may_resend(method, true))
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

/// A retry needs a free `max_retries` slot of the cluster and a token of
/// the route's retry budget; each refusal is counted.
fn admit_retry<'a, U: Upstream>(upstream: &'a U, policy: &RetryPolicy) -> Option<RetrySlot<'a>> {
    let stats = upstream.stats();
    let Some(slot) = RetrySlot::try_take(stats, upstream.max_retries()) else {
        stats
            .upstream_rq_retry_overflow
            .fetch_add(1, Ordering::Relaxed);
        return None;
    };
    if policy.budget.try_withdraw() {
        return Some(slot);
    }
    stats
        .upstream_rq_retry_budget_exhausted
        .fetch_add(1, Ordering::Relaxed);
    None
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
