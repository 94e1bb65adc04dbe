//! The child processes `mesh-cli up` starts: spawning each in its own process
//! group with its log and its line in `pids`, waiting until it is ready (TCP
//! listening or an HTTP 200), and stopping them all in reverse order by PID
//! (SIGTERM, then SIGKILL after [`STOP_DEADLINE`]). Nothing here knows what a
//! component is; `start` and `plan` decide what to run.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use http::StatusCode;
use http::uri::Authority;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::ui::Ui;

/// After SIGTERM, how long a child may take to exit before SIGKILL.
pub(super) const STOP_DEADLINE: Duration = Duration::from_secs(6);
const POLL: Duration = Duration::from_millis(100);

/// A started child process.
pub(super) struct Running {
    pub(super) name: String,
    pub(super) pid: u32,
    pub(super) child: Child,
    pub(super) log: PathBuf,
}

/// What to wait for before a component counts as started.
pub(super) enum Ready {
    /// TCP connects on every address.
    Listening(Vec<String>),
    /// `GET path` answers 200.
    Http(Authority, &'static str),
}

/// Starts a child in its own process group (so the terminal's Ctrl-C reaches
/// only `up`, which stops the children in order), logging to
/// `logs/NAME.log` (stdout to `stdout` instead, when given), and records its
/// PID in `pids`.
pub(super) async fn spawn(
    running: &mut Vec<Running>,
    state: &Path,
    name: &str,
    bin: &Path,
    args: &[String],
    stdout: Option<&Path>,
) -> Result<()> {
    let log = state.join("logs").join(format!("{name}.log"));
    let err = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let out = match stdout {
        Some(path) => {
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?
        }
        None => err.try_clone().context("cannot share the log file")?,
    };
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name} ({})", bin.display()))?;
    let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
    let mut pids = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("pids"))
        .context("cannot write the pids file")?;
    writeln!(pids, "{name} {pid}").context("cannot write the pids file")?;
    running.push(Running {
        name: name.to_owned(),
        pid,
        child,
        log,
    });
    Ok(())
}

/// Waits until the last started child is ready; fails if it exits first or
/// at the timeout, pointing at its log.
pub(super) async fn wait_ready(
    running: &mut [Running],
    ready: &Ready,
    timeout: Duration,
) -> Result<()> {
    let Some(r) = running.last_mut() else {
        bail!("nothing was started");
    };
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    loop {
        if let Ok(Some(status)) = r.child.try_wait() {
            bail!(
                "{} exited ({status}) before it was ready: {} (log: {})",
                r.name,
                last_line(&r.log),
                r.log.display()
            );
        }
        match ready {
            Ready::Listening(addrs) => {
                let mut all = true;
                for a in addrs {
                    if tokio::net::TcpStream::connect(a.as_str()).await.is_err() {
                        all = false;
                        last = format!("{a} not listening yet");
                    }
                }
                if all {
                    return Ok(());
                }
            }
            Ready::Http(addr, path) => {
                match crate::admin::get(addr, path, Duration::from_secs(1)).await {
                    Ok(a) if a.status == StatusCode::OK => return Ok(()),
                    Ok(a) => last = format!("GET {path}: {}", a.summary()),
                    Err(e) => last = format!("GET {path}: {e}"),
                }
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{} was not ready within {} (last seen: {last}; log: {})",
                r.name,
                humantime::format_duration(timeout),
                r.log.display()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Stops the children in reverse start order: SIGTERM, wait up to
/// STOP_DEADLINE, then SIGKILL; always reaps every one.
pub(super) async fn stop_all(running: &mut Vec<Running>, ui: &Ui) {
    while let Some(mut r) = running.pop() {
        if let Ok(Some(_)) = r.child.try_wait() {
            ui.line(&format!("  {} had already exited", r.name));
            continue;
        }
        let graceful = send_term(r.pid).await
            && tokio::time::timeout(STOP_DEADLINE, r.child.wait())
                .await
                .is_ok();
        if graceful {
            ui.line(&format!("  stopped {} (pid {})", r.name, r.pid));
        } else {
            let _ = r.child.kill().await;
            ui.line(&format!(
                "  killed {} (pid {}): it did not exit after SIGTERM",
                r.name, r.pid
            ));
        }
    }
}

/// `kill -TERM PID`, retried briefly if the helper itself fails. The helper
/// runs in its own process group, so a second Ctrl-C from the terminal cannot
/// hit it.
async fn send_term(pid: u32) -> bool {
    for _ in 0..3 {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stderr(Stdio::null())
            .process_group(0)
            .status()
            .is_ok_and(|s| s.success());
        if sent {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The last non-empty line of a log, for "exited before it was ready".
fn last_line(log: &Path) -> String {
    fs::read_to_string(log)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "no output".to_owned())
}
