//! Upgraded (101) connections: the downstream socket joined to the
//! upstream one, closed once no byte moved either way for the listener's
//! `idle_timeout` (as a raw TCP tunnel is), or once a reload removed the
//! peer from a mutual listener's allow-list.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::io::{Activity, ActivityIo};

/// Joins the downstream connection to the upstream one after a 101. Every
/// byte, either way, passes the downstream socket, whose [`Activity`]
/// therefore tells when the tunnel went idle. `revoked` resolves when the
/// peer may no longer be served.
pub(super) async fn tunnel<I>(
    mut downstream: ActivityIo<I>,
    upstream: hyper::upgrade::OnUpgrade,
    activity: &Activity,
    idle_timeout: Duration,
    revoked: impl Future<Output = ()>,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let joined = async {
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
    };
    tokio::select! {
        () = joined => {}
        () = activity.idle_for(idle_timeout) => {
            tracing::debug!("upgraded connection idle; closing");
        }
        () = revoked => {}
    }
}
