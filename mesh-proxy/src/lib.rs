//! mesh-proxy: the data plane of the mesh — sidecar and edge proxy for
//! HTTP/1.1, HTTP/2 and raw TCP.
//!
//! Modules, top to bottom (dependencies point downward only): `app` wires
//! everything; `listener` accepts connections; `router` matches routes and
//! applies per-route policy; `cluster` picks endpoints and pools upstream
//! connections; `body` streams request bodies with their limits; `config`
//! parses and validates; `telemetry` logs.

pub mod admin;
pub mod app;
pub mod body;
pub mod cluster;
pub mod config;
mod file_watch;
pub(crate) mod health;
pub mod identity;
pub(crate) mod listener;
pub(crate) mod policy;
/// Authorization by identity (SPEC §7): the validated policy, its
/// decision, and offline answers for `mesh-cli authz`.
pub use policy::authz;
pub mod resilience;
pub mod router;
pub mod telemetry;
