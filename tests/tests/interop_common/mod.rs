//! Shared by the interoperability tests (`double_proxy.rs`, `envoy_interop.rs`,
//! `tls_floor.rs`): running outside programs (psql, openssl, testssl, Envoy,
//! PostgreSQL) with a deadline, and stopping the long-running ones by PID.
//! Each test file includes this module; not every file uses every helper.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt;

/// What a program run to completion printed.
#[derive(Clone, Debug)]
pub struct Ran {
    /// Exit code; None when it ended by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The raw stdout bytes (protocol bytes relayed by `openssl s_client`).
    pub stdout_bytes: Vec<u8>,
    pub elapsed: Duration,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout and stderr, for assertion messages.
    pub fn both(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with `stdin` as its input (then closed); kills it (by PID) and
/// fails if it has not exited within `timeout`.
pub async fn run(
    mut cmd: tokio::process::Command,
    stdin: &[u8],
    timeout: Duration,
) -> anyhow::Result<Ran> {
    let shown = format!("{:?}", cmd.as_std());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawning {shown}"))?;
    let input = child.stdin.take();
    let data = stdin.to_vec();
    let feed = async move {
        if let Some(mut input) = input {
            // A program that exits before reading all its input is not an error here.
            let _ = input.write_all(&data).await;
        }
    };
    let (_, out) = tokio::time::timeout(timeout, async {
        tokio::join!(feed, child.wait_with_output())
    })
    .await
    .with_context(|| format!("{shown} did not exit within {timeout:?} (killed)"))?;
    let out = out.with_context(|| format!("waiting for {shown}"))?;
    Ok(Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout_bytes: out.stdout,
        elapsed: started.elapsed(),
    })
}

/// `tokio::process::Command::new(program).args(args)`.
pub fn command<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    cmd
}

/// Path of `name` on `PATH` (like `command -v`), if any.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Panics with an install hint when a tool the test drives is missing: a
/// missing tool is a broken test machine, never a silent skip.
pub fn require_tool(name: &str, install: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!("`{name}` is not installed; scripts/test installs it ({install})")
    })
}

/// A long-running outside program (PostgreSQL, Envoy) with its output in a
/// log file; stopped by PID when dropped: `stop_signal` first, SIGKILL after
/// a grace period.
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    stop_signal: &'static str,
}

impl Daemon {
    /// Spawns `cmd` with stdout and stderr going to `log`.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        log: &Path,
        stop_signal: &'static str,
    ) -> anyhow::Result<Daemon> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(Daemon {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            stop_signal,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Fails (with the log) if the process has already exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited early ({status}); its log:\n{}",
                self.name,
                self.log_text()
            );
        }
        Ok(())
    }

    /// Polls `ready` every 50 ms until it is true; fails if the process exits
    /// or `deadline` passes first.
    pub async fn wait_ready<F, Fut>(
        &mut self,
        deadline: Duration,
        mut ready: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let end = Instant::now() + deadline;
        loop {
            self.check_running()?;
            if ready().await {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!(
                    "{} was not ready within {deadline:?}; its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends the stop signal, waits up to `grace` for the exit, then SIGKILL.
    /// Returns whether it exited on the stop signal.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return true;
        }
        let _ = Command::new("kill")
            .args(["-s", self.stop_signal, &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
        if std::thread::panicking() {
            let log = std::fs::read(&self.log).unwrap_or_default();
            let tail = String::from_utf8_lossy(&log[log.len().saturating_sub(6000)..]);
            eprintln!(
                "--- {} pid {} log (tail) ---\n{tail}",
                self.name,
                self.pid()
            );
        }
    }
}

/// `openssl s_client` to 127.0.0.1:`port` with `extra` arguments, `stdin`
/// as the data to send, bounded to 15 s.
pub async fn s_client(port: u16, extra: &[&str], stdin: &[u8]) -> anyhow::Result<Ran> {
    let connect = format!("127.0.0.1:{port}");
    let mut cmd = command("openssl", &["s_client", "-connect", &connect]);
    cmd.args(extra);
    run(cmd, stdin, Duration::from_secs(15)).await
}
