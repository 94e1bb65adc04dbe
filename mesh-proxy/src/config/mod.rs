//! Configuration: raw serde types (`raw`), `validate()` into the domain types
//! of `model`, and the error list a user sees.
//!
//! Owns: YAML parsing, every config check, defaults. Must not: touch sockets
//! or runtime state; `mesh-proxy --mode validate` and `mesh-cli validate`
//! call exactly this code.

pub mod model;

pub use model::*;
