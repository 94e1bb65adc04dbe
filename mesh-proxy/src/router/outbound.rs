//! The outbound stage: the upstream request, built from the downstream one.
//! Only what changes is rewritten (target, Host, hop-by-hop and forwarding
//! headers, the route's header rules); the head is reused.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;

use super::target::Target;
use super::{Downstream, Exchange, HttpContext, ProxyError, Route, headers};
use crate::body::{DownstreamBody, RequestBody};
use crate::cluster::Cluster;
use crate::config::UpstreamProtocol;

/// The request to send upstream, and whether it asks for an upgrade the
/// upstream may accept.
pub(super) struct Outbound {
    pub parts: Parts,
    pub body: RequestBody,
    pub upgrade: bool,
}

/// Builds the upstream request for `cluster` from `req`.
pub(super) fn prepare(
    ctx: &HttpContext,
    down: &Downstream,
    route: &Route,
    cluster: &Cluster,
    req: Request<Incoming>,
    target: Target<'_>,
    mut obs: Option<&mut Exchange>,
) -> Result<Outbound, ProxyError> {
    let upgrade = req.version() == Version::HTTP_11
        && headers::wants_upgrade(req.headers())
        && cluster.protocol() == UpstreamProtocol::Http1;
    let (mut parts, body) = req.into_parts();
    let path_and_query = upstream_target(route, &target)?;
    // An HTTP/1.0 request without Host goes upstream with the cluster's
    // name as its Host (nginx sends its upstream's name): many servers
    // answer an empty Host with 400 and close the pooled connection.
    let host_value = match route.host_rewrite.clone() {
        Some(h) => h,
        None if target.authority.is_empty() => HeaderValue::from_str(cluster.name())
            .map_err(|_| ProxyError::BadRequest("invalid host"))?,
        None => target.authority,
    };
    let h = &mut parts.headers;
    headers::strip_hop_by_hop(h, upgrade);
    // Only the mTLS ingress may tell the app who called; a client's own
    // value is never passed on.
    match &down.xfcc {
        Some(xfcc) => h.insert(headers::X_FORWARDED_CLIENT_CERT.clone(), xfcc.clone()),
        None => h.remove(&headers::X_FORWARDED_CLIENT_CERT),
    };
    let proto = if down.is_tls { "https" } else { "http" };
    headers::set_forwarded(h, &down.peer_ip, proto, ctx.trust_forwarded);
    headers::apply_mutations(h, &route.request_headers);
    if let Some(x) = obs.as_deref_mut() {
        x.cluster = Some(Arc::clone(cluster.name_arc()));
        x.inject(h);
    }
    set_target(&mut parts, cluster.protocol(), path_and_query, host_value)?;
    let body = request_body(ctx, body, obs);
    Ok(Outbound {
        parts,
        body,
        upgrade,
    })
}

/// The path and query to send: the received ones when neither
/// normalization nor the route changed the path.
fn upstream_target(route: &Route, target: &Target<'_>) -> Result<PathAndQuery, ProxyError> {
    use std::borrow::Cow;
    let upstream_path = route.rewrite_path(&target.path)?;
    let unchanged = matches!(
        (&target.path, &upstream_path),
        (Cow::Borrowed(_), Cow::Borrowed(_))
    );
    let invalid = |_| ProxyError::BadRequest("invalid request target");
    let uri = target.uri;
    match (unchanged, uri.path_and_query(), uri.query()) {
        (true, Some(pq), _) => Ok(pq.clone()),
        (_, _, Some(q)) => PathAndQuery::try_from(format!("{upstream_path}?{q}")).map_err(invalid),
        (_, _, None) => PathAndQuery::try_from(upstream_path.as_ref()).map_err(invalid),
    }
}

/// Version, target and Host as the upstream protocol wants them.
fn set_target(
    parts: &mut Parts,
    protocol: UpstreamProtocol,
    path_and_query: PathAndQuery,
    host: HeaderValue,
) -> Result<(), ProxyError> {
    match protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            parts.uri = Uri::from(path_and_query);
            parts.headers.insert(header::HOST, host);
        }
        UpstreamProtocol::Http2 => {
            parts.version = Version::HTTP_2;
            let authority = Authority::try_from(host.as_bytes())
                .map_err(|_| ProxyError::BadRequest("invalid host"))?;
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(authority);
            uri.path_and_query = Some(path_and_query);
            parts.uri = Uri::from_parts(uri)
                .map_err(|_| ProxyError::BadRequest("invalid request target"))?;
            parts.headers.remove(header::HOST);
        }
    }
    Ok(())
}

/// The downstream body with the listener's limits (and counted when the
/// request is observed); nothing to wrap for an empty one.
fn request_body(ctx: &HttpContext, body: Incoming, obs: Option<&mut Exchange>) -> RequestBody {
    if body.is_end_stream() {
        return RequestBody::Empty;
    }
    let limits = &ctx.limits;
    let max = u64::from(limits.max_request_body_mb) * 1024 * 1024;
    let mut stream = DownstreamBody::new(
        body,
        limits.body_idle_timeout,
        max,
        limits.headers_with_underscores,
    );
    if let Some(x) = obs {
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        x.bytes_received = Some(Arc::clone(&counter));
        stream = stream.counted(counter);
    }
    RequestBody::stream(stream)
}
