//! Upgraded (101) connections: the downstream socket joined to the
//! upstream one.

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::io::ActivityIo;

/// Joins the downstream connection to the upstream one after a 101.
pub(super) async fn tunnel<I>(mut downstream: ActivityIo<I>, upstream: hyper::upgrade::OnUpgrade)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let upstream = match upstream.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
    }
}
