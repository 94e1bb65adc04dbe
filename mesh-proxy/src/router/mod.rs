//! The router: from a validated downstream request to an upstream response.
//!
//! Owns: request-target and Host checks, route matching, header rules,
//! the per-route policy chain (timeout; retries, rate limits and tracing
//! plug in here), and turning every failure into the local reply of SPEC §3.
//! Key types: [`RouteTable`], [`HttpContext`], [`ProxyError`]. Must not:
//! accept connections or manage pools (that is `listener` and `cluster`).

mod forward;
pub mod headers;
mod local;
pub mod normalize;
pub mod observe;
mod reply;
mod table;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::{DownstreamBody, RequestBody};
use crate::config::{LimitsSpec, UpstreamProtocol};
use crate::identity::allow::Admission;
pub use headers::{X_MESH_ERROR, X_REQUEST_ID};
pub use observe::{Exchange, Observe, ObservedBody};
pub use reply::{ProxyError, ResponseBody, local_reply};
pub use table::{Action, Route, RouteTable};

/// Counters of one HTTP listener (SPEC §3 "Metrics").
#[derive(Debug, Default)]
pub struct HttpStats {
    pub downstream_rq_total: AtomicU64,
    /// Index 0 = 1xx … 4 = 5xx.
    pub downstream_rq_class: [AtomicU64; 5],
    /// Requests the proxy answered itself (every local reply).
    pub downstream_rq_local: AtomicU64,
    /// Request headers removed for an `_` in their name
    /// (`limits.headers_with_underscores`).
    pub dropped_headers_with_underscores: AtomicU64,
    /// Requests refused by a listener limit, by reason.
    pub downstream_rq_rejected: crate::telemetry::metrics::RejectCounters,
    pub downstream_cx_total: AtomicU64,
    pub downstream_cx_active: AtomicU64,
    /// Connections closed at accept because `max_connections` was reached.
    pub downstream_cx_overflow: AtomicU64,
    /// Idle HTTP/1.1 connections parked without parser buffers (gauge).
    pub downstream_cx_parked: AtomicU64,
    /// The last local replies, for the admin dashboard.
    pub local_replies: crate::telemetry::local_replies::LocalReplyLog,
}

/// What every request on one HTTP listener shares.
pub struct HttpContext {
    pub listener: Arc<str>,
    pub routes: ArcSwap<RouteTable>,
    pub limits: LimitsSpec,
    pub trust_forwarded: bool,
    pub stats: HttpStats,
    /// Access logs and tracing; `None` when neither is configured.
    pub observe: Option<Arc<Observe>>,
}

/// Facts about the downstream connection a request arrived on.
pub struct Downstream {
    pub peer: SocketAddr,
    /// The peer IP, formatted once per connection.
    pub peer_ip: HeaderValue,
    pub is_tls: bool,
    /// The peer against the listener's current allow-list (`None`: no
    /// mutual TLS, always admitted). Checked per request, so a reload that
    /// drops the peer answers its next request with 403 `UAEX`.
    pub admission: Option<Admission>,
    /// `x-forwarded-client-cert` for the app, on mutual TLS listeners,
    /// built once per connection.
    pub xfcc: Option<HeaderValue>,
    /// The peer's SPIFFE ID on mutual TLS listeners (for spans and logs).
    pub peer_identity: Option<String>,
    /// Set by the listener when the proxy drains: HTTP/1.1 responses then
    /// carry `Connection: close`.
    pub draining: std::sync::atomic::AtomicBool,
    /// Whether this connection speaks HTTP/2 (known from its first request).
    pub is_http2: std::sync::atomic::AtomicBool,
    /// Requests whose response has not been fully sent yet (the listener
    /// parks an HTTP/1.1 connection only when this is zero).
    pub open_requests: std::sync::atomic::AtomicU32,
    /// Requests received on this connection so far.
    pub requests: AtomicU64,
    /// The upstream side of an HTTP/1.1 upgrade the upstream accepted (101):
    /// once the 101 is written, the listener joins it to the downstream
    /// connection.
    pub upgrade: std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>,
}

impl Downstream {
    pub fn new(peer: SocketAddr) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            peer,
            peer_ip,
            is_tls: false,
            admission: None,
            xfcc: None,
            peer_identity: None,
            draining: std::sync::atomic::AtomicBool::new(false),
            is_http2: std::sync::atomic::AtomicBool::new(false),
            open_requests: std::sync::atomic::AtomicU32::new(0),
            requests: AtomicU64::new(0),
            upgrade: std::sync::Mutex::new(None),
        }
    }

    /// Whether the listener's allow-list admits the peer now.
    pub fn is_allowed(&self) -> bool {
        self.admission.as_ref().is_none_or(Admission::is_allowed)
    }
}

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
    // The flag is this proxy's only when it answered itself: an upstream's
    // own `x-mesh-error` (another hop's, or forged) is passed on, not logged.
    let (mut resp, flag) = match proxy(&ctx, &down, req, &uri, exchange.as_deref_mut()).await {
        Ok(mut resp) => match resp.extensions_mut().remove::<local::Noted>() {
            Some(noted) => {
                let flag = noted.flag();
                local::record(&ctx, noted, resp.status(), &method, &uri);
                (resp, Some(flag))
            }
            None => (resp, None),
        },
        Err(e) => {
            tracing::debug!(listener = %ctx.listener, error = %e, flag = e.flag(), "local reply");
            let noted = local::Noted::of(&e);
            let flag = noted.flag();
            let resp = e.into_response();
            local::record(&ctx, noted, resp.status(), &method, &uri);
            (resp, Some(flag))
        }
    };
    resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
    ctx.stats
        .downstream_rq_total
        .fetch_add(1, Ordering::Relaxed);
    let class = (resp.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    ctx.stats.downstream_rq_class[class].fetch_add(1, Ordering::Relaxed);
    if let Some(x) = exchange.as_mut() {
        x.respond(resp.status().as_u16(), flag);
    }
    if !is_http2 && down.draining.load(Ordering::Relaxed) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp.map(|b| ObservedBody::new(b, exchange))
}

/// Checks the header section against the listener limits (HTTP/2 has no
/// parser-level count limit, and HTTP/1.1's buffer limit is approximate).
/// Returns whether a header name has an `_`.
fn check_limits(req: &Request<Incoming>, limits: &LimitsSpec) -> Result<bool, ProxyError> {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > limits.max_uri_kb as usize * 1024 {
        return Err(ProxyError::UriTooLong);
    }
    let headers = req.headers();
    // hyper accepts `chunked, chunked` (RELIABILITY F5); anything but one
    // plain `chunked` is a framing we refuse to interpret.
    let mut te = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(v) = te.next()
        && (te.next().is_some() || !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"))
    {
        return Err(ProxyError::BadRequest("unsupported transfer-encoding"));
    }
    if headers.len() > limits.max_request_headers_count as usize {
        return Err(ProxyError::HeadersTooLarge);
    }
    // One pass over the names serves the size limit and the underscore check.
    let mut size = 0;
    let mut has_underscore = false;
    for (k, v) in headers {
        size += k.as_str().len() + v.len() + 4;
        has_underscore |= k.as_str().as_bytes().contains(&b'_');
    }
    if size > limits.max_request_headers_kb as usize * 1024 {
        return Err(ProxyError::HeadersTooLarge);
    }
    if limits.max_request_body_mb > 0 {
        let max = u64::from(limits.max_request_body_mb) * 1024 * 1024;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    Ok(has_underscore)
}

/// The request's authority: the absolute-form target's, else `:authority`
/// (HTTP/2), else the single Host header (RFC 9112 §3.2). A Host header is
/// returned as a cheap reference-counted clone; empty for HTTP/1.0 without one.
fn authority(req: &Request<Incoming>) -> Result<HeaderValue, ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    // Two Host fields are a 400 even when an absolute-form target names the
    // authority (RFC 9112 §3.2): which one a next hop reads is not ours to guess.
    if second.is_some() {
        return Err(ProxyError::BadRequest("more than one host header"));
    }
    if let Some(a) = req.uri().authority() {
        return HeaderValue::from_str(a.as_str())
            .map_err(|_| ProxyError::BadRequest("invalid host"));
    }
    match first {
        Some(h) => Ok(h.clone()),
        None if req.version() == Version::HTTP_10 => Ok(HeaderValue::from_static("")),
        None => Err(ProxyError::BadRequest("missing host header")),
    }
}

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
    if check_limits(&req, &ctx.limits)? {
        let action = ctx.limits.headers_with_underscores;
        let dropped = headers::underscores(req.headers_mut(), action)?;
        ctx.stats
            .dropped_headers_with_underscores
            .fetch_add(dropped, Ordering::Relaxed);
    }
    // An owned, cheap (reference-counted) copy, so the checks below can
    // borrow it while the request itself is taken apart; `uri` is the
    // caller's copy of the target, for the same reason.
    let authority = authority(&req)?;
    let authority_str = authority
        .to_str()
        .map_err(|_| ProxyError::BadRequest("invalid host"))?;
    let host = if authority_str.is_empty() {
        Cow::Borrowed("")
    } else {
        normalize::host_for_routing(authority_str)?
    };
    // One normal form for routing, rewriting and forwarding: routes see it
    // without `;parameters`, the upstream gets it with them.
    let path = normalize::normalize_path(uri.path())?;
    let table = ctx.routes.load_full();
    let route = table
        .find(
            &host,
            &normalize::without_params(&path),
            req.method(),
            req.headers(),
        )
        .ok_or(ProxyError::NoRoute)?;
    if let Some(x) = obs.as_deref_mut() {
        x.route = Some(Arc::clone(&route.name));
    }
    if route
        .rate_limit
        .as_ref()
        .is_some_and(|rl| !rl.try_acquire())
    {
        return Err(ProxyError::RateLimited);
    }
    let cluster = match &route.action {
        Action::Direct { status, body } => {
            return Ok(direct_response(route, *status, body.clone()));
        }
        action => action.cluster().ok_or(ProxyError::NoRoute)?,
    };

    let upgrade = req.version() == Version::HTTP_11
        && headers::wants_upgrade(req.headers())
        && cluster.protocol() == UpstreamProtocol::Http1;
    let (mut parts, body) = req.into_parts();

    // The upstream request reuses the downstream head: only what changes is rewritten.
    let upstream_path = route.rewrite_path(&path)?;
    let unchanged = matches!(
        (&path, &upstream_path),
        (Cow::Borrowed(_), Cow::Borrowed(_))
    );
    let path_and_query = match (unchanged, uri.path_and_query(), uri.query()) {
        (true, Some(pq), _) => pq.clone(),
        (_, _, Some(q)) => PathAndQuery::try_from(format!("{upstream_path}?{q}"))
            .map_err(|_| ProxyError::BadRequest("invalid request target"))?,
        (_, _, None) => PathAndQuery::try_from(upstream_path.as_ref())
            .map_err(|_| ProxyError::BadRequest("invalid request target"))?,
    };
    // An HTTP/1.0 request without Host goes upstream with the cluster's
    // name as its Host (nginx sends its upstream's name): many servers
    // answer an empty Host with 400 and close the pooled connection.
    let host_value = match route.host_rewrite.clone() {
        Some(h) => h,
        None if authority.is_empty() => HeaderValue::from_str(cluster.name())
            .map_err(|_| ProxyError::BadRequest("invalid host"))?,
        None => authority,
    };
    let h = &mut parts.headers;
    headers::strip_hop_by_hop(h, upgrade);
    // Only the mTLS ingress may tell the app who called; a client's own
    // value is never passed on.
    match &down.xfcc {
        Some(xfcc) => h.insert(headers::X_FORWARDED_CLIENT_CERT.clone(), xfcc.clone()),
        None => h.remove(&headers::X_FORWARDED_CLIENT_CERT),
    };
    headers::set_forwarded(
        h,
        &down.peer_ip,
        if down.is_tls { "https" } else { "http" },
        ctx.trust_forwarded,
    );
    headers::apply_mutations(h, &route.request_headers);
    if let Some(x) = obs.as_deref_mut() {
        x.cluster = Some(Arc::clone(cluster.name_arc()));
        x.inject(h);
    }
    match cluster.protocol() {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            parts.uri = Uri::from(path_and_query);
            h.insert(header::HOST, host_value);
        }
        UpstreamProtocol::Http2 => {
            parts.version = Version::HTTP_2;
            let authority = Authority::try_from(host_value.as_bytes())
                .map_err(|_| ProxyError::BadRequest("invalid host"))?;
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(authority);
            uri.path_and_query = Some(path_and_query);
            parts.uri = Uri::from_parts(uri)
                .map_err(|_| ProxyError::BadRequest("invalid request target"))?;
            h.remove(header::HOST);
        }
    }
    let body = if body.is_end_stream() {
        RequestBody::Empty
    } else {
        let max = u64::from(ctx.limits.max_request_body_mb) * 1024 * 1024;
        let limits = &ctx.limits;
        let mut stream = DownstreamBody::new(
            body,
            limits.body_idle_timeout,
            max,
            limits.headers_with_underscores,
        );
        if let Some(x) = obs.as_deref_mut() {
            let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
            x.bytes_received = Some(Arc::clone(&counter));
            stream = stream.counted(counter);
        }
        RequestBody::stream(stream)
    };
    let started = Instant::now();
    // The route timeout covers every attempt and backoff until response
    // headers; without one, the stream idle timeout still bounds the wait.
    let head_timeout = route.timeout.unwrap_or(ctx.limits.stream_idle_timeout);
    let (result, attempts) =
        match tokio::time::timeout(head_timeout, forward::forward(route, cluster, parts, body))
            .await
        {
            Ok(f) => {
                if let Some(x) = obs.as_deref_mut() {
                    x.attempts = f.attempts;
                    x.upstream = f.endpoint;
                    x.retries = f.retries;
                }
                (f.result, f.attempts)
            }
            Err(_) => {
                let stats = cluster.stats();
                stats.upstream_rq_timeout.fetch_add(1, Ordering::Relaxed);
                // The attempt in flight ends here, charged as a 5xx (a 504).
                stats.upstream_rq_class[4].fetch_add(1, Ordering::Relaxed);
                (Err(ProxyError::Timeout(head_timeout)), 0)
            }
        };
    let attempt_count = HeaderValue::from(attempts.max(1));
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(listener = %ctx.listener, error = %e, flag = e.flag(), "local reply");
            let noted = local::Noted::of(&e);
            let mut local = e.into_response();
            local.extensions_mut().insert(noted);
            if attempts > 0 {
                local
                    .headers_mut()
                    .insert(headers::X_MESH_ATTEMPT_COUNT.clone(), attempt_count);
            }
            return Ok(local);
        }
    };
    let upstream_time = started.elapsed();
    cluster.stats().upstream_rq_time.record(upstream_time);
    let upstream_ms = upstream_time.as_millis() as u64;
    if let Some(x) = obs {
        x.upstream_ms = Some(upstream_ms);
    }

    if upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // The listener joins the two sides once the 101 is written.
        let upstream = hyper::upgrade::on(&mut resp);
        if let Ok(mut slot) = down.upgrade.lock() {
            *slot = Some(upstream);
        }
        headers::strip_hop_by_hop(resp.headers_mut(), true);
    } else {
        headers::strip_hop_by_hop(resp.headers_mut(), false);
    }
    let h = resp.headers_mut();
    h.insert(
        headers::X_MESH_UPSTREAM_SERVICE_TIME.clone(),
        HeaderValue::from(upstream_ms),
    );
    h.insert(headers::X_MESH_ATTEMPT_COUNT.clone(), attempt_count);
    headers::apply_mutations(h, &route.response_headers);
    let idle = ctx.limits.stream_idle_timeout;
    Ok(resp.map(|b| ResponseBody::upstream(b, idle)))
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
