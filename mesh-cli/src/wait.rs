//! `mesh-cli wait --admin ADDR [--timeout 30s]`: exit 0 as soon as the
//! proxy's `GET /ready` answers 200 (SPEC §3 "Admin API"), polling about
//! every 200 ms; at the timeout, exit 1 with what it last saw. Silent on
//! success: it runs as a docker compose healthcheck and in entrypoints.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http::StatusCode;
use http::uri::Authority;
use tokio::time::Instant;

use crate::admin;

pub const EXAMPLES: &str = "\
Examples:
  mesh-cli wait --admin 127.0.0.1:9901 --timeout 30s && ./start-app
  # docker compose healthcheck of a sidecar:
  healthcheck:
    test: [\"CMD\", \"mesh-cli\", \"wait\", \"--admin\", \"127.0.0.1:9901\", \"--timeout\", \"2s\"]

Exit status: 0 once GET /ready answers 200 LIVE; 1 at the timeout, with what
the admin last answered (503 NO_IDENTITY, 503 DRAINING, connection refused...).";

/// How often `/ready` is asked.
const POLL: Duration = Duration::from_millis(200);
/// The longest one attempt may take (a hung admin must not eat the timeout).
const ATTEMPT: Duration = Duration::from_secs(1);

pub fn run(admin: &Authority, timeout: Duration) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let last = runtime.block_on(poll(admin, timeout));
    match last {
        None => Ok(ExitCode::SUCCESS),
        Some(last) => bail!(
            "the proxy at {admin} was not ready within {} (last seen: {last})",
            humantime::format_duration(timeout)
        ),
    }
}

/// `None` once `/ready` is 200, else what the last attempt saw.
async fn poll(admin: &Authority, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut last = "no attempt finished".to_owned();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Some(last);
        }
        last = match admin::get(admin, "/ready", left.min(ATTEMPT)).await {
            Ok(answer) if answer.status == StatusCode::OK => return None,
            Ok(answer) => answer.summary(),
            Err(why) => why,
        };
        tokio::time::sleep_until((Instant::now() + POLL).min(deadline)).await;
    }
}
