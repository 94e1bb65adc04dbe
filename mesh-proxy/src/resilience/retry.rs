//! Retry decisions (SPEC §3 "Retries"): which outcomes are retried, for
//! which methods, and the exponential backoff with full jitter between tries.

use std::time::Duration;

use http::Method;

use super::RetryBudget;
pub use crate::cluster::Outcome;
use crate::cluster::UpstreamErrorKind;
use crate::config::RetrySpec;

#[derive(Debug)]
pub struct RetryPolicy {
    pub spec: RetrySpec,
    pub budget: RetryBudget,
}

impl RetryPolicy {
    pub fn new(spec: RetrySpec) -> Self {
        let budget = RetryBudget::new(spec.budget);
        Self { spec, budget }
    }

    /// Whether `outcome` is one of the configured retry conditions.
    pub fn is_retry_condition(&self, outcome: Outcome) -> bool {
        let on = &self.spec.on;
        match outcome {
            Outcome::Status(s) => {
                (on.server_error && s.is_server_error())
                    || (on.gateway_error && matches!(s.as_u16(), 502..=504))
                    || self.spec.retriable_status_codes.contains(&s)
            }
            Outcome::PerTryTimeout => on.server_error || on.gateway_error,
            Outcome::Failed(kind) => match kind {
                UpstreamErrorKind::ConnectFailure => {
                    on.connect_failure || on.server_error || on.gateway_error
                }
                UpstreamErrorKind::RefusedStream => {
                    on.refused_stream || on.reset || on.server_error
                }
                UpstreamErrorKind::Reset => on.reset || on.server_error,
                UpstreamErrorKind::Protocol => on.server_error || on.gateway_error,
                // Local decisions, not upstream faults: never retried.
                UpstreamErrorKind::NoHealthyEndpoint | UpstreamErrorKind::Overflow => false,
            },
        }
    }

    /// Whether a request that may have reached the upstream can be sent again:
    /// its method is listed and its body can be replayed.
    pub fn may_resend(&self, method: &Method, body_replayable: bool) -> bool {
        body_replayable && self.spec.methods.contains(method)
    }

    /// Full-jitter exponential backoff before retry number `retry` (1-based):
    /// uniform in `[0, min(max, base × 2^(retry-1))]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let b = &self.spec.backoff;
        let ceiling = b
            .base
            .saturating_mul(
                1u32.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(b.max);
        let nanos = ceiling.as_nanos() as u64;
        Duration::from_nanos(if nanos == 0 {
            0
        } else {
            fastrand::u64(..=nanos)
        })
    }
}

/// A policy of 2 retries on `on` and `codes`, 25–250 ms backoff, the
/// default budget, for GET and PUT (unit tests).
#[cfg(test)]
pub(crate) fn test_policy(on: crate::config::RetryOn, codes: &[u16]) -> RetryPolicy {
    use crate::config::{BackoffSpec, RetryBudgetSpec};
    RetryPolicy::new(RetrySpec {
        attempts: 2,
        on,
        retriable_status_codes: codes
            .iter()
            .map(|c| http::StatusCode::from_u16(*c).expect("code"))
            .collect(),
        per_try_timeout: None,
        backoff: BackoffSpec {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        },
        budget: RetryBudgetSpec {
            ratio: 0.2,
            min_per_second: 10,
        },
        methods: vec![Method::GET, Method::PUT],
    })
}

#[cfg(test)]
mod tests {
    use super::test_policy as policy;
    use super::*;
    use crate::config::RetryOn;
    use http::StatusCode;

    #[test]
    fn conditions_map_to_outcomes_as_envoy_defines_them() {
        let gw = policy(
            RetryOn {
                gateway_error: true,
                ..Default::default()
            },
            &[],
        );
        assert!(gw.is_retry_condition(Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)));
        assert!(!gw.is_retry_condition(Outcome::Status(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(gw.is_retry_condition(Outcome::PerTryTimeout));
        assert!(gw.is_retry_condition(Outcome::Failed(UpstreamErrorKind::ConnectFailure)));
        assert!(!gw.is_retry_condition(Outcome::Failed(UpstreamErrorKind::Reset)));

        let five = policy(
            RetryOn {
                server_error: true,
                ..Default::default()
            },
            &[],
        );
        assert!(five.is_retry_condition(Outcome::Status(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(five.is_retry_condition(Outcome::Failed(UpstreamErrorKind::Reset)));
        assert!(!five.is_retry_condition(Outcome::Status(StatusCode::NOT_FOUND)));
        assert!(!five.is_retry_condition(Outcome::Failed(UpstreamErrorKind::Overflow)));

        let codes = policy(RetryOn::default(), &[409]);
        assert!(codes.is_retry_condition(Outcome::Status(StatusCode::CONFLICT)));
        assert!(!codes.is_retry_condition(Outcome::Failed(UpstreamErrorKind::ConnectFailure)));

        let connect = policy(
            RetryOn {
                connect_failure: true,
                ..Default::default()
            },
            &[],
        );
        assert!(connect.is_retry_condition(Outcome::Failed(UpstreamErrorKind::ConnectFailure)));
        assert!(!connect.is_retry_condition(Outcome::Status(StatusCode::BAD_GATEWAY)));
    }

    #[test]
    fn only_listed_methods_with_replayable_bodies_are_resent() {
        let p = policy(
            RetryOn {
                reset: true,
                ..Default::default()
            },
            &[],
        );
        assert!(p.may_resend(&Method::GET, true));
        assert!(!p.may_resend(&Method::POST, true));
        assert!(!p.may_resend(&Method::PUT, false));
        assert!(Outcome::Failed(UpstreamErrorKind::ConnectFailure).nothing_sent());
        assert!(!Outcome::Failed(UpstreamErrorKind::Reset).nothing_sent());
    }

    #[test]
    fn backoff_grows_exponentially_within_full_jitter_and_is_capped() {
        let p = policy(RetryOn::default(), &[]);
        for retry in 1..=10 {
            let ceiling =
                Duration::from_millis(25 * (1 << (retry - 1))).min(Duration::from_millis(250));
            let samples: Vec<Duration> = (0..500).map(|_| p.backoff(retry)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "retry {retry}");
            let max = samples.iter().max().copied().unwrap_or_default();
            assert!(
                max > ceiling * 3 / 4,
                "retry {retry}: jitter should span the range, max {max:?}"
            );
        }
        assert!(p.backoff(64) <= Duration::from_millis(250));
    }
}
