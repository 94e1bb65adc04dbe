//! The response body, which keeps its request counted as open.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::router::{Downstream, ObservedBody};

/// Counts a request as open until its response body is done or dropped.
pub(super) struct OpenRequest(Arc<Downstream>);

impl OpenRequest {
    pub(super) fn new(down: &Arc<Downstream>) -> Self {
        down.open_requests.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(down))
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.open_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// The response body, holding its request open.
    pub struct OpenBody {
        #[pin]
        inner: ObservedBody,
        _open: OpenRequest,
    }
}

impl OpenBody {
    pub(super) fn new(inner: ObservedBody, open: OpenRequest) -> Self {
        Self { inner, _open: open }
    }
}

impl Body for OpenBody {
    type Data = Bytes;
    type Error = <ObservedBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
