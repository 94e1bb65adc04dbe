//! `mesh-cli stat --admin ADDR [--admin ADDR ...] [--watch] [--interval 2s]`:
//! the golden metrics of each proxy, per cluster and per listener, from two
//! scrapes of its `GET /stats?format=json` one interval apart (requests/s
//! and success rate need a window; so do the latency quantiles, computed
//! from the difference of the cumulative histogram buckets). `--watch`
//! redraws the tables every interval until Ctrl-C.

mod snapshot;
mod table;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http::StatusCode;
use http::uri::Authority;

use crate::admin;
use snapshot::Snapshot;
use table::Scrapes;

pub const EXAMPLES: &str = "\
Examples:
  mesh-cli stat --admin 127.0.0.1:9901
  mesh-cli stat --admin 127.0.0.1:15000 --admin 127.0.0.1:15100 --watch --interval 1s

Columns, per cluster: RPS (upstream requests/s over the interval), SUCCESS
(non-5xx / answered), P50/P95/P99 (upstream latency over the interval), ACTIVE RQ
and ACTIVE CX (now), ENDPOINTS (healthy/total), EJECTED (by outlier
detection, now). Per HTTP listener: RPS, SUCCESS, ACTIVE CX. `-` means no
requests in the interval, or a stat the proxy does not report. A proxy that
does not answer is shown as a row saying why; without --watch the exit status
is 1 when no proxy answered.";

/// One scrape of one proxy.
type Scrape = Result<(Snapshot, std::time::Instant), String>;

pub fn run(admins: &[Authority], watch: bool, interval: Duration) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let fetch_timeout = interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
    runtime.block_on(async {
        if watch {
            watch_loop(admins, interval, fetch_timeout).await
        } else {
            once(admins, interval, fetch_timeout).await
        }
    })
}

async fn once(admins: &[Authority], interval: Duration, timeout: Duration) -> Result<ExitCode> {
    let first = scrape_all(admins, timeout).await;
    // From the last answer: every proxy's window is at least `interval`.
    tokio::time::sleep(interval).await;
    let second = scrape_all(admins, timeout).await;
    print!("{}", frame(admins, Some(&first), &second));
    std::io::stdout().flush().ok();
    if second.iter().all(Result::is_err) {
        bail!("no proxy answered");
    }
    Ok(ExitCode::SUCCESS)
}

async fn watch_loop(
    admins: &[Authority],
    interval: Duration,
    timeout: Duration,
) -> Result<ExitCode> {
    let terminal = std::io::stdout().is_terminal();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<Vec<Scrape>> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
        let latest = tokio::select! {
            latest = scrape_all(admins, timeout) => latest,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let mut out = String::new();
        if terminal {
            // Home the cursor and clear the screen: the tables redraw in place.
            out.push_str("\x1b[H\x1b[2J");
        }
        out.push_str(&format!(
            "{} · every {} · Ctrl-C to quit\n\n",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            humantime::format_duration(interval)
        ));
        out.push_str(&frame(admins, previous.as_deref(), &latest));
        if !terminal {
            out.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // stdout closed (e.g. piped into head): nothing left to do.
            return Ok(ExitCode::SUCCESS);
        }
        previous = Some(latest);
    }
}

/// The tables for the scrapes of every proxy.
fn frame(admins: &[Authority], before: Option<&[Scrape]>, after: &[Scrape]) -> String {
    let names: Vec<String> = admins.iter().map(Authority::to_string).collect();
    let proxies: Vec<Scrapes<'_>> = names
        .iter()
        .zip(after)
        .enumerate()
        .map(|(i, (admin, latest))| Scrapes {
            admin,
            before: before
                .and_then(|b| b.get(i))
                .and_then(|s| s.as_ref().ok())
                .map(|(s, t)| (s, *t)),
            after: latest
                .as_ref()
                .map(|(s, t)| (s, *t))
                .map_err(String::as_str),
        })
        .collect();
    table::render(&proxies)
}

/// Scrapes every proxy at once; results in `admins` order.
async fn scrape_all(admins: &[Authority], timeout: Duration) -> Vec<Scrape> {
    let tasks: Vec<_> = admins
        .iter()
        .cloned()
        .map(|admin| tokio::spawn(async move { scrape(&admin, timeout).await }))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap_or_else(|e| Err(format!("failed: {e}"))));
    }
    out
}

async fn scrape(admin: &Authority, timeout: Duration) -> Scrape {
    let answer = admin::get(admin, "/stats?format=json", timeout).await?;
    let at = std::time::Instant::now();
    if answer.status != StatusCode::OK {
        return Err(format!("answered {}", answer.summary()));
    }
    let snapshot = Snapshot::parse(&answer.body)?;
    Ok((snapshot, at))
}
