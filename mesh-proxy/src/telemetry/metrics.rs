//! Metric primitives the request path updates: plain atomics, never a lock.
//!
//! Key types: [`LatencyHistogram`] (fixed buckets, one relaxed `fetch_add`
//! per bucket and sum; prometheus-client's own histogram takes a lock per
//! observation, so it is not used on the request path), [`RejectReason`]
//! (the `downstream_rq_rejected.<reason>` counters), [`ActiveGuard`] (an
//! active gauge plus its total), [`ReloadCounters`]. Reading and rendering
//! (dotted `/stats`, Prometheus) is the admin API's job, at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets in milliseconds (`le`), Envoy-like
/// from sub-millisecond to a minute; one more bucket holds the rest (+Inf).
pub const LATENCY_BOUNDS_MS: [f64; 16] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    30000.0, 60000.0,
];
const BOUNDS_US: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];
/// Finite buckets plus +Inf.
pub const LATENCY_BUCKETS: usize = BOUNDS_US.len() + 1;

/// A lock-free latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Non-cumulative counts; the last bucket is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS],
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // `le` semantics: a value equal to a bound belongs to that bucket.
        let i = BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The counts at one moment (each bucket read once; the count is the
    /// sum of the buckets read, so the two always agree).
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Non-cumulative counts per bucket; the last is +Inf.
    pub counts: [u64; LATENCY_BUCKETS],
    pub sum_us: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_ms(&self) -> f64 {
        self.sum_us as f64 / 1000.0
    }

    /// Cumulative counts with their upper bounds in ms (`f64::INFINITY` last).
    pub fn cumulative_ms(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                total += c;
                (
                    LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(f64::INFINITY),
                    total,
                )
            })
            .collect()
    }

    /// The `q` quantile (0..=1) in ms ([`cumulative_quantile`]).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let cumulative: Vec<(f64, f64)> = self
            .cumulative_ms()
            .into_iter()
            .map(|(le, n)| (le, n as f64))
            .collect();
        cumulative_quantile(&cumulative, q)
    }
}

/// The `q` quantile (0..=1) of cumulative buckets — `(upper bound, count
/// up to it)`, the last bound `f64::INFINITY` — interpolated linearly
/// inside its bucket as Prometheus' `histogram_quantile` does; a value in
/// the +Inf bucket is reported as the highest finite bound. `None` when
/// empty. The admin's quantiles and `mesh-cli stat`'s (over the difference
/// of two scrapes) both come from here.
pub fn cumulative_quantile(cumulative: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = cumulative.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for &(le, upto) in cumulative {
        let n = upto - below;
        if n > 0.0 && upto >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = ((rank - below) / n).clamp(0.0, 1.0);
            return Some(lower + (le - lower) * within);
        }
        if le.is_finite() {
            lower = le;
        }
        below = upto;
    }
    Some(lower)
}

/// Why a request was refused by a listener limit (SPEC §3 "Limits"):
/// `http.<listener>.downstream_rq_rejected.<reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Header section beyond `max_request_headers_kb` or `_count` (431).
    Headers,
    /// Request target beyond `max_uri_kb` (414).
    Uri,
    /// Body beyond `max_request_body_mb` (413).
    Body,
    /// No body bytes for `body_idle_timeout` (408).
    BodyTimeout,
    /// Framing or target the proxy refuses to interpret (400).
    Malformed,
    /// A route's local rate limit (429).
    RateLimit,
    /// A header name with `_` under `headers_with_underscores: reject` (400).
    HeadersWithUnderscores,
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        RejectReason::Headers,
        RejectReason::Uri,
        RejectReason::Body,
        RejectReason::BodyTimeout,
        RejectReason::Malformed,
        RejectReason::RateLimit,
        RejectReason::HeadersWithUnderscores,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Headers => "headers",
            RejectReason::Uri => "uri",
            RejectReason::Body => "body",
            RejectReason::BodyTimeout => "body_timeout",
            RejectReason::Malformed => "malformed",
            RejectReason::RateLimit => "rate_limit",
            RejectReason::HeadersWithUnderscores => "headers_with_underscores",
        }
    }
}

/// One counter per [`RejectReason`].
#[derive(Debug, Default)]
pub struct RejectCounters([AtomicU64; RejectReason::ALL.len()]);

impl RejectCounters {
    pub fn count(&self, reason: RejectReason) {
        self.0[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, reason: RejectReason) -> u64 {
        self.0[reason as usize].load(Ordering::Relaxed)
    }
}

/// Counts something in `active` (and once in `total`) while it lives.
pub struct ActiveGuard<'a>(&'a AtomicU64);

impl<'a> ActiveGuard<'a> {
    pub fn new(active: &'a AtomicU64, total: &AtomicU64) -> Self {
        total.fetch_add(1, Ordering::Relaxed);
        active.fetch_add(1, Ordering::Relaxed);
        Self(active)
    }

    /// Counts in `active` alone (a gauge with no total).
    pub fn gauge(active: &'a AtomicU64) -> Self {
        active.fetch_add(1, Ordering::Relaxed);
        Self(active)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `server.config_reload_total` (every reload attempt, SIGHUP or file
/// change, including rejected ones) and `server.config_reload_failed`.
#[derive(Debug, Default)]
pub struct ReloadCounters {
    pub total: AtomicU64,
    pub failed: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1000.0)
    }

    #[test]
    fn values_land_in_the_bucket_whose_bound_they_do_not_exceed() {
        let h = LatencyHistogram::default();
        for v in [0.0, 0.5, 0.6, 1.0, 7.0, 60_000.0, 60_001.0, 1e9] {
            h.record(ms(v));
        }
        let s = h.snapshot();
        // 0 and 0.5 → le 0.5; 0.6 and 1.0 → le 1; 7 → le 10; 60000 → le 60000; the rest → +Inf.
        assert_eq!(s.counts[0], 2);
        assert_eq!(s.counts[1], 2);
        assert_eq!(s.counts[4], 1);
        assert_eq!(s.counts[15], 1);
        assert_eq!(s.counts[16], 2);
        assert_eq!(s.count(), 8);
        let cumulative = s.cumulative_ms();
        assert_eq!(cumulative.len(), LATENCY_BUCKETS);
        assert_eq!(cumulative[1], (1.0, 4));
        assert_eq!(cumulative[16], (f64::INFINITY, 8));
    }

    #[test]
    fn sum_is_kept_in_microseconds() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(1500));
        h.record(Duration::from_micros(250));
        assert_eq!(h.snapshot().sum_us, 1750);
        assert!((h.snapshot().sum_ms() - 1.75).abs() < 1e-9);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let h = LatencyHistogram::default();
        assert_eq!(h.snapshot().quantile_ms(0.5), None);
        // 100 values in (10, 25] ms: the median is half-way through that bucket.
        for _ in 0..100 {
            h.record(ms(20.0));
        }
        let s = h.snapshot();
        let p50 = s.quantile_ms(0.5).unwrap_or_default();
        assert!((p50 - 17.5).abs() < 1e-9, "p50 {p50}");
        let p99 = s.quantile_ms(0.99).unwrap_or_default();
        assert!((p99 - 24.85).abs() < 1e-9, "p99 {p99}");
    }

    #[test]
    fn quantiles_follow_the_distribution() {
        let h = LatencyHistogram::default();
        // 90 fast (≤ 1 ms) and 10 slow (in (250, 500] ms) requests.
        for _ in 0..90 {
            h.record(ms(0.8));
        }
        for _ in 0..10 {
            h.record(ms(400.0));
        }
        let s = h.snapshot();
        let p50 = s.quantile_ms(0.5).unwrap_or_default();
        assert!(p50 > 0.5 && p50 <= 1.0, "p50 {p50}");
        let p95 = s.quantile_ms(0.95).unwrap_or_default();
        assert!(p95 > 250.0 && p95 <= 500.0, "p95 {p95}");
        let p99 = s.quantile_ms(0.99).unwrap_or_default();
        assert!(p99 > p95 && p99 <= 500.0, "p99 {p99}");
    }

    #[test]
    fn overflow_bucket_reports_the_highest_finite_bound() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_secs(3600));
        assert_eq!(h.snapshot().quantile_ms(0.99), Some(60_000.0));
    }

    #[test]
    fn active_guard_counts_total_once_and_active_while_alive() {
        let (active, total) = (AtomicU64::new(0), AtomicU64::new(0));
        {
            let _a = ActiveGuard::new(&active, &total);
            let _b = ActiveGuard::new(&active, &total);
            assert_eq!(active.load(Ordering::Relaxed), 2);
        }
        assert_eq!(active.load(Ordering::Relaxed), 0);
        assert_eq!(total.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn reject_reasons_index_their_own_counter() {
        let c = RejectCounters::default();
        c.count(RejectReason::Uri);
        c.count(RejectReason::Uri);
        c.count(RejectReason::RateLimit);
        assert_eq!(c.get(RejectReason::Uri), 2);
        assert_eq!(c.get(RejectReason::RateLimit), 1);
        assert_eq!(c.get(RejectReason::Headers), 0);
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
