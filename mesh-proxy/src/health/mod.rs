//! Endpoint health: passive outlier detection (ejection after consecutive
//! failures) and active health checks.
//!
//! Key type: [`EndpointHealth`], owned by each `cluster::Endpoint`; only
//! this module changes it. Both checks only flip an endpoint's
//! availability; the load balancers read it with two atomic loads per
//! candidate. Must not: pick endpoints or answer requests.

mod active;
mod endpoint;
mod outlier;

pub use active::spawn_health_checks;
pub use endpoint::EndpointHealth;
pub use outlier::record_outcome;
