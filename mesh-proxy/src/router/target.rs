//! The target stage: which authority and path a request is for, in the one
//! normal form that routing, rewriting and forwarding share (SPEC §3
//! "Paths and hosts").

use std::borrow::Cow;

use http::header::{self, HeaderValue};
use http::{Request, Uri, Version};
use hyper::body::Incoming;

use super::{ProxyError, normalize};

/// The request's authority and normalized path.
pub(super) struct Target<'u> {
    /// The authority as received (empty for HTTP/1.0 without Host): what
    /// goes upstream as Host unless the route rewrites it.
    pub authority: HeaderValue,
    /// The normalized path, `;parameters` kept (what goes upstream).
    pub path: Cow<'u, str>,
    /// The target as received.
    pub uri: &'u Uri,
}

impl<'u> Target<'u> {
    /// Reads the target of `req`; `uri` is the caller's copy of its URI.
    pub(super) fn read(req: &Request<Incoming>, uri: &'u Uri) -> Result<Self, ProxyError> {
        let authority = authority(req)?;
        if authority.to_str().is_err() {
            return Err(ProxyError::BadRequest("invalid host"));
        }
        Ok(Self {
            path: normalize::normalize_path(uri.path())?,
            authority,
            uri,
        })
    }

    /// The host routes match: lower case, without port (empty without one).
    pub(super) fn host(&self) -> Result<Cow<'_, str>, ProxyError> {
        match self.authority.to_str() {
            Ok("") => Ok(Cow::Borrowed("")),
            Ok(a) => Ok(normalize::host_for_routing(a)?),
            Err(_) => Err(ProxyError::BadRequest("invalid host")),
        }
    }

    /// The path routes match: without `;parameters`.
    pub(super) fn route_path(&self) -> Cow<'_, str> {
        normalize::without_params(&self.path)
    }
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
