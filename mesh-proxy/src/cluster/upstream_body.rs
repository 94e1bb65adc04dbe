//! The upstream response body: it keeps the request counted as active on
//! its endpoint while it streams, and hands an HTTP/1.1 connection back to
//! its pool once read to the end.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use super::pool::H1Sender;
use super::{ClusterShared, Endpoint};

/// Counts a request as active on its endpoint and cluster until its
/// response body is finished or dropped (least_request reads this).
pub(crate) struct ActiveRequest {
    endpoint: Arc<Endpoint>,
    shared: Arc<ClusterShared>,
}

impl ActiveRequest {
    pub(super) fn new(shared: &Arc<ClusterShared>, endpoint: &Arc<Endpoint>) -> Self {
        endpoint.active_requests.fetch_add(1, Ordering::Relaxed);
        // upstream_rq_total counts attempts, in the router's attempt loop.
        shared
            .stats
            .upstream_rq_active
            .fetch_add(1, Ordering::Relaxed);
        Self {
            endpoint: Arc::clone(endpoint),
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.endpoint
            .active_requests
            .fetch_sub(1, Ordering::Relaxed);
        self.shared
            .stats
            .upstream_rq_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) struct Lease {
    pub(super) tx: H1Sender,
    pub(super) endpoint: Arc<Endpoint>,
}

pin_project! {
    /// An upstream response body. Reading it to the end hands an HTTP/1.1
    /// connection back to its pool.
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        lease: Option<Lease>,
        _active: ActiveRequest,
    }
}

impl UpstreamBody {
    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.endpoint.pool.put_idle(lease.tx);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        // hyper stops polling once `is_end_stream()` is true, so the
        // connection is released after the last frame, not only at `None`.
        let finished = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Ready(Some(Err(_))) => {
                *this.lease = None;
                false
            }
            Poll::Pending => false,
        };
        if finished && let Some(lease) = this.lease.take() {
            lease.endpoint.pool.put_idle(lease.tx);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps an upstream response's body; a body already at its end releases
/// the connection at once (hyper will not poll it).
pub(super) fn wrap(
    resp: Response<Incoming>,
    lease: Option<Lease>,
    active: ActiveRequest,
) -> Response<UpstreamBody> {
    resp.map(|inner| {
        let mut body = UpstreamBody {
            inner,
            lease,
            _active: active,
        };
        if body.inner.is_end_stream() {
            body.release();
        }
        body
    })
}
