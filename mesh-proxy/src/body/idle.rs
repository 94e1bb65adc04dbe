//! The idle timeout of a streamed body, request or response alike: no
//! frame for `timeout` ends it with an error (a stalled body is cut, never
//! passed off as complete).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The timer is boxed, so a body holding it stays `Unpin` (the HTTP/2
/// client requires it), and created only the first time the body has to
/// wait, so bodies that arrive with their headers never allocate one.
/// Re-arming a timer per frame costs more than a clock read: a frame only
/// records its time, and the timer is moved when it fires.
#[derive(Debug)]
pub(crate) struct IdleTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    last_data: Instant,
}

impl IdleTimer {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            sleep: None,
            timeout,
            last_data: Instant::now(),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// When the timeout runs out without another frame (far in the future
    /// for a timeout too long for the clock).
    fn deadline(&self) -> Instant {
        deadline_after(self.last_data, self.timeout)
    }

    /// A frame arrived.
    pub(crate) fn touch(&mut self) {
        self.last_data = Instant::now();
    }

    /// For a body whose inner body is pending: ready once no frame came
    /// for the timeout, else registers the wake-up for when it would be.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let first = self.deadline();
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(first)));
        loop {
            ready!(sleep.as_mut().poll(cx));
            let deadline = deadline_after(self.last_data, self.timeout);
            if deadline <= Instant::now() {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(deadline);
        }
    }
}

/// `timeout` after `from` (far in the future for a timeout too long for the
/// clock).
fn deadline_after(from: Instant, timeout: std::time::Duration) -> Instant {
    from.checked_add(timeout)
        .unwrap_or_else(|| super::far_future(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expired(timer: &mut IdleTimer) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        timer.poll_expired(&mut cx).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_a_whole_timeout_without_frames() {
        let mut timer = IdleTimer::new(Duration::from_secs(10));
        assert!(!expired(&mut timer), "a timer is created, not fired");
        tokio::time::advance(Duration::from_secs(9)).await;
        timer.touch();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!expired(&mut timer), "18 s, but a frame came at 9 s");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(expired(&mut timer), "10 s since the last frame");
        assert_eq!(timer.timeout(), Duration::from_secs(10));
    }
}
