//! The router: from a validated downstream request to an upstream response.
//!
//! A request passes the stages of [`proxy`], in order, each in its own
//! module: admission (the allow-list, per request) → limits → target
//! (authority and normalized path) → route → the route's policies
//! (`crate::policy`: rate limit, fault, …) → outbound (the upstream
//! request) → dispatch (timeout, retries via [`forward`] over the
//! [`upstream::Upstream`] seam) → respond. Each stage continues or ends
//! the request with a [`ProxyError`], which becomes the local reply of
//! SPEC §3 exactly once, in [`handle`].
//! Must not: accept connections or manage pools (`listener`, `cluster`).

mod classify;
mod context;
mod dispatch;
mod flag;
mod forward;
pub mod headers;
mod limits;
mod local;
pub mod normalize;
pub mod observe;
mod outbound;
mod reply;
mod table;
mod target;
pub mod upstream;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

pub use classify::Classified;
pub use context::{Downstream, HttpContext, HttpStats};
pub use flag::ResponseFlag;
pub use headers::{X_MESH_ERROR, X_REQUEST_ID};
pub use observe::{Exchange, Observe, ObservedBody};
pub use reply::{PolicyReply, ProxyError, ResponseBody, local_reply};
pub use table::{Action, Route, RouteTable, TableError};

use crate::policy::RequestView;

/// Serves one downstream request: never fails, every error becomes a local reply.
pub async fn handle(
    ctx: Arc<HttpContext>,
    down: Arc<Downstream>,
    mut req: Request<Incoming>,
) -> Response<ObservedBody> {
    let is_http2 = req.version() == Version::HTTP_2;
    if is_http2 {
        down.is_http2.store(true, Ordering::Relaxed);
    }
    let request_id = match req.headers().get(&X_REQUEST_ID) {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            let id = headers::new_request_id();
            req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    };
    // Reference-counted copies, for the record of a local reply; `proxy`
    // reads the target from this one too.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let mut exchange = ctx
        .observe
        .as_ref()
        .map(|o| o.begin(&req, down.peer, &ctx.listener, down.peer_identity.clone()));
    let mut resp = match proxy(&ctx, &down, req, &uri, exchange.as_deref_mut()).await {
        Ok(resp) => resp,
        Err(e) => local::reply(&ctx.listener, e),
    };
    // The flag is this proxy's only when it answered itself: an upstream's
    // own `x-mesh-error` (another hop's, or forged) is passed on, not logged.
    let flag = resp.extensions_mut().remove::<local::Noted>().map(|noted| {
        let flag = noted.flag();
        local::record(&ctx, noted, resp.status(), &method, &uri);
        flag
    });
    resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
    ctx.stats
        .downstream_rq_total
        .fetch_add(1, Ordering::Relaxed);
    let class = classify::class_of(resp.status());
    ctx.stats.downstream_rq_class[class].fetch_add(1, Ordering::Relaxed);
    if let Some(x) = exchange.as_mut() {
        x.respond(resp.status().as_u16(), flag.map(ResponseFlag::as_str));
    }
    if !is_http2 && down.draining.load(Ordering::Relaxed) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp.map(|b| ObservedBody::new(b, exchange))
}

/// The request's way through the stages, top to bottom.
async fn proxy(
    ctx: &HttpContext,
    down: &Downstream,
    mut req: Request<Incoming>,
    uri: &Uri,
    mut obs: Option<&mut Exchange>,
) -> Result<Response<ResponseBody>, ProxyError> {
    if !down.is_allowed() {
        return Err(ProxyError::Unauthorized);
    }
    limits::check(ctx, &mut req)?;
    let target = target::Target::read(&req, uri)?;
    let table = ctx.routes.load_full();
    let route_path = target.route_path();
    let route = table
        .find(&target.host()?, &route_path, req.method(), req.headers())
        .ok_or(ProxyError::NoRoute)?;
    if let Some(x) = obs.as_deref_mut() {
        x.route = Some(Arc::clone(&route.name));
    }
    // The route timeout runs from here: policy delays count against it.
    let timeout = route.timeout.unwrap_or(ctx.limits.stream_idle_timeout);
    let deadline = crate::body::deadline_after(timeout);
    if route.policies.is_configured() {
        let view = RequestView {
            method: req.method(),
            path: &route_path,
            headers: req.headers(),
            peer: down.admission.as_ref().and_then(|a| a.peer()),
            route: &route.name.name,
        };
        let applied = tokio::time::timeout_at(deadline, route.policies.apply(&view)).await;
        let authz_rule = applied.map_err(|_| ProxyError::Timeout(timeout))??;
        if let Some(x) = obs.as_deref_mut() {
            x.authz_rule = authz_rule;
        }
    }
    drop(route_path);
    let cluster = match &route.action {
        Action::Direct { status, body } => {
            return Ok(direct_response(route, *status, body.clone()));
        }
        action => action.cluster().ok_or(ProxyError::NoRoute)?,
    };
    let out = outbound::prepare(ctx, down, route, cluster, req, target, obs.as_deref_mut())?;
    Ok(dispatch::dispatch(ctx, down, route, cluster, out, deadline, obs).await)
}

fn direct_response(
    route: &Route,
    status: StatusCode,
    body: bytes::Bytes,
) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::local(body));
    *resp.status_mut() = status;
    headers::apply_mutations(resp.headers_mut(), &route.response_headers);
    resp
}
