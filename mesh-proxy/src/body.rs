//! Request bodies on their way upstream.
//!
//! The downstream body is streamed, never buffered whole: frames are passed
//! on as hyper polls for them, so a slow upstream slows the client (TCP
//! backpressure) instead of growing memory. This module adds the two limits
//! that a stream needs: the body idle timeout (no bytes for
//! `body_idle_timeout` → 408) and the maximum body size (→ 413).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

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
}

/// The downstream request body with the idle timeout and size limit applied.
///
/// `Unpin` (the HTTP/2 client requires it): the idle timer is boxed, and
/// only created the first time the body has to wait for bytes, so bodies
/// that arrive with their headers never allocate one.
pub struct DownstreamBody {
    inner: Incoming,
    idle: Option<Pin<Box<Sleep>>>,
    idle_timeout: Duration,
    last_data: Instant,
    received: u64,
    max_bytes: u64,
    /// Shared with the access log record when requests are observed.
    counted: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl BodyError {
    pub fn kind(&self) -> BodyErrorKind {
        match self {
            BodyError::IdleTimeout(_) => BodyErrorKind::IdleTimeout,
            BodyError::TooLarge(_) => BodyErrorKind::TooLarge,
            BodyError::Downstream(_) => BodyErrorKind::Downstream,
        }
    }
}

impl DownstreamBody {
    /// `max_bytes == 0` means unlimited.
    pub fn new(inner: Incoming, idle_timeout: Duration, max_bytes: u64) -> Self {
        Self {
            inner,
            idle: None,
            idle_timeout,
            last_data: Instant::now(),
            received: 0,
            max_bytes,
            counted: None,
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
                // Re-arming a timer per frame costs more than a clock read;
                // the timer is moved only when it fires (below).
                this.last_data = Instant::now();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Downstream(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.last_data + this.idle_timeout;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                loop {
                    ready!(idle.as_mut().poll(cx));
                    let deadline = this.last_data + this.idle_timeout;
                    if deadline <= Instant::now() {
                        return Poll::Ready(Some(Err(BodyError::IdleTimeout(this.idle_timeout))));
                    }
                    idle.as_mut().reset(deadline);
                }
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

/// What the proxy sends upstream: nothing, a buffered body, or the
/// streamed downstream body. An enum rather than a boxed body, so the
/// common cases allocate nothing.
pub enum RequestBody {
    Empty,
    Full {
        data: Option<Bytes>,
        trailers: Option<http::HeaderMap>,
    },
    Stream {
        body: DownstreamBody,
    },
    /// Bytes already read (while trying to buffer for retries), then the rest.
    Prefixed {
        prefix: Option<Bytes>,
        rest: DownstreamBody,
    },
}

impl RequestBody {
    pub fn full(data: Bytes) -> Self {
        RequestBody::Full {
            data: Some(data),
            trailers: None,
        }
    }

    /// A body that can be sent again: the buffered bytes and trailers.
    pub fn replay(r: &Replay) -> Self {
        RequestBody::Full {
            data: Some(r.data.clone()),
            trailers: r.trailers.clone(),
        }
    }

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
            RequestBody::Full { data, trailers } => match data.take() {
                Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                None => Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t)))),
            },
            RequestBody::Stream { body } => Pin::new(body).poll_frame(cx),
            RequestBody::Prefixed { prefix, rest } => match prefix.take() {
                Some(p) => Poll::Ready(Some(Ok(Frame::data(p)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Full { data, trailers } => data.is_none() && trailers.is_none(),
            RequestBody::Stream { body } => body.is_end_stream(),
            RequestBody::Prefixed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestBody::Stream { body } => body.size_hint(),
            RequestBody::Prefixed { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
        }
    }
}

/// Bodies up to this size are buffered so a retry can send them again
/// (Linkerd's limit); larger ones stream once.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// A fully buffered request body, sent again on each retry.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub data: Bytes,
    pub trailers: Option<http::HeaderMap>,
}

/// Reads up to [`REPLAY_LIMIT`] bytes of `body`. Returns the body to send
/// first and, when the whole body fit, what a retry can replay.
pub async fn buffer_for_replay(
    body: RequestBody,
) -> Result<(RequestBody, Option<Replay>), BodyError> {
    use http_body_util::BodyExt;
    let mut rest = match body {
        RequestBody::Stream { body } => body,
        RequestBody::Empty => return Ok((RequestBody::Empty, Some(Replay::default()))),
        other => return Ok((other, None)),
    };
    let mut buf = bytes::BytesMut::new();
    let trailers = loop {
        match rest.frame().await {
            None => break None,
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    buf.extend_from_slice(&data);
                    if buf.len() > REPLAY_LIMIT {
                        let prefix = Some(buf.freeze());
                        return Ok((RequestBody::Prefixed { prefix, rest }, None));
                    }
                }
                // Trailers end the body.
                Err(frame) => break frame.into_trailers().ok(),
            },
        }
    };
    let replay = Replay {
        data: buf.freeze(),
        trailers,
    };
    Ok((RequestBody::replay(&replay), Some(replay)))
}
