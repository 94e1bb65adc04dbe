//! Accounting of local replies: the `downstream_rq_local` and
//! `downstream_rq_rejected.<reason>` counters and the listener's ring of
//! recent local replies that the admin dashboard shows. Runs only when the
//! proxy answers a request itself.

use http::{Method, Response, StatusCode, Uri};

use super::flag::ResponseFlag;
use super::{HttpContext, ProxyError, ResponseBody};
use crate::body::BodyErrorKind;
use crate::telemetry::local_replies::LocalReplyRecord;
use crate::telemetry::metrics::RejectReason;

/// What is remembered of a failure that became a local reply. Travels as a
/// response extension when the reply is built below [`super::handle`].
#[derive(Debug, Clone)]
pub(super) struct Noted {
    flag: ResponseFlag,
    reason: Option<RejectReason>,
    detail: String,
}

impl Noted {
    pub(super) fn of(e: &ProxyError) -> Self {
        Self {
            flag: e.flag(),
            reason: rejection(e),
            detail: e.to_string(),
        }
    }

    /// The SPEC response flag of the reply.
    pub(super) fn flag(&self) -> ResponseFlag {
        self.flag
    }
}

/// The listener limit a failure is a rejection by, if any.
fn rejection(e: &ProxyError) -> Option<RejectReason> {
    let body = |kind: BodyErrorKind| match kind {
        BodyErrorKind::TooLarge => Some(RejectReason::Body),
        BodyErrorKind::IdleTimeout => Some(RejectReason::BodyTimeout),
        BodyErrorKind::Downstream => None,
    };
    match e {
        ProxyError::HeadersTooLarge => Some(RejectReason::Headers),
        ProxyError::UriTooLong => Some(RejectReason::Uri),
        ProxyError::BodyTooLarge => Some(RejectReason::Body),
        ProxyError::BodyTimeout => Some(RejectReason::BodyTimeout),
        ProxyError::BadTarget(_) | ProxyError::BadRequest(_) => Some(RejectReason::Malformed),
        ProxyError::RateLimited => Some(RejectReason::RateLimit),
        ProxyError::UnderscoreHeader => Some(RejectReason::HeadersWithUnderscores),
        ProxyError::Upstream(u) => u.body_error.and_then(body),
        ProxyError::NoRoute
        | ProxyError::Unauthorized
        | ProxyError::NoHealthyUpstream { .. }
        | ProxyError::Timeout(_)
        | ProxyError::Policy(_) => None,
    }
}

/// The local reply for `e`, with what [`super::handle`] records of it
/// attached as a response extension.
pub(super) fn reply(listener: &str, e: ProxyError) -> Response<ResponseBody> {
    tracing::debug!(listener, error = %e, flag = %e.flag(), "local reply");
    let noted = Noted::of(&e);
    let mut resp = e.into_response();
    resp.extensions_mut().insert(noted);
    resp
}

/// Counts one local reply and remembers it.
pub(super) fn record(
    ctx: &HttpContext,
    noted: Noted,
    status: StatusCode,
    method: &Method,
    uri: &Uri,
) {
    let stats = &ctx.stats;
    stats
        .downstream_rq_local
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(reason) = noted.reason {
        stats.downstream_rq_rejected.count(reason);
    }
    stats.local_replies.push(LocalReplyRecord::new(
        ctx.listener.clone(),
        method.as_str(),
        uri.path(),
        status.as_u16(),
        noted.flag.as_str(),
        &noted.detail,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_failures_name_their_reason_and_others_none() {
        assert_eq!(
            rejection(&ProxyError::HeadersTooLarge),
            Some(RejectReason::Headers)
        );
        assert_eq!(rejection(&ProxyError::UriTooLong), Some(RejectReason::Uri));
        assert_eq!(
            rejection(&ProxyError::from_body_error(BodyErrorKind::IdleTimeout)),
            Some(RejectReason::BodyTimeout)
        );
        assert_eq!(
            rejection(&ProxyError::RateLimited),
            Some(RejectReason::RateLimit)
        );
        assert_eq!(rejection(&ProxyError::NoRoute), None);
        assert_eq!(
            rejection(&ProxyError::Timeout(std::time::Duration::from_secs(1))),
            None
        );
    }
}
