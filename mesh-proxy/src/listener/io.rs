//! Activity tracking for downstream connections: an IO wrapper that records
//! when bytes last moved, and a future that resolves once nothing moved for
//! a given time (connection idle timeout, TCP tunnel idle timeout).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Last activity, as milliseconds since `origin`.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        // Several touches per millisecond are common; skip the redundant stores.
        if self.last_ms.load(Ordering::Relaxed) != ms {
            self.last_ms.store(ms, Ordering::Relaxed);
        }
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Resolves once no activity was recorded for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let deadline = self.last() + timeout;
            if deadline <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

pin_project! {
    /// Records activity on the connection, and first hands out `replay`:
    /// bytes already read from it (a sniffed preface, or what the HTTP/1.1
    /// parser had buffered when its connection was parked).
    pub struct ActivityIo<T> {
        #[pin]
        inner: T,
        activity: Arc<Activity>,
        replay: Bytes,
    }
}

impl<T> ActivityIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            replay: Bytes::new(),
        }
    }

    /// Puts `bytes` in front of what is still to be read.
    pub fn unread(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.replay = if self.replay.is_empty() {
            bytes
        } else {
            let mut joined = Vec::with_capacity(bytes.len() + self.replay.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.replay);
            Bytes::from(joined)
        };
    }

    pub fn has_unread(&self) -> bool {
        !self.replay.is_empty()
    }
}

impl<T: AsyncRead> AsyncRead for ActivityIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if buf.filled().len() != before {
            this.activity.touch();
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_for_waits_until_traffic_stops() {
        let activity = Activity::new();
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = ActivityIo::new(a, Arc::clone(&activity));
        let start = Instant::now();
        let watcher = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move { activity.idle_for(Duration::from_secs(10)).await }
        });
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            b.write_all(b"x").await.expect("write");
            let mut buf = [0u8; 1];
            io.read_exact(&mut buf).await.expect("read");
        }
        watcher.await.expect("join");
        // Last byte at 18 s, so idle at 28 s, not at 10 s.
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(28) && waited < Duration::from_secs(29),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn unread_bytes_come_first_in_order() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = ActivityIo::new(a, Activity::new());
        io.unread(Bytes::from_static(b"world"));
        io.unread(Bytes::from_static(b"hello "));
        assert!(io.has_unread());
        b.write_all(b"!").await.expect("write");
        let mut got = [0u8; 12];
        io.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello world!");
        assert!(!io.has_unread());
    }
}
