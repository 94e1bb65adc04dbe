//! Per-route resilience policy: retry decisions, backoff, the retry budget
//! and the local rate limit. Pure state machines over atomics and tokio
//! time, so each is unit-tested with paused time; the router drives them.

pub mod budget;
pub mod ratelimit;
pub mod retry;

pub use budget::RetryBudget;
pub use ratelimit::RateLimiter;
pub use retry::{Outcome, RetryPolicy};
