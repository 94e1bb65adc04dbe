//! Raw TCP proxying: one upstream connection per downstream connection,
//! bytes copied both ways, half-close propagated (a FIN from one side is
//! passed on while the other direction keeps flowing), and an idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::io::{Activity, ActivityIo};
use crate::cluster::Cluster;
use crate::config::LimitsSpec;
use crate::identity::server::TlsServer;
use crate::policy::authz_tcp::TcpAuthz;

/// Serves one TCP connection; on a `tls:` listener the handshake comes first
/// and a peer outside the allow-list is closed (logged and counted by
/// [`TlsServer`]), at the handshake or as soon as a reload drops it. Then
/// the listener's `authz` decides the caller ([`TcpAuthz`] logs and counts),
/// once now and again at each reload.
pub async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    cluster: &Arc<Cluster>,
    limits: &LimitsSpec,
    tls: Option<&TlsServer>,
    authz: &TcpAuthz,
) {
    let Some(tls) = tls else {
        if authz.admit(None, peer) {
            let revoked = authz.revoked(None, peer);
            tunnel(client, peer, cluster, limits, revoked).await;
        }
        return;
    };
    let Some((stream, identity)) = tls.accept(client, limits.header_read_timeout).await else {
        return;
    };
    let caller = identity.spiffe_id.as_ref();
    if !identity.is_allowed || !authz.admit(caller, peer) {
        return;
    }
    let authz_revoked = authz.revoked(caller, peer);
    match tls.admission(&identity) {
        Some(admission) => {
            let revoked = async {
                tokio::select! {
                    () = tls.revoked(&admission, peer, "tcp connection") => {}
                    () = authz_revoked => {}
                }
            };
            tunnel(stream, peer, cluster, limits, revoked).await;
        }
        None => tunnel(stream, peer, cluster, limits, authz_revoked).await,
    }
}

/// Copies bytes both ways until either side closes, the connection idles
/// out, or `revoked` resolves.
async fn tunnel<I>(
    client: I,
    peer: SocketAddr,
    cluster: &Arc<Cluster>,
    limits: &LimitsSpec,
    revoked: impl Future<Output = ()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(endpoint) = cluster.pick(&[]) else {
        tracing::debug!(cluster = %cluster.name(), %peer, "no healthy upstream; tcp connection closed");
        return;
    };
    let upstream = match cluster.connect_raw(&endpoint).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(cluster = %cluster.name(), %peer, error = %e, "tcp upstream connect failed");
            return;
        }
    };
    let activity = Activity::new();
    let mut down = ActivityIo::new(client, Arc::clone(&activity));
    let (stream, _guard) = upstream.into_parts();
    let mut up = ActivityIo::new(stream, Arc::clone(&activity));
    let buf = (limits.buffer_kb as usize * 1024 / 2).max(4096);
    tokio::select! {
        res = tokio::io::copy_bidirectional_with_sizes(&mut down, &mut up, buf, buf) => match res {
            Ok((sent, received)) => tracing::debug!(%peer, sent, received, "tcp connection closed"),
            Err(e) => tracing::debug!(%peer, error = %e, "tcp connection ended with an error"),
        },
        _ = activity.idle_for(limits.idle_timeout) => {
            tracing::debug!(%peer, "tcp connection idle; closing");
        }
        _ = revoked => {}
    }
}
