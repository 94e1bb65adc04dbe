//! The limits stage: the header section against the listener's limits
//! (SPEC §3 "Limits") and `limits.headers_with_underscores`.

use std::sync::atomic::Ordering;

use http::Request;
use http::header;
use hyper::body::Incoming;

use super::{HttpContext, ProxyError, headers};
use crate::config::LimitsSpec;

/// Refuses a request beyond the limits; drops or refuses header names with
/// an `_` as configured.
pub(super) fn check(ctx: &HttpContext, req: &mut Request<Incoming>) -> Result<(), ProxyError> {
    if within(req, &ctx.limits)? {
        let action = ctx.limits.headers_with_underscores;
        let dropped = headers::underscores(req.headers_mut(), action)?;
        ctx.stats
            .dropped_headers_with_underscores
            .fetch_add(dropped, Ordering::Relaxed);
    }
    Ok(())
}

/// Checks the header section against the listener limits (HTTP/2 has no
/// parser-level count limit, and HTTP/1.1's buffer limit is approximate).
/// Returns whether a header name has an `_`.
fn within(req: &Request<Incoming>, limits: &LimitsSpec) -> Result<bool, ProxyError> {
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
