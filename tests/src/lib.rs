//! Test support for mesh's end-to-end checks: the ledger upstream (records what
//! really reached the origin), the fault upstream (misbehaves on demand), the
//! real `mesh-proxy` process with bounded startup and PID cleanup, raw-socket
//! and curl clients, and a config builder. The conventions they implement are
//! in RELIABILITY.md, "Harness conventions"; STYLE.md §9 says why they exist.

pub mod client;
pub mod config;
pub mod demo;
pub mod fault;
pub mod ledger;
pub mod mtls;
pub mod process;
pub mod upgrade;
mod wire;

pub use client::{
    CurlOut, RawReply, admin_stat, curl, curl_status, raw_exchange, raw_send_and_close, wait_until,
    wait_until_async, wait_until_ok,
};
pub use config::{
    ConfigBuilder, JsonExt, profile_limits, route_path, route_path_direct, route_prefix,
    route_prefix_direct,
};
pub use demo::assert_demo_chain;
pub use fault::{FaultRequest, FaultUpstream, last_segment};
pub use ledger::{LedgerEntry, LedgerUpstream, big_body_sha256, sha256_hex};
pub use process::{
    ProxyBuilder, ProxyProcess, RefusingPort, RunOutput, bin_path, free_port, refusing_port,
    run_validate,
};
pub use upgrade::{upgrade, upgrade_echo_upstream};
