//! A local token bucket per route: `requests_per_second` refill, `burst`
//! capacity. Lock-free: the state is one atomic word updated by CAS.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::config::RateLimitSpec;

/// Token fractions: 1/256 of a token, so fractional refill rates work.
const UNIT: u64 = 256;
/// Lower bits of the state word: token units; upper bits: time.
const TOKEN_BITS: u32 = 24;
const TOKEN_MASK: u64 = (1 << TOKEN_BITS) - 1;

#[derive(Debug)]
pub struct RateLimiter {
    origin: Instant,
    /// Upper 40 bits: refill time (ms since `origin`); lower 24 bits:
    /// tokens in units of 1/256 (a burst of up to 65,535 requests).
    state: AtomicU64,
    /// Units added per millisecond.
    per_ms: f64,
    capacity: u64,
}

impl RateLimiter {
    pub fn new(spec: RateLimitSpec) -> Self {
        let capacity = (u64::from(spec.burst) * UNIT).min(TOKEN_MASK);
        Self {
            origin: Instant::now(),
            state: AtomicU64::new(pack(0, capacity)),
            per_ms: spec.requests_per_second * UNIT as f64 / 1000.0,
            capacity,
        }
    }

    /// Takes one token; `false` when the bucket is empty (answer 429).
    pub fn try_acquire(&self) -> bool {
        let now_ms = self.origin.elapsed().as_millis() as u64;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (last_ms, tokens) = unpack(current);
            let elapsed = now_ms.saturating_sub(last_ms);
            let added = (elapsed as f64 * self.per_ms) as u64;
            let (tokens, stamp) = if tokens + added >= self.capacity {
                (self.capacity, now_ms)
            } else {
                // Advance the clock only by the time the whole units took,
                // so the fractional remainder carries over.
                (
                    tokens + added,
                    last_ms + (added as f64 / self.per_ms) as u64,
                )
            };
            if tokens < UNIT {
                return false;
            }
            let next = pack(stamp, tokens - UNIT);
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

fn pack(ms: u64, units: u64) -> u64 {
    (ms << TOKEN_BITS) | (units & TOKEN_MASK)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> TOKEN_BITS, v & TOKEN_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(rps: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimitSpec {
            requests_per_second: rps,
            burst,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_refill_at_the_configured_rate() {
        let l = limiter(10.0, 5);
        assert_eq!((0..10).filter(|_| l.try_acquire()).count(), 5, "the burst");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(l.try_acquire(), "one token after 100 ms at 10/s");
        assert!(!l.try_acquire());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            (0..10).filter(|_| l.try_acquire()).count(),
            5,
            "refill is capped at the burst"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_rates_accumulate() {
        let l = limiter(0.5, 1);
        assert!(l.try_acquire());
        for _ in 0..19 {
            tokio::time::advance(Duration::from_millis(100)).await;
            assert!(!l.try_acquire());
        }
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(l.try_acquire(), "one token every 2 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_of_traffic_at_twice_the_rate_passes_half() {
        let l = limiter(100.0, 1);
        let mut passed = 0;
        for _ in 0..200 {
            tokio::time::advance(Duration::from_millis(5)).await;
            passed += usize::from(l.try_acquire());
        }
        assert!((99..=101).contains(&passed), "{passed}");
    }
}
