//! A deadline for HTTP/2 header blocks. hyper and h2 bound the HTTP/1.1
//! header section in time, but an HTTP/2 HEADERS frame without
//! END_HEADERS, followed by silence, holds a connection open until its idle
//! timeout: h2 waits for the CONTINUATION as long as the socket lives.
//!
//! [`FrameWatch`] wraps the connection's read side and follows the frame
//! headers (9 bytes each; payloads are skipped by length, never copied), so
//! it knows when a header block (HEADERS or PUSH_PROMISE, then its
//! CONTINUATIONs) is open; [`block_stalled`] resolves once one stayed open
//! for the listener's `header_read_timeout`. Costs one comparison per frame
//! and one timer wake per `header_read_timeout`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// When the open header block began (ms since `origin`, plus one; 0: none).
#[derive(Debug)]
pub struct BlockClock {
    origin: Instant,
    open_since: AtomicU64,
}

impl BlockClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            open_since: AtomicU64::new(0),
        })
    }

    fn open(&self) {
        if self.open_since.load(Ordering::Relaxed) == 0 {
            let ms = self.origin.elapsed().as_millis() as u64 + 1;
            self.open_since.store(ms, Ordering::Relaxed);
        }
    }

    fn close(&self) {
        self.open_since.store(0, Ordering::Relaxed);
    }

    fn opened_at(&self) -> Option<Instant> {
        match self.open_since.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.origin + Duration::from_millis(ms - 1)),
        }
    }
}

/// Resolves once a header block stayed open for `timeout`.
pub async fn block_stalled(clock: &BlockClock, timeout: Duration) {
    loop {
        let next = match clock.opened_at() {
            Some(at) if at + timeout <= Instant::now() => return,
            Some(at) => at + timeout,
            None => Instant::now() + timeout,
        };
        tokio::time::sleep_until(next).await;
    }
}

/// Where the reader is in the frame stream.
#[derive(Debug)]
struct Frames {
    /// Preface bytes still to skip.
    preface: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    payload: usize,
    /// The current frame ends its header block once its payload is read.
    ends_block: bool,
}

impl Frames {
    fn new() -> Self {
        Self {
            preface: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload: 0,
            ends_block: false,
        }
    }

    /// Follows `data`, the next bytes the client sent.
    fn feed(&mut self, mut data: &[u8], clock: &BlockClock) {
        while !data.is_empty() {
            let skip = if self.preface > 0 {
                let n = self.preface.min(data.len());
                self.preface -= n;
                n
            } else if self.payload > 0 {
                let n = self.payload.min(data.len());
                self.payload -= n;
                if self.payload == 0 && self.ends_block {
                    clock.close();
                }
                n
            } else {
                let n = (FRAME_HEADER_LEN - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
                self.header_len += n;
                if self.header_len == FRAME_HEADER_LEN {
                    self.frame_header(clock);
                }
                n
            };
            data = &data[skip..];
        }
    }

    fn frame_header(&mut self, clock: &BlockClock) {
        let h = self.header;
        self.header_len = 0;
        self.payload = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        self.ends_block = false;
        if matches!(h[3], HEADERS | PUSH_PROMISE | CONTINUATION) {
            clock.open();
            self.ends_block = h[4] & END_HEADERS != 0;
            if self.payload == 0 && self.ends_block {
                clock.close();
            }
        }
    }
}

pin_project! {
    /// Follows the frames read through it (see the module docs).
    pub struct FrameWatch<T> {
        #[pin]
        inner: T,
        frames: Frames,
        clock: Arc<BlockClock>,
    }
}

impl<T> FrameWatch<T> {
    pub fn new(inner: T, clock: Arc<BlockClock>) -> Self {
        Self {
            inner,
            frames: Frames::new(),
            clock,
        }
    }
}

impl<T: AsyncRead> AsyncRead for FrameWatch<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        this.frames.feed(&buf.filled()[before..], this.clock);
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for FrameWatch<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, b)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
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

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    /// Feeds `bytes` one chunk size at a time; says whether a block is open.
    fn open_after(bytes: &[u8], chunk: usize) -> bool {
        let clock = BlockClock::new();
        let mut frames = Frames::new();
        for c in bytes.chunks(chunk) {
            frames.feed(c, &clock);
        }
        clock.opened_at().is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn header_blocks_open_and_close_whatever_the_read_sizes() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let settings = frame(0x4, 0, &[]);
        let open = [preface.clone(), settings.clone(), frame(HEADERS, 0, b"abc")].concat();
        let done = [open.clone(), frame(CONTINUATION, END_HEADERS, b"de")].concat();
        let whole = [preface.clone(), frame(HEADERS, END_HEADERS, b"abc")].concat();
        // A DATA frame whose payload looks like a HEADERS frame header.
        let data = [preface, frame(0x0, 0, &frame(HEADERS, 0, b""))].concat();
        for chunk in [1, 2, 7, 9, 10, 1000] {
            assert!(open_after(&open, chunk), "chunk {chunk}");
            assert!(!open_after(&done, chunk), "chunk {chunk}");
            assert!(!open_after(&whole, chunk), "chunk {chunk}");
            assert!(!open_after(&data, chunk), "chunk {chunk}");
            // A complete frame header whose payload has not all arrived.
            assert!(
                open_after(&whole[..whole.len() - 1], chunk),
                "chunk {chunk}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_block_is_noticed_at_its_deadline_not_before() {
        let clock = BlockClock::new();
        let timeout = Duration::from_secs(10);
        tokio::time::sleep(Duration::from_secs(7)).await;
        clock.open();
        let opened = Instant::now();
        block_stalled(&clock, timeout).await;
        assert_eq!(opened.elapsed(), timeout);
    }
}
