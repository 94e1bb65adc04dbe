//! Request bodies on their way upstream.
//!
//! The downstream body is streamed, never buffered whole: frames are passed
//! on as hyper polls for them, so a slow upstream slows the client (TCP
//! backpressure) instead of growing memory. This module adds the two limits
//! that a stream needs: the body idle timeout (no bytes for
//! `body_idle_timeout` → 408) and the maximum body size (→ 413).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::config::UnderscoreAction;

mod guarded;
mod idle;
mod replay;
pub use guarded::Guarded;
pub(crate) use idle::IdleTimer;
pub use replay::{REPLAY_LIMIT, ReplayBody, ReplaySource};

/// About 30 years: a deadline "never" that tokio's timer still handles.
const FAR: std::time::Duration = std::time::Duration::from_secs(86_400 * 365 * 30);

/// `from` plus about 30 years, for a timeout too long for the clock.
pub(crate) fn far_future(from: tokio::time::Instant) -> tokio::time::Instant {
    from.checked_add(FAR).unwrap_or(from)
}

/// `timeout` from now; a timeout too long for the clock (a config may say
/// `300000000000y`) is far in the future instead of a panic.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| far_future(now))
}

/// Why a downstream body stopped before its end.
/// The classification of a [`BodyError`], kept where the error itself
/// cannot be (it is consumed by hyper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyErrorKind {
    IdleTimeout,
    TooLarge,
    Downstream,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("no request body bytes for {0:?}")]
    IdleTimeout(Duration),
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("downstream body error")]
    Downstream(#[source] hyper::Error),
    /// A retry took the body over from this attempt.
    #[error("request body taken over by a retry")]
    Superseded,
}

/// The downstream request body with the idle timeout and size limit
/// applied; `Unpin` (the HTTP/2 client requires it).
pub struct DownstreamBody {
    inner: Incoming,
    idle: IdleTimer,
    received: u64,
    max_bytes: u64,
    /// Shared with the access log record when requests are observed.
    counted: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// `limits.headers_with_underscores`, applied to the trailers too.
    underscores: UnderscoreAction,
}

impl BodyError {
    pub fn kind(&self) -> BodyErrorKind {
        match self {
            BodyError::IdleTimeout(_) => BodyErrorKind::IdleTimeout,
            BodyError::TooLarge(_) => BodyErrorKind::TooLarge,
            // Only an abandoned attempt sees this; nobody reads its outcome.
            BodyError::Downstream(_) | BodyError::Superseded => BodyErrorKind::Downstream,
        }
    }
}

impl DownstreamBody {
    /// `max_bytes == 0` means unlimited; `underscores` is the listener's
    /// rule for header names, which the trailers follow too.
    pub fn new(
        inner: Incoming,
        idle_timeout: Duration,
        max_bytes: u64,
        underscores: UnderscoreAction,
    ) -> Self {
        Self {
            inner,
            idle: IdleTimer::new(idle_timeout),
            received: 0,
            max_bytes,
            counted: None,
            underscores,
        }
    }

    /// Also adds every byte received to `counter` (for access logs).
    pub fn counted(mut self, counter: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.counted = Some(counter);
        self
    }
}

impl Body for DownstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if let Some(c) = &this.counted {
                        c.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    if this.max_bytes > 0 && this.received > this.max_bytes {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.max_bytes))));
                    }
                }
                this.idle.touch();
                let frame = match frame.into_trailers() {
                    Ok(mut trailers) => {
                        crate::router::headers::sanitize_trailers(&mut trailers, this.underscores);
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Downstream(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.idle.poll_expired(cx));
                Poll::Ready(Some(Err(BodyError::IdleTimeout(this.idle.timeout()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the proxy sends upstream: nothing, the streamed downstream body,
/// or (on routes with retries) the streamed body with a copy kept for
/// replay. An enum rather than a boxed body, so the common cases allocate
/// nothing.
pub enum RequestBody {
    Empty,
    Stream { body: DownstreamBody },
    Replay(ReplayBody),
}

impl RequestBody {
    pub fn stream(body: DownstreamBody) -> Self {
        RequestBody::Stream { body }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Stream { body } => Pin::new(body).poll_frame(cx),
            RequestBody::Replay(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Stream { body } => body.is_end_stream(),
            RequestBody::Replay(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Stream { body } => body.size_hint(),
            RequestBody::Replay(body) => body.size_hint(),
        }
    }
}
