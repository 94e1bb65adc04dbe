//! The response body, which keeps its request counted as open.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::body::Guarded;
use crate::router::{Downstream, ObservedBody};

/// Counts a request as open until its response body is done or dropped.
pub(crate) struct OpenRequest(Arc<Downstream>);

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

/// The response body, holding its request open.
pub(crate) type OpenBody = Guarded<ObservedBody, OpenRequest>;
