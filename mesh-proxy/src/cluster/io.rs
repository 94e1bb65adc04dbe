//! The byte stream to an upstream: plain TCP, or TLS over it when the
//! cluster has `tls:`. One enum instead of a boxed trait object, so plain
//! connections pay nothing for TLS existing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::pool::{ConnGuard, connect_tcp};
use super::{ClusterShared, Endpoint, UpstreamError, UpstreamErrorKind};

pub enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Connects, then completes the TLS handshake (verifying the upstream's
/// identity) within the connect timeout. A failed handshake is a connect
/// failure: no request byte was sent.
pub(crate) async fn connect(
    shared: &Arc<ClusterShared>,
    endpoint: &Endpoint,
) -> Result<(UpstreamIo, ConnGuard), UpstreamError> {
    let (tcp, guard) = connect_tcp(shared, endpoint).await?;
    let Some(tls) = &shared.tls else {
        return Ok((UpstreamIo::Plain(tcp), guard));
    };
    let fail = |detail: String| {
        shared
            .stats
            .upstream_cx_connect_fail
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(cluster = %shared.name, endpoint = %endpoint.addr, "upstream tls: {detail}");
        UpstreamError::new(
            UpstreamErrorKind::ConnectFailure,
            Some(endpoint.addr),
            detail,
        )
    };
    match tokio::time::timeout(shared.settings.connect_timeout, tls.connect(tcp)).await {
        Ok(Ok(stream)) => Ok((UpstreamIo::Tls(Box::new(stream)), guard)),
        Ok(Err(e)) => Err(fail(format!("handshake failed: {e}"))),
        Err(_) => Err(fail(format!(
            "no handshake within {:?}",
            shared.settings.connect_timeout
        ))),
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
