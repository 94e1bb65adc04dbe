//! A request body that streams upstream as it arrives and keeps a copy of
//! its first [`REPLAY_LIMIT`] bytes, so a retry can send it again
//! (linkerd2-proxy's `ReplayBody` is the model).
//!
//! The first attempt reads the live downstream body, copying the bytes of
//! each data frame into one buffer while it stays within the limit: a
//! copy, not the frame itself, since a frame is a slice of a read buffer
//! that it would keep alive whole (one byte per read would make 64 KiB of
//! frames hold gigabytes). Once the attempt loop is over (the source is
//! dropped) the copy is released, however long the body goes on streaming. A retry gets a new handle
//! ([`ReplayBody::try_replay`]) that yields the kept frames and then goes on
//! reading the live body where the previous attempt stopped. Once more than
//! the limit has been read, the copy is dropped and the body can no longer
//! be replayed: everything sent must still be in the copy.
//!
//! Only the newest handle may read: an earlier attempt whose connection
//! still polls its handle gets an error (never a clean end, which would
//! present a truncated body as complete), and is woken so it notices.
//! The state is per request and locked only by that request's attempts
//! (one at a time in practice), never shared between requests.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{BodyError, DownstreamBody};

/// Bodies are kept for replay up to this size (Linkerd's limit); a body
/// larger than this streams once and is not retried after sending.
pub const REPLAY_LIMIT: usize = 64 * 1024;

struct State<B> {
    /// The downstream body; `None` once it ended or failed.
    live: Option<B>,
    /// The data read so far, while it fits in the limit.
    kept: Vec<u8>,
    /// How much of `kept` the reading handle has yielded (its generation's
    /// position: only the newest handle reads).
    replayed: usize,
    /// More than the limit was read: `kept` is gone, no more replays.
    capped: bool,
    /// The live body ended (cleanly) with these trailers, if any.
    ended: bool,
    trailers: Option<http::HeaderMap>,
    /// The handle allowed to read; older ones fail.
    generation: u32,
    /// The reading handle's task while it waits for the live body.
    waker: Option<Waker>,
}

/// Makes the handle of each retry; held by the attempt loop, never sent.
pub struct ReplaySource<B = DownstreamBody> {
    state: Arc<Mutex<State<B>>>,
}

/// One attempt's view of a replayable request body.
pub struct ReplayBody<B = DownstreamBody> {
    state: Arc<Mutex<State<B>>>,
    generation: u32,
    trailers_sent: bool,
}

fn lock<B>(state: &Mutex<State<B>>) -> MutexGuard<'_, State<B>> {
    // Every update below leaves the state consistent between statements,
    // so a poisoned lock is still usable.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B> ReplayBody<B>
where
    B: Body<Data = Bytes, Error = BodyError> + Unpin,
{
    /// Wraps the live body: the handle of the first attempt, and the
    /// source of the handles of retries.
    pub fn new(live: B) -> (Self, ReplaySource<B>) {
        let state = State {
            live: Some(live),
            kept: Vec::new(),
            replayed: 0,
            capped: false,
            ended: false,
            trailers: None,
            generation: 0,
            waker: None,
        };
        let state = Arc::new(Mutex::new(state));
        let first = Self {
            state: Arc::clone(&state),
            generation: 0,
            trailers_sent: false,
        };
        (first, ReplaySource { state })
    }

    /// Reads the live body for the reading handle (`trailers_sent` is its
    /// own flag: the state is borrowed from the handle too).
    fn poll_live(
        trailers_sent: &mut bool,
        st: &mut State<B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(live) = st.live.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(live).poll_frame(cx) {
            Poll::Pending => {
                if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    st.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Poll::Ready(None) => {
                st.live = None;
                st.ended = true;
                *trailers_sent = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => {
                st.live = None;
                st.release();
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            if !st.capped {
                if st.kept.len() + data.len() <= REPLAY_LIMIT {
                    keep(&mut st.kept, data);
                    st.replayed = st.kept.len();
                } else {
                    st.capped = true;
                    st.release();
                }
            }
        } else if let Some(t) = frame.trailers_ref() {
            // Trailers end the body.
            st.trailers = Some(t.clone());
            st.live = None;
            st.ended = true;
            *trailers_sent = true;
        }
        Poll::Ready(Some(Ok(frame)))
    }
}

/// Appends `data` to the copy, growing it at most to [`REPLAY_LIMIT`].
fn keep(kept: &mut Vec<u8>, data: &[u8]) {
    let needed = kept.len() + data.len();
    if needed > kept.capacity() {
        let target = needed.max(kept.capacity() * 2).min(REPLAY_LIMIT);
        kept.reserve_exact(target - kept.len());
    }
    kept.extend_from_slice(data);
}

impl<B> State<B> {
    fn release(&mut self) {
        self.kept = Vec::new();
        self.replayed = 0;
    }
}

impl<B> Drop for ReplaySource<B> {
    /// No retry can follow: the copy is released as soon as the reading
    /// handle has sent all of it (at once, unless a retry still replays it).
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        st.capped = true;
        if st.replayed >= st.kept.len() {
            st.release();
        }
    }
}

impl<B> ReplaySource<B> {
    /// Whether everything read so far is still kept (a retry can replay it).
    pub fn is_replayable(&self) -> bool {
        let st = lock(&self.state);
        !st.capped && (st.live.is_some() || st.ended)
    }

    /// A handle for the next attempt: it replays the kept bytes, then reads
    /// on. Every earlier handle fails from now on. `None` when more than
    /// the limit was read or the live body failed.
    pub fn try_replay(&self) -> Option<ReplayBody<B>> {
        let mut st = lock(&self.state);
        if st.capped || (st.live.is_none() && !st.ended) {
            return None;
        }
        st.generation = st.generation.wrapping_add(1);
        st.replayed = 0;
        // The previous attempt may be parked on the live body: wake it, so
        // it fails and its connection is released.
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        Some(ReplayBody {
            state: Arc::clone(&self.state),
            generation: st.generation,
            trailers_sent: false,
        })
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes, Error = BodyError> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let mut st = lock(&this.state);
        if st.generation != this.generation {
            return Poll::Ready(Some(Err(BodyError::Superseded)));
        }
        if let Some(rest) = st.kept.get(st.replayed..).filter(|r| !r.is_empty()) {
            let data = Bytes::copy_from_slice(rest);
            st.replayed = st.kept.len();
            if st.capped {
                // The source is gone: this was the copy's last use.
                st.release();
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if st.ended {
            if this.trailers_sent {
                return Poll::Ready(None);
            }
            this.trailers_sent = true;
            return Poll::Ready(st.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        }
        Self::poll_live(&mut this.trailers_sent, &mut st, cx)
    }

    fn is_end_stream(&self) -> bool {
        let st = lock(&self.state);
        if st.generation != self.generation || st.replayed < st.kept.len() {
            return false;
        }
        match &st.live {
            Some(live) => live.is_end_stream(),
            None => st.ended && (self.trailers_sent || st.trailers.is_none()),
        }
    }

    /// What is left to send: the kept bytes not yet yielded plus the live
    /// body's remainder (for a fresh handle, the whole body, so a known
    /// length is sent as `Content-Length` on every attempt).
    fn size_hint(&self) -> SizeHint {
        let st = lock(&self.state);
        let live = match &st.live {
            Some(live) => live.size_hint(),
            None => SizeHint::with_exact(0),
        };
        let extra = if st.generation == self.generation {
            st.kept.len().saturating_sub(st.replayed) as u64
        } else {
            0
        };
        let mut hint = SizeHint::new();
        hint.set_lower(live.lower().saturating_add(extra));
        if let Some(upper) = live.upper() {
            hint.set_upper(upper.saturating_add(extra));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;

    /// A live body fed frame by frame by the test.
    struct Fed(mpsc::UnboundedReceiver<Result<Frame<Bytes>, BodyError>>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = BodyError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
            self.0.poll_recv(cx)
        }
    }

    type Feed = mpsc::UnboundedSender<Result<Frame<Bytes>, BodyError>>;

    fn fed() -> (Feed, ReplayBody<Fed>, ReplaySource<Fed>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (first, source) = ReplayBody::new(Fed(rx));
        (tx, first, source)
    }

    fn send(tx: &Feed, data: &'static [u8]) {
        tx.send(Ok(Frame::data(Bytes::from_static(data))))
            .expect("feed");
    }

    async fn next_data(body: &mut ReplayBody<Fed>) -> Bytes {
        match body.frame().await {
            Some(Ok(f)) => f.into_data().expect("a data frame"),
            other => panic!("expected data, got {:?}", other.map(|r| r.is_ok())),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_attempt_gets_each_frame_as_it_arrives() {
        let (tx, mut first, _source) = fed();
        send(&tx, b"head");
        assert_eq!(next_data(&mut first).await, "head");
        // Nothing more has arrived: the body waits, it does not end.
        let waited = tokio::time::timeout(Duration::from_secs(5), first.frame()).await;
        assert!(waited.is_err(), "the body must wait for the client");
        send(&tx, b"tail");
        assert_eq!(next_data(&mut first).await, "tail");
        drop(tx);
        assert!(first.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_retry_replays_the_kept_bytes_then_reads_on_from_the_live_body() {
        let (tx, mut first, source) = fed();
        send(&tx, b"one,");
        send(&tx, b"two,");
        assert_eq!(next_data(&mut first).await, "one,");
        assert_eq!(next_data(&mut first).await, "two,");
        let retry = source.try_replay().expect("replayable");
        // The first attempt's connection may still poll: it must fail, not end.
        assert!(matches!(
            first.frame().await,
            Some(Err(BodyError::Superseded))
        ));
        send(&tx, b"three");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        tx.send(Ok(Frame::trailers(trailers))).expect("feed");
        drop(tx);
        let all = retry.collect().await.expect("body");
        assert_eq!(
            all.trailers().map(|t| t["grpc-status"].clone()),
            Some(http::HeaderValue::from_static("0"))
        );
        assert_eq!(all.to_bytes(), "one,two,three");
        // A finished body replays whole, trailers included, and knows its size.
        let again = source.try_replay().expect("still replayable");
        assert_eq!(again.size_hint().exact(), Some(13));
        let all = again.collect().await.expect("body");
        assert!(all.trailers().is_some());
        assert_eq!(all.to_bytes(), "one,two,three");
    }

    #[tokio::test]
    async fn beyond_the_limit_the_copy_is_dropped_and_nothing_replays() {
        static BIG: [u8; 40 * 1024] = [b'x'; 40 * 1024];
        let (tx, mut first, source) = fed();
        send(&tx, &BIG);
        assert_eq!(next_data(&mut first).await.len(), BIG.len());
        assert!(source.is_replayable(), "40 KiB is within the limit");
        send(&tx, &BIG);
        assert_eq!(next_data(&mut first).await.len(), BIG.len());
        assert!(!source.is_replayable(), "80 KiB sent, 64 KiB kept");
        assert!(source.try_replay().is_none());
        // The first attempt streams on, unaffected.
        send(&tx, b"end");
        drop(tx);
        assert_eq!(next_data(&mut first).await, "end");
        assert!(first.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_body_exactly_at_the_limit_still_replays() {
        static HALF: [u8; REPLAY_LIMIT / 2] = [b'y'; REPLAY_LIMIT / 2];
        let (tx, first, source) = fed();
        send(&tx, &HALF);
        send(&tx, &HALF);
        drop(tx);
        assert_eq!(
            first.collect().await.expect("body").to_bytes().len(),
            REPLAY_LIMIT
        );
        let again = source.try_replay().expect("64 KiB is kept whole");
        assert_eq!(
            again.collect().await.expect("body").to_bytes().len(),
            REPLAY_LIMIT
        );
    }

    #[tokio::test]
    async fn a_failed_live_body_cannot_be_replayed() {
        let (tx, mut first, source) = fed();
        send(&tx, b"part");
        assert_eq!(next_data(&mut first).await, "part");
        tx.send(Err(BodyError::TooLarge(4))).expect("feed");
        assert!(matches!(
            first.frame().await,
            Some(Err(BodyError::TooLarge(4)))
        ));
        assert!(!source.is_replayable());
        assert!(source.try_replay().is_none());
    }

    #[tokio::test]
    async fn the_kept_copy_does_not_pin_the_buffers_frames_were_read_from() {
        // hyper hands each frame out as a slice of its read buffer: a client
        // that sends its body one byte per read would otherwise make 64 KiB
        // of kept frames hold 64 Ki read buffers (8 KiB or more each).
        let (tx, mut first, source) = fed();
        let read_buffers: Vec<Bytes> = (0..64).map(|_| Bytes::from(vec![b'z'; 8192])).collect();
        for buf in &read_buffers {
            tx.send(Ok(Frame::data(buf.slice(0..1)))).expect("feed");
        }
        for _ in &read_buffers {
            assert_eq!(next_data(&mut first).await, "z");
        }
        for (i, buf) in read_buffers.iter().enumerate() {
            assert!(
                buf.is_unique(),
                "read buffer {i} is still referenced by the kept copy"
            );
        }
        drop(tx);
        assert!(first.frame().await.is_none());
        let again = source.try_replay().expect("64 bytes are kept");
        assert_eq!(
            again.collect().await.expect("body").to_bytes(),
            "z".repeat(64)
        );
    }

    #[tokio::test]
    async fn the_kept_copy_is_released_once_no_retry_can_follow() {
        let (tx, mut first, source) = fed();
        send(&tx, b"a streaming upload on a route with retries");
        next_data(&mut first).await;
        assert!(!lock(&first.state).kept.is_empty());
        // The attempt loop is over (a response came): no retry will ask for
        // the copy, while the body may stream on for a long time.
        drop(source);
        assert_eq!(lock(&first.state).kept.capacity(), 0, "copy still held");
        send(&tx, b" goes on");
        assert_eq!(next_data(&mut first).await, " goes on");
        assert_eq!(
            lock(&first.state).kept.capacity(),
            0,
            "nothing kept any more"
        );
    }

    #[tokio::test]
    async fn a_retry_still_replaying_when_the_attempt_loop_ends_sends_the_whole_body() {
        // A gRPC bidi upstream answers the retry's headers before it read
        // the replayed bytes: the loop ends, the body must still be whole.
        let (tx, mut first, source) = fed();
        send(&tx, b"one,");
        send(&tx, b"two,");
        next_data(&mut first).await;
        next_data(&mut first).await;
        let retry = source.try_replay().expect("replayable");
        drop(source);
        send(&tx, b"three");
        drop(tx);
        assert_eq!(
            retry.collect().await.expect("body").to_bytes(),
            "one,two,three"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_parked_on_the_live_body_is_woken_and_fails_when_a_retry_takes_over() {
        let (tx, first, source) = fed();
        // The first attempt's connection task waits for client bytes.
        let parked = tokio::spawn(async move {
            let mut first = first;
            first.frame().await.map(|r| r.map(|_| ()))
        });
        tokio::task::yield_now().await;
        assert!(!parked.is_finished());
        let _retry = source.try_replay().expect("nothing read yet");
        let ended = tokio::time::timeout(Duration::from_secs(1), parked)
            .await
            .expect("woken at once, without any client byte")
            .expect("join");
        assert!(matches!(ended, Some(Err(BodyError::Superseded))));
        drop(tx);
    }
}
