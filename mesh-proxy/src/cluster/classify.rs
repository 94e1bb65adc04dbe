//! Classifying a failed upstream exchange, once: retries, outlier
//! detection, metrics and local replies all read the result.

use super::{Endpoint, UpstreamError, UpstreamErrorKind};
use crate::body::{BodyError, BodyErrorKind};

/// Classifies a hyper client error once, for every reader.
pub(super) fn classify(e: hyper::Error, endpoint: &Endpoint) -> UpstreamError {
    let addr = Some(endpoint.addr);
    let body_error = find_body_error(&e);
    // A TLS alert here (TLS 1.3: the upstream judges our certificate after
    // the handshake looks complete to us, and refuses at our first read)
    // arrives after the request started to be written: a reset, not a
    // connect failure, so a POST is not sent again.
    let h2 = find_h2_error(&e);
    let kind = if e.is_parse() || e.is_parse_status() {
        UpstreamErrorKind::Protocol
    } else if h2.is_some_and(|h2| h2.reason() == Some(h2::Reason::REFUSED_STREAM)) {
        // The upstream did not process the request at all (RFC 9113 §8.7),
        // so it is safe to retry whatever the method.
        UpstreamErrorKind::RefusedStream
    } else if h2
        .is_some_and(|h2| h2.is_library() && h2.reason() == Some(h2::Reason::PROTOCOL_ERROR))
    {
        // Our HTTP/2 stack refused what the upstream sent (a malformed or
        // oversized header block): not valid HTTP, as for HTTP/1.1.
        UpstreamErrorKind::Protocol
    } else {
        UpstreamErrorKind::Reset
    };
    let mut err = UpstreamError::new(kind, addr, e.to_string());
    err.body_error = body_error;
    err
}

/// The HTTP/2 error behind a hyper error, if any.
fn find_h2_error(e: &hyper::Error) -> Option<&h2::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        source = s.source();
    }
    None
}

/// The kind of our own downstream body error, if the request failed
/// because the client's body failed.
fn find_body_error(e: &hyper::Error) -> Option<BodyErrorKind> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<BodyError>() {
            return Some(b.kind());
        }
        source = s.source();
    }
    None
}
