//! Failures of a proxied request and the local replies they become
//! (SPEC §3 "Local replies"), and the response body type.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::flag::ResponseFlag;
use super::headers::{X_MESH_ERROR, X_MESH_OVERLOADED};
use super::normalize::TargetError;
use crate::body::{BodyErrorKind, IdleTimer};
use crate::cluster::{UpstreamBody, UpstreamError, UpstreamErrorKind};

/// Everything that can stop a request before an upstream response is
/// passed on. Each variant knows its status and response flag.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matched")]
    NoRoute,
    #[error("bad request: {0}")]
    BadTarget(#[from] TargetError),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("bad request: header name with an underscore")]
    UnderscoreHeader,
    #[error("request header section too large")]
    HeadersTooLarge,
    #[error("request URI too long")]
    UriTooLong,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request body timed out")]
    BodyTimeout,
    #[error("rate limit exceeded")]
    RateLimited,
    #[error("peer identity not allowed")]
    Unauthorized,
    #[error("no healthy upstream in cluster {cluster}")]
    NoHealthyUpstream { cluster: String },
    #[error("upstream request timed out after {0:?}")]
    Timeout(Duration),
    #[error("upstream {0}")]
    Upstream(#[from] UpstreamError),
    /// A per-route policy stage answered (fault injection, …).
    #[error("{0}")]
    Policy(PolicyReply),
}

/// The local reply a policy stage decided on: its status, flag and the
/// one-line body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PolicyReply {
    pub status: StatusCode,
    pub flag: ResponseFlag,
    /// One line; may name the caller and what it asked (never config).
    pub message: std::borrow::Cow<'static, str>,
}

impl ProxyError {
    /// The local reply for a downstream body that failed before anything
    /// was sent upstream.
    pub fn from_body_error(kind: BodyErrorKind) -> Self {
        match kind {
            BodyErrorKind::IdleTimeout => ProxyError::BodyTimeout,
            BodyErrorKind::TooLarge => ProxyError::BodyTooLarge,
            BodyErrorKind::Downstream => ProxyError::BadRequest("request body ended early"),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Unauthorized => StatusCode::FORBIDDEN,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::BadTarget(_) | ProxyError::BadRequest(_) | ProxyError::UnderscoreHeader => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::NoHealthyUpstream { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Policy(p) => p.status,
            ProxyError::Upstream(e) => match e.body_error {
                Some(BodyErrorKind::IdleTimeout) => StatusCode::REQUEST_TIMEOUT,
                Some(BodyErrorKind::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
                Some(BodyErrorKind::Downstream) => StatusCode::BAD_REQUEST,
                None => match e.kind {
                    UpstreamErrorKind::NoHealthyEndpoint
                    | UpstreamErrorKind::ConnectFailure
                    | UpstreamErrorKind::Overflow => StatusCode::SERVICE_UNAVAILABLE,
                    UpstreamErrorKind::Reset
                    | UpstreamErrorKind::RefusedStream
                    | UpstreamErrorKind::Protocol => StatusCode::BAD_GATEWAY,
                },
            },
        }
    }

    /// The SPEC response flag, sent as `x-mesh-error` and logged.
    pub fn flag(&self) -> ResponseFlag {
        use ResponseFlag as F;
        match self {
            ProxyError::NoRoute => F::NoRoute,
            ProxyError::RateLimited => F::RateLimited,
            ProxyError::Unauthorized => F::Unauthorized,
            ProxyError::BadTarget(_)
            | ProxyError::BadRequest(_)
            | ProxyError::UnderscoreHeader
            | ProxyError::HeadersTooLarge
            | ProxyError::UriTooLong
            | ProxyError::BodyTooLarge
            | ProxyError::BodyTimeout => F::DownstreamProtocolError,
            ProxyError::NoHealthyUpstream { .. } => F::NoHealthyUpstream,
            ProxyError::Timeout(_) => F::UpstreamTimeout,
            ProxyError::Policy(p) => p.flag,
            ProxyError::Upstream(e) if e.body_error.is_some() => F::DownstreamProtocolError,
            ProxyError::Upstream(e) => super::classify::kind_flag(e.kind),
        }
    }

    /// The one-line body of the local reply.
    fn message(&self) -> std::borrow::Cow<'static, str> {
        use ResponseFlag as F;
        if let ProxyError::Policy(p) = self {
            return p.message.clone();
        }
        std::borrow::Cow::Borrowed(match self.flag() {
            F::NoRoute => "no route matched the request\n",
            F::NoHealthyUpstream => "no healthy upstream\n",
            F::UpstreamConnectFailure => "upstream connect failure\n",
            F::UpstreamOverflow => "upstream overloaded: circuit breaker open\n",
            F::UpstreamReset => "upstream reset before response headers\n",
            F::UpstreamProtocolError => "upstream response was not valid HTTP\n",
            F::UpstreamTimeout => "upstream request timeout\n",
            F::RateLimited => "rate limit exceeded\n",
            F::Unauthorized => "peer identity not allowed\n",
            F::Draining => "proxy is draining\n",
            F::FaultInjected => "fault injected\n",
            F::DownstreamProtocolError => match self.status() {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "request header section too large\n",
                StatusCode::URI_TOO_LONG => "request URI too long\n",
                StatusCode::PAYLOAD_TOO_LARGE => "request body too large\n",
                StatusCode::REQUEST_TIMEOUT => "request body timeout\n",
                _ => "bad request\n",
            },
        })
    }

    /// Whether the downstream connection must close after this reply: the
    /// request's framing or body state can no longer be trusted.
    fn closes_connection(&self) -> bool {
        matches!(
            self.status(),
            StatusCode::BAD_REQUEST | StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
        )
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let mut resp = local_reply(self.status(), self.flag(), self.message());
        if matches!(&self, ProxyError::Upstream(e) if e.kind == UpstreamErrorKind::Overflow && e.body_error.is_none())
        {
            resp.headers_mut()
                .insert(X_MESH_OVERLOADED.clone(), HeaderValue::from_static("true"));
        }
        if self.closes_connection() {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// A response the proxy writes itself.
pub fn local_reply(
    status: StatusCode,
    flag: ResponseFlag,
    message: std::borrow::Cow<'static, str>,
) -> Response<ResponseBody> {
    let body = match message {
        std::borrow::Cow::Borrowed(m) => Bytes::from_static(m.as_bytes()),
        std::borrow::Cow::Owned(m) => Bytes::from(m),
    };
    let mut resp = Response::new(ResponseBody::local(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(
        X_MESH_ERROR.clone(),
        HeaderValue::from_static(flag.as_str()),
    );
    resp
}

/// Error type of [`ResponseBody`]: an upstream body error, or the stream
/// idle timeout.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("no response body bytes for {0:?} (stream idle timeout)")]
pub struct StreamIdleTimeout(pub Duration);

pin_project! {
    /// What the proxy sends downstream: an upstream body, streamed, or a
    /// local one. An upstream body that sends nothing for the stream idle
    /// timeout is cut (the client sees a reset, never a short body passed
    /// off as complete).
    #[project = ResponseBodyProj]
    pub enum ResponseBody {
        Upstream {
            #[pin]
            body: UpstreamBody,
            idle: IdleTimer,
        },
        Local { data: Option<Bytes> },
    }
}

impl ResponseBody {
    pub fn local(data: Bytes) -> Self {
        ResponseBody::Local {
            data: (!data.is_empty()).then_some(data),
        }
    }

    pub fn upstream(body: UpstreamBody, idle_timeout: Duration) -> Self {
        ResponseBody::Upstream {
            body,
            idle: IdleTimer::new(idle_timeout),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ResponseBodyProj::Upstream { body, idle } => match body.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    idle.touch();
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => {
                    ready!(idle.poll_expired(cx));
                    let timeout = StreamIdleTimeout(idle.timeout());
                    Poll::Ready(Some(Err(Box::new(timeout))))
                }
            },
            ResponseBodyProj::Local { data } => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(d))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Upstream { body, .. } => body.is_end_stream(),
            ResponseBody::Local { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Upstream { body, .. } => body.size_hint(),
            ResponseBody::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
