//! The dispatch and respond stages: the request goes to its cluster under
//! the route's timeout (retries included), and the upstream's response
//! head is finished for the downstream.

use std::sync::Arc;

use http::header::HeaderValue;
use http::{Response, StatusCode};
use tokio::time::Instant;

use super::outbound::Outbound;
use super::{
    Downstream, Exchange, HttpContext, ProxyError, ResponseBody, Route, forward, headers, local,
};
use crate::cluster::{Cluster, UpstreamBody};

/// Sends `out` to `cluster` and finishes the response; a failure becomes
/// the local reply (with `x-mesh-attempt-count` once an attempt was made).
pub(super) async fn dispatch(
    ctx: &HttpContext,
    down: &Downstream,
    route: &Route,
    cluster: &Arc<Cluster>,
    out: Outbound,
    deadline: Instant,
    mut obs: Option<&mut Exchange>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let sent = forward::forward(route.retry.as_ref(), cluster, out.parts, out.body);
    let (result, attempts) = match tokio::time::timeout_at(deadline, sent).await {
        Ok(f) => {
            if let Some(x) = obs.as_deref_mut() {
                x.attempts = f.attempts;
                x.upstream = f.endpoint;
                x.retries = f.retries;
            }
            (f.result, f.attempts)
        }
        Err(_) => {
            super::upstream::record_route_timeout(cluster.stats());
            let timeout = route.timeout.unwrap_or(ctx.limits.stream_idle_timeout);
            (Err(ProxyError::Timeout(timeout)), 0)
        }
    };
    let attempt_count = HeaderValue::from(attempts.max(1));
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            let mut reply = local::reply(&ctx.listener, e);
            if attempts > 0 {
                reply
                    .headers_mut()
                    .insert(headers::X_MESH_ATTEMPT_COUNT.clone(), attempt_count);
            }
            return reply;
        }
    };
    let upstream_time = started.elapsed();
    cluster.stats().upstream_rq_time.record(upstream_time);
    let upstream_ms = upstream_time.as_millis() as u64;
    if let Some(x) = obs {
        x.upstream_ms = Some(upstream_ms);
    }
    respond(
        ctx,
        down,
        route,
        resp,
        out.upgrade,
        upstream_ms,
        attempt_count,
    )
}

/// The upstream's response for the downstream: hop-by-hop headers out,
/// the mesh's headers and the route's header rules in; an accepted
/// upgrade is handed to the listener.
fn respond(
    ctx: &HttpContext,
    down: &Downstream,
    route: &Route,
    mut resp: Response<UpstreamBody>,
    upgrade: bool,
    upstream_ms: u64,
    attempt_count: HeaderValue,
) -> Response<ResponseBody> {
    let upgraded = upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if upgraded {
        // The listener joins the two sides once the 101 is written.
        let upstream = hyper::upgrade::on(&mut resp);
        if let Ok(mut slot) = down.upgrade.lock() {
            *slot = Some(upstream);
        }
    }
    let h = resp.headers_mut();
    headers::strip_hop_by_hop(h, upgraded);
    h.insert(
        headers::X_MESH_UPSTREAM_SERVICE_TIME.clone(),
        HeaderValue::from(upstream_ms),
    );
    h.insert(headers::X_MESH_ATTEMPT_COUNT.clone(), attempt_count);
    headers::apply_mutations(h, &route.response_headers);
    let idle = ctx.limits.stream_idle_timeout;
    resp.map(|b| ResponseBody::upstream(b, idle))
}
