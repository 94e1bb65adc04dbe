//! The local rate limit stage (`routes[].rate_limit`): a token bucket per
//! route; an empty bucket answers 429 `RL`.

use crate::config::RateLimitSpec;
use crate::config::raw::RateLimitConfig;
use crate::config::validate::{Ctx, join};
use crate::resilience::RateLimiter;
use crate::router::ProxyError;

/// `routes[].rate_limit`: a positive rate; `burst` defaults to one
/// second's worth (at least one token, or no request could ever pass).
pub(crate) fn validate(cx: &mut Ctx<'_>, at: &str, raw: RateLimitConfig) -> Option<RateLimitSpec> {
    let rps = cx
        .required(at, "requests_per_second", raw.requests_per_second.as_ref())
        .copied()?;
    if !(rps.is_finite() && rps > 0.0) {
        cx.error(
            &join(at, "requests_per_second"),
            format!("{rps} is invalid: must be greater than 0"),
        );
        return None;
    }
    let default_burst = u32::try_from(rps.ceil() as u64).unwrap_or(u32::MAX).max(1);
    let burst = cx.at_least(at, "burst", raw.burst, 1, default_burst);
    Some(RateLimitSpec {
        requests_per_second: rps,
        burst,
    })
}

/// The bucket of one route.
#[derive(Debug)]
pub(crate) struct RateLimit(RateLimiter);

impl RateLimit {
    pub(crate) fn new(spec: RateLimitSpec) -> Self {
        Self(RateLimiter::new(spec))
    }

    pub(crate) fn check(&self) -> Result<(), ProxyError> {
        if self.0.try_acquire() {
            Ok(())
        } else {
            Err(ProxyError::RateLimited)
        }
    }
}
