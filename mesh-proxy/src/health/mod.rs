//! Endpoint health: passive outlier detection (ejection after consecutive
//! failures) and active health checks.
//!
//! Both only flip an endpoint's availability flags; the load balancers read
//! them with two atomic loads per candidate. Must not: pick endpoints or
//! answer requests.

mod active;
mod outlier;

pub use active::spawn_health_checks;
pub use outlier::record_outcome;
