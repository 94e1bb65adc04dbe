//! Retry budget (Linkerd/Finagle style): every original request deposits
//! `ratio` of a retry token, a floor of `min_per_second` tokens refills each
//! second, and each retry withdraws one. A failing cluster therefore sees at
//! most `ratio` extra load plus the floor, never a retry storm (RELIABILITY R3).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tokio::time::Instant;

use crate::config::RetryBudgetSpec;

const MILLI: i64 = 1000;

#[derive(Debug)]
pub struct RetryBudget {
    origin: Instant,
    /// Retry tokens in thousandths.
    balance: AtomicI64,
    /// Last floor refill, ms since `origin`.
    refilled_ms: AtomicU64,
    deposit: i64,
    floor_per_ms: f64,
    /// At most ten seconds' worth of savings, so an idle period cannot fund
    /// a burst of retries later.
    cap: i64,
}

impl RetryBudget {
    pub fn new(spec: RetryBudgetSpec) -> Self {
        let floor = i64::from(spec.min_per_second) * MILLI;
        Self {
            origin: Instant::now(),
            balance: AtomicI64::new(floor),
            refilled_ms: AtomicU64::new(0),
            deposit: (spec.ratio * MILLI as f64) as i64,
            floor_per_ms: floor as f64 / 1000.0,
            cap: (floor * 10).max(10 * MILLI),
        }
    }

    /// Called once per original request.
    pub fn deposit(&self) {
        self.add(self.deposit);
    }

    fn add(&self, amount: i64) {
        let cap = self.cap;
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                Some((b + amount).min(cap))
            });
    }

    fn refill_floor(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        let last = self.refilled_ms.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(last);
        let amount = (elapsed as f64 * self.floor_per_ms) as i64;
        if amount > 0
            && self
                .refilled_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.add(amount);
        }
    }

    /// Takes one retry token; `false` when the budget is exhausted.
    pub fn try_withdraw(&self) -> bool {
        self.refill_floor();
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                (b >= MILLI).then(|| b - MILLI)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn retries_are_capped_at_ratio_of_requests_plus_the_floor() {
        let b = RetryBudget::new(RetryBudgetSpec {
            ratio: 0.2,
            min_per_second: 10,
        });
        // Ten seconds of 100 requests/s, every one of them failing and
        // wanting a retry: at most 20 % + 10/s may be retried.
        let mut retried = 0;
        for _ in 0..1000 {
            tokio::time::advance(Duration::from_millis(10)).await;
            b.deposit();
            retried += usize::from(b.try_withdraw());
        }
        // 0.2 × 1000 + 10/s × 10 s, plus the initial floor of 10.
        assert!((295..=310).contains(&retried), "{retried}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_budget_saves_at_most_ten_seconds_of_floor() {
        let b = RetryBudget::new(RetryBudgetSpec {
            ratio: 0.0,
            min_per_second: 5,
        });
        tokio::time::advance(Duration::from_secs(3600)).await;
        let burst = (0..1000).filter(|_| b.try_withdraw()).count();
        assert_eq!(burst, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_floor_and_ratio_means_no_retries() {
        let b = RetryBudget::new(RetryBudgetSpec {
            ratio: 0.0,
            min_per_second: 0,
        });
        tokio::time::advance(Duration::from_secs(5)).await;
        b.deposit();
        assert!(!b.try_withdraw());
    }
}
