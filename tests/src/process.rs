//! Running the real `mesh-proxy` binary: a fresh temp folder per process with
//! the config and its log files, a bounded wait until its listeners accept,
//! and cleanup by PID when the handle drops (never by process name, so
//! parallel tests and other sessions are left alone). Every wait here has a
//! deadline, so a hung proxy fails a test instead of hanging the run.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tempfile::TempDir;

const POLL: Duration = Duration::from_millis(20);
const DEFAULT_STARTUP: Duration = Duration::from_secs(10);

/// A port that was free a moment ago on 127.0.0.1 (bind to :0, read, drop).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// A loopback port that refuses connections, held for as long as this
/// lives: bound but never listening, so no other test's listener can take
/// it (a [`free_port`] used as a "dead" endpoint can be taken meanwhile).
pub struct RefusingPort {
    _socket: socket2::Socket,
    pub port: u16,
}

pub fn refusing_port() -> RefusingPort {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("a TCP socket");
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("binding 127.0.0.1:0");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("a bound port");
    RefusingPort {
        _socket: socket,
        port,
    }
}

/// Path of a workspace binary: `$MESH_BIN_DIR/NAME` if set, else next to the
/// running test's `deps/` folder (`target/debug/NAME`).
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("MESH_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().context("locating the test executable")?;
            exe.parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .with_context(|| format!("no target dir above {}", exe.display()))?
        }
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "binary {name} not found at {}: run `cargo build --bins` first (or set MESH_BIN_DIR)",
            path.display()
        );
    }
    Ok(path)
}

/// Output of a process run to completion (see [`ProxyBuilder::run_to_exit`]).
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// Exit code; None when killed by a signal (including our timeout kill).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// It did not exit within the timeout and was killed.
    pub timed_out: bool,
}

/// Configures one `mesh-proxy` run. Files are written before the process starts.
#[derive(Clone, Debug)]
pub struct ProxyBuilder {
    yaml: String,
    args: Vec<String>,
    ports: Vec<u16>,
    files: Vec<(PathBuf, Vec<u8>)>,
    bin: Option<PathBuf>,
    startup_timeout: Duration,
}

impl ProxyBuilder {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// TCP ports on 127.0.0.1 that must accept a connection before `start` returns.
    pub fn wait_ports(mut self, ports: &[u16]) -> Self {
        self.ports.extend_from_slice(ports);
        self
    }

    /// A file to create in the process folder (relative path), e.g. certificates
    /// the config refers to.
    pub fn file(mut self, relative: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((relative.into(), contents.into()));
        self
    }

    /// Run this executable instead of the workspace's `mesh-proxy`.
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }

    /// Deadline for the ports to accept (default 10 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Spawns `BIN -c DIR/proxy.yaml ARGS...` and waits for the ports.
    pub async fn start(self) -> anyhow::Result<ProxyProcess> {
        let (ports, timeout) = (self.ports.clone(), self.startup_timeout);
        let mut proc = self.spawn()?;
        proc.wait_ready(&ports, timeout).await?;
        Ok(proc)
    }

    /// Spawns the process and waits for it to exit by itself (killing it after
    /// `timeout`); for validate mode and config-error checks.
    pub async fn run_to_exit(self, timeout: Duration) -> anyhow::Result<RunOutput> {
        let started = Instant::now();
        let mut proc = self.spawn()?;
        let status = proc.wait_exit(timeout).await;
        let elapsed = started.elapsed();
        if status.is_none() {
            proc.kill();
        }
        Ok(RunOutput {
            code: status.and_then(|s| s.code()),
            stdout: proc.stdout_text(),
            stderr: proc.stderr_text(),
            elapsed,
            timed_out: status.is_none(),
        })
    }

    fn spawn(self) -> anyhow::Result<ProxyProcess> {
        let dir = tempfile::Builder::new()
            .prefix("mesh-proxy-")
            .tempdir()
            .context("creating the proxy temp folder")?;
        for (relative, contents) in &self.files {
            let path = dir.path().join(relative);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        }
        let config = dir.path().join("proxy.yaml");
        fs::write(&config, &self.yaml).context("writing proxy.yaml")?;
        let bin = match self.bin {
            Some(bin) => bin,
            None => bin_path("mesh-proxy")?,
        };
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&config)
            .args(&self.args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("stdout.log"))?)
            .stderr(File::create(dir.path().join("stderr.log"))?);
        let child =
            spawn_retrying(&mut cmd).with_context(|| format!("spawning {}", bin.display()))?;
        Ok(ProxyProcess { child, dir, config })
    }
}

/// `exec` can fail with ETXTBSY when another test thread forks while a
/// freshly written executable is still open for writing; it is transient.
fn spawn_retrying(cmd: &mut Command) -> io::Result<Child> {
    let mut attempts = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// A running proxy (or any binary run like one); killed by PID on drop.
pub struct ProxyProcess {
    child: Child,
    dir: TempDir,
    config: PathBuf,
}

impl ProxyProcess {
    pub fn builder(config_yaml: &str) -> ProxyBuilder {
        ProxyBuilder {
            yaml: config_yaml.to_owned(),
            args: Vec::new(),
            ports: Vec::new(),
            files: Vec::new(),
            bin: None,
            startup_timeout: DEFAULT_STARTUP,
        }
    }

    /// Spawns the proxy without waiting for any port.
    pub async fn start(config_yaml: &str, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::builder(config_yaml).args(extra_args).start().await
    }

    /// Spawns the proxy and waits (10 s) until every port in `ports` accepts.
    pub async fn start_and_wait(
        config_yaml: &str,
        extra_args: &[&str],
        ports: &[u16],
    ) -> anyhow::Result<Self> {
        Self::builder(config_yaml)
            .args(extra_args)
            .wait_ports(ports)
            .start()
            .await
    }

    async fn wait_ready(&mut self, ports: &[u16], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pending = ports.to_vec();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "process exited ({status}) before listening on {pending:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            let mut still = Vec::new();
            for port in pending {
                if !port_accepts(port).await {
                    still.push(port);
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "process did not listen on {pending:?} within {timeout:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Folder holding `proxy.yaml`, `stdout.log` and `stderr.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replaces `proxy.yaml` atomically (write + rename), for reload checks.
    pub fn write_config(&self, yaml: &str) -> anyhow::Result<()> {
        let tmp = self.dir.path().join(".proxy.yaml.new");
        fs::write(&tmp, yaml)?;
        fs::rename(&tmp, &self.config)?;
        Ok(())
    }

    /// Resident set size in KiB (VmRSS from /proc/PID/status).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    pub fn stdout_text(&self) -> String {
        read_lossy(&self.dir.path().join("stdout.log"))
    }

    pub fn stderr_text(&self) -> String {
        read_lossy(&self.dir.path().join("stderr.log"))
    }

    /// Sends a signal by name (`TERM`, `HUP`, `INT`, ...) with `kill -s`.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -s {name} {} failed: {status}", self.pid());
        }
        Ok(())
    }

    /// `signal("TERM")`.
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.signal("TERM")
    }

    /// Still running (not exited, not yet reaped)?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; None if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                _ => return None,
            }
        }
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // The temp folder goes away with us; keep the evidence in the test output.
            let stderr = fs::read(self.dir.path().join("stderr.log")).unwrap_or_default();
            let tail = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(8192)..]);
            eprintln!(
                "--- mesh-proxy pid {} stderr (tail) ---\n{tail}",
                self.pid()
            );
        }
    }
}

/// Runs `mesh-proxy --mode validate -c FILE` (10 s limit): (exit code or -1, stdout, stderr).
pub async fn run_validate(config_yaml: &str) -> anyhow::Result<(i32, String, String)> {
    let out = ProxyProcess::builder(config_yaml)
        .args(&["--mode", "validate"])
        .run_to_exit(Duration::from_secs(10))
        .await?;
    if out.timed_out {
        bail!(
            "validate mode did not exit within 10 s; stderr:\n{}",
            out.stderr
        );
    }
    Ok((out.code.unwrap_or(-1), out.stdout, out.stderr))
}

async fn port_accepts(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    matches!(
        tokio::time::timeout(Duration::from_millis(200), connect).await,
        Ok(Ok(_))
    )
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
