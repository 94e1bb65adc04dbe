//! An attempt's outcome, classified once: the code class for the cluster's
//! counters, the 5xx and gateway-failure facts outlier detection reads, and
//! the response flag a failure would be answered with. Retries, outlier
//! detection, metrics and local replies all read this one value.

use http::Response;

use super::flag::ResponseFlag;
use crate::cluster::{Outcome, UpstreamError, UpstreamErrorKind};

/// What one attempt ended with, as every reader needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub outcome: Outcome,
    /// Status class index (0 = 1xx … 4 = 5xx) for the cluster's counters.
    /// An attempt without an answer counts as a 5xx (as in Envoy, so the
    /// classes add up to `upstream_rq_total`); `None` when the client's
    /// own body failed: not the upstream's doing.
    pub class: Option<usize>,
    /// The client's own body failed the attempt: nothing to retry.
    pub client_fault: bool,
}

impl Classified {
    /// Classifies an attempt's result; `None` is a per-try timeout.
    pub fn of<B>(result: Option<&Result<Response<B>, UpstreamError>>) -> Self {
        match result {
            Some(Ok(resp)) => Self {
                outcome: Outcome::Status(resp.status()),
                class: Some(class_of(resp.status())),
                client_fault: false,
            },
            Some(Err(e)) => Self {
                outcome: Outcome::Failed(e.kind),
                class: e.body_error.is_none().then_some(4),
                client_fault: e.body_error.is_some(),
            },
            None => Self {
                outcome: Outcome::PerTryTimeout,
                class: Some(4),
                client_fault: false,
            },
        }
    }

    /// A 5xx answer, or no answer at all.
    pub fn is_5xx(&self) -> bool {
        match self.outcome {
            Outcome::Status(s) => s.is_server_error(),
            Outcome::PerTryTimeout | Outcome::Failed(_) => true,
        }
    }

    /// A gateway failure: 502, 503, 504, or no answer at all.
    pub fn is_gateway_failure(&self) -> bool {
        match self.outcome {
            Outcome::Status(s) => matches!(s.as_u16(), 502..=504),
            Outcome::PerTryTimeout | Outcome::Failed(_) => true,
        }
    }

    /// Whether the outcome says something about the endpoint: our own
    /// refusals (circuit breaker, no endpoint) and the client's failures
    /// do not.
    pub fn blames_endpoint(&self) -> bool {
        !self.client_fault
            && !matches!(
                self.outcome,
                Outcome::Failed(UpstreamErrorKind::Overflow | UpstreamErrorKind::NoHealthyEndpoint)
            )
    }

    /// The flag this outcome is answered with when it is the last one
    /// (`None` for an upstream answer, which is passed on).
    pub fn flag(&self) -> Option<ResponseFlag> {
        match self.outcome {
            Outcome::Status(_) => None,
            Outcome::PerTryTimeout => Some(ResponseFlag::UpstreamTimeout),
            Outcome::Failed(_) if self.client_fault => Some(ResponseFlag::DownstreamProtocolError),
            Outcome::Failed(kind) => Some(kind_flag(kind)),
        }
    }
}

/// The status class index of `status` (0 = 1xx … 4 = 5xx).
pub fn class_of(status: http::StatusCode) -> usize {
    (status.as_u16() / 100).clamp(1, 5) as usize - 1
}

/// The response flag of an upstream failure.
pub fn kind_flag(kind: UpstreamErrorKind) -> ResponseFlag {
    match kind {
        UpstreamErrorKind::NoHealthyEndpoint => ResponseFlag::NoHealthyUpstream,
        UpstreamErrorKind::ConnectFailure => ResponseFlag::UpstreamConnectFailure,
        UpstreamErrorKind::Overflow => ResponseFlag::UpstreamOverflow,
        UpstreamErrorKind::Reset | UpstreamErrorKind::RefusedStream => ResponseFlag::UpstreamReset,
        UpstreamErrorKind::Protocol => ResponseFlag::UpstreamProtocolError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn status(code: u16) -> Classified {
        let resp = Response::builder().status(code).body(()).expect("response");
        Classified::of(Some(&Ok(resp)))
    }

    fn failed(kind: UpstreamErrorKind, body: bool) -> Classified {
        let mut e = UpstreamError::overflow("127.0.0.1:1".parse().expect("addr"), "test");
        e.kind = kind;
        e.body_error = body.then_some(crate::body::BodyErrorKind::TooLarge);
        Classified::of::<()>(Some(&Err(e)))
    }

    #[test]
    fn answers_are_classed_by_status_and_carry_no_flag() {
        let ok = status(204);
        assert_eq!((ok.class, ok.is_5xx(), ok.flag()), (Some(1), false, None));
        let unavailable = status(503);
        assert_eq!(unavailable.class, Some(4));
        assert!(unavailable.is_5xx() && unavailable.is_gateway_failure());
        assert_eq!(
            unavailable.flag(),
            None,
            "an upstream's 503 is not our verdict"
        );
        let internal = status(500);
        assert!(internal.is_5xx() && !internal.is_gateway_failure());
        assert_eq!(status(101).class, Some(0));
        assert_eq!(
            Classified::of(Some(&Ok(Response::new(())))).outcome,
            Outcome::Status(StatusCode::OK)
        );
    }

    #[test]
    fn failures_are_5xx_gateway_failures_with_their_flag() {
        let f = failed(UpstreamErrorKind::ConnectFailure, false);
        assert_eq!(f.class, Some(4));
        assert!(f.is_gateway_failure() && f.blames_endpoint());
        assert_eq!(f.flag(), Some(ResponseFlag::UpstreamConnectFailure));
        assert_eq!(
            failed(UpstreamErrorKind::RefusedStream, false).flag(),
            Some(ResponseFlag::UpstreamReset)
        );
        assert_eq!(
            failed(UpstreamErrorKind::Protocol, false).flag(),
            Some(ResponseFlag::UpstreamProtocolError)
        );
        let timeout = Classified::of::<()>(None);
        assert_eq!(
            (timeout.class, timeout.flag()),
            (Some(4), Some(ResponseFlag::UpstreamTimeout))
        );
    }

    #[test]
    fn our_own_refusals_and_client_faults_do_not_blame_the_endpoint() {
        assert!(!failed(UpstreamErrorKind::Overflow, false).blames_endpoint());
        assert!(!failed(UpstreamErrorKind::NoHealthyEndpoint, false).blames_endpoint());
        let client = failed(UpstreamErrorKind::Reset, true);
        assert!(client.client_fault && !client.blames_endpoint());
        assert_eq!(
            client.class, None,
            "the client's failure is not counted against the upstream"
        );
        assert_eq!(client.flag(), Some(ResponseFlag::DownstreamProtocolError));
    }
}
