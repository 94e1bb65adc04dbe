//! One endpoint's health state: active checking's verdict, outlier
//! detection's verdict and the streaks that lead to them.
//!
//! The fields are private atomics: only `health` (active checks, outlier
//! detection) changes them, through the methods below; everyone else reads
//! [`EndpointHealth::is_available`] (two relaxed loads, on every pick) or a
//! [`HealthSnapshot`] (admin views).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// An ejection lasts `base_ejection_time × ejections so far`, at most this
/// many times the base.
const MAX_EJECTION_MULTIPLIER: u32 = 10;

#[derive(Debug)]
pub struct EndpointHealth {
    /// Active health checking's verdict (starts healthy).
    healthy: AtomicBool,
    /// Outlier detection's verdict.
    ejected: AtomicBool,
    /// Passive health: consecutive 5xx and gateway failures, ejections so far.
    consecutive_5xx: AtomicU32,
    consecutive_gateway_failure: AtomicU32,
    ejections: AtomicU32,
    /// Active health: consecutive probe results against the current verdict.
    probe_streak: AtomicU32,
}

impl Default for EndpointHealth {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            ejected: AtomicBool::new(false),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway_failure: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            probe_streak: AtomicU32::new(0),
        }
    }
}

/// One endpoint's health as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub healthy: bool,
    pub ejected: bool,
    pub ejections: u32,
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
}

impl HealthSnapshot {
    pub fn is_available(&self) -> bool {
        self.healthy && !self.ejected
    }

    /// Envoy's spelling: `healthy`, or the failed checks.
    pub fn flags(&self) -> String {
        let mut flags = String::new();
        if !self.healthy {
            flags.push_str("/failed_active_hc");
        }
        if self.ejected {
            flags.push_str("/failed_outlier_check");
        }
        if flags.is_empty() {
            flags.push_str("healthy");
        }
        flags
    }
}

/// The consecutive failures after one outcome was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Streaks {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
}

impl EndpointHealth {
    /// Healthy by active checks and not ejected by outlier detection.
    /// Read for every candidate of every pick.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.ejected.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            healthy: self.healthy.load(Ordering::Relaxed),
            ejected: self.ejected.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
            consecutive_5xx: self.consecutive_5xx.load(Ordering::Relaxed),
            consecutive_gateway_failure: self.consecutive_gateway_failure.load(Ordering::Relaxed),
        }
    }

    /// Counts one active probe result. The verdict flips after `threshold`
    /// results in a row that disagree with it (`unhealthy_threshold` while
    /// healthy, `healthy_threshold` while not); returns the new verdict
    /// when it flipped.
    pub(super) fn mark_active_result(
        &self,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<bool> {
        let healthy = self.healthy.load(Ordering::Relaxed);
        if ok == healthy {
            self.probe_streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.probe_streak.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = if healthy {
            unhealthy_threshold
        } else {
            healthy_threshold
        };
        if streak < threshold.max(1) {
            return None;
        }
        self.healthy.store(ok, Ordering::Relaxed);
        self.probe_streak.store(0, Ordering::Relaxed);
        Some(ok)
    }

    /// Counts one upstream outcome into the failure streaks: a failure of a
    /// kind extends its streak, anything else resets it.
    pub(super) fn count_outcome(&self, is_5xx: bool, is_gateway: bool) -> Streaks {
        let bump = |counter: &AtomicU32, hit: bool| {
            if hit {
                counter.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                counter.store(0, Ordering::Relaxed);
                0
            }
        };
        Streaks {
            consecutive_5xx: bump(&self.consecutive_5xx, is_5xx),
            consecutive_gateway_failure: bump(&self.consecutive_gateway_failure, is_gateway),
        }
    }

    /// Ejects the endpoint and resets its streaks; returns the ejection's
    /// multiplier of the base time (ejections so far, at most 10), or
    /// `None` when it was already ejected.
    pub(super) fn eject(&self) -> Option<u32> {
        if self.ejected.swap(true, Ordering::AcqRel) {
            return None;
        }
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway_failure.store(0, Ordering::Relaxed);
        let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        Some(n.min(MAX_EJECTION_MULTIPLIER))
    }

    /// Ends an ejection (its time is up).
    pub(super) fn readmit(&self) {
        self.ejected.store(false, Ordering::Release);
    }

    /// Sets both verdicts directly, for tests of the load balancers.
    #[cfg(test)]
    pub(crate) fn set_for_test(&self, healthy: bool, ejected: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        self.ejected.store(ejected, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_verdict_flips_only_after_threshold_results_in_a_row() {
        let h = EndpointHealth::default();
        assert_eq!(h.mark_active_result(false, 2, 3), None);
        assert_eq!(h.mark_active_result(false, 2, 3), None);
        assert_eq!(h.mark_active_result(true, 2, 3), None, "agreement resets");
        assert_eq!(h.mark_active_result(false, 2, 3), None);
        assert_eq!(h.mark_active_result(false, 2, 3), None);
        assert_eq!(h.mark_active_result(false, 2, 3), Some(false));
        assert!(!h.is_available());
        assert_eq!(h.mark_active_result(true, 2, 3), None);
        assert_eq!(h.mark_active_result(true, 2, 3), Some(true));
        assert!(h.is_available());
    }

    #[test]
    fn ejection_resets_streaks_and_grows_to_ten_times() {
        let h = EndpointHealth::default();
        let s = h.count_outcome(true, true);
        assert_eq!(s.consecutive_5xx, 1);
        assert_eq!(h.count_outcome(true, false).consecutive_gateway_failure, 0);
        assert_eq!(h.eject(), Some(1));
        assert_eq!(h.eject(), None, "already ejected");
        assert_eq!(h.snapshot().consecutive_5xx, 0);
        assert_eq!(h.snapshot().flags(), "/failed_outlier_check");
        for n in 2..=12 {
            h.readmit();
            assert_eq!(h.eject(), Some(n.min(10)));
        }
        assert_eq!(h.snapshot().ejections, 12);
    }

    #[test]
    fn flags_name_every_failed_check() {
        let h = EndpointHealth::default();
        assert_eq!(h.snapshot().flags(), "healthy");
        h.set_for_test(false, true);
        let s = h.snapshot();
        assert_eq!(s.flags(), "/failed_active_hc/failed_outlier_check");
        assert!(!s.is_available());
    }
}
