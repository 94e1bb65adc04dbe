//! A local rate limit per route: `requests_per_second` refill, `burst`
//! capacity, as the generic cell rate algorithm (GCRA, the token bucket
//! kept as one time stamp). Lock-free: the state is one atomic word
//! updated by CAS, and any `burst` and rate that validate are held exactly.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::config::RateLimitSpec;

#[derive(Debug)]
pub struct RateLimiter {
    origin: Instant,
    /// The theoretical arrival time (ns since `origin`): when the bucket
    /// is full again. Each request pushes it one `interval` further.
    tat_ns: AtomicU64,
    /// Nanoseconds one token takes to refill (at least 1).
    interval_ns: u64,
    /// `burst` tokens' worth of time: how far ahead of now `tat_ns` may run.
    capacity_ns: u128,
}

impl RateLimiter {
    pub fn new(spec: RateLimitSpec) -> Self {
        // `as` saturates: a rate too slow for u64 nanoseconds waits ~584 years.
        let interval_ns = ((1e9 / spec.requests_per_second) as u64).max(1);
        Self {
            origin: Instant::now(),
            tat_ns: AtomicU64::new(0),
            interval_ns,
            capacity_ns: u128::from(interval_ns) * u128::from(spec.burst),
        }
    }

    /// Takes one token; `false` when the bucket is empty (answer 429).
    pub fn try_acquire(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut tat = self.tat_ns.load(Ordering::Relaxed);
        loop {
            // Exact in u128: a `next` beyond the clock's range is a bucket
            // that would refill only after ~584 years, so it is empty
            // (saturating instead would pin `tat` and admit everything).
            let next = u128::from(tat.max(now)) + u128::from(self.interval_ns);
            let Ok(next) = u64::try_from(next) else {
                return false;
            };
            if u128::from(next - now) > self.capacity_ns {
                return false;
            }
            match self
                .tat_ns
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => tat = actual,
            }
        }
    }
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

    #[tokio::test(start_paused = true)]
    async fn every_burst_that_validates_is_held_whole() {
        // `burst` is a u32; the bucket once held only 65,535.
        for burst in [65_536, 200_000, u32::MAX / 1024] {
            let l = limiter(1.0, burst);
            let passed = (0..=burst).take_while(|_| l.try_acquire()).count();
            assert_eq!(passed, burst as usize, "burst {burst}");
            assert!(!l.try_acquire());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rates_too_slow_for_the_clock_still_refuse_once_the_burst_is_spent() {
        // One token per ~3,000 years: the interval does not fit in u64 ns.
        let glacial = limiter(1e-11, 2);
        assert_eq!((0..6).filter(|_| glacial.try_acquire()).count(), 1);
        let slow = limiter(1e-10, 2);
        assert_eq!((0..6).filter(|_| slow.try_acquire()).count(), 1);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(!slow.try_acquire(), "an hour refills nothing at 1e-10/s");
        let huge = limiter(0.01, u32::MAX);
        assert!(huge.try_acquire());
    }

    #[tokio::test(start_paused = true)]
    async fn extreme_rates_neither_overflow_nor_stall() {
        let slow = limiter(0.001, u32::MAX);
        assert!(slow.try_acquire());
        let fast = limiter(1e12, 1);
        assert!(fast.try_acquire());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(fast.try_acquire(), "refilled within a millisecond");
    }
}
