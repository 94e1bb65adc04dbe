//! `mesh-cli up DIR`: runs a whole demo mesh as local processes (SPEC §4,
//! §5.1). It reads `DIR/mesh.yaml`, picks free 127.0.0.1 ports, creates a
//! CA in the state dir, starts `mesh-ca serve`, writes a join token per
//! proxy, starts a trace receiver (`mesh-cli traces`) unless
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, renders the proxy config templates
//! and checks them, then starts the components in order, waiting for each
//! to be ready, with a spinner per component. Ctrl-C or SIGTERM stops them
//! in reverse order by PID: SIGTERM (proxies drain), SIGKILL after a deadline.

mod manifest;
mod state_dir;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use http::StatusCode;
use http::uri::Authority;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mesh_ca::{Ca, SpiffeId, Token};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use manifest::{Component, Manifest};

pub const HELP: &str = "\
Example:
  cargo build --release --bins && target/release/mesh-cli up examples/demo/
  curl http://127.0.0.1:<edge port>/chain      # the exact URL is printed

DIR holds mesh.yaml (the components, in start order, and the ports to pick)
and the proxy config templates it names; examples/demo/README.md describes
the format and the ${placeholders}.

The state dir (--state-dir, or a new folder under the temp dir) gets the CA
(ca/), the join tokens (tokens/), the rendered configs (configs/), a log per
component (logs/NAME.log), the traces (traces.txt) and the PIDs of every
child (pids, one `NAME PID` per line). It is kept after exit.

The binaries (mesh-proxy, mesh-ca, mesh-demo...) are taken from the folder
of this mesh-cli. Ctrl-C stops everything and exits 0.";

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The folder with mesh.yaml and the proxy config templates.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where the CA, tokens, configs, logs, traces and PIDs go (created; must
    /// be empty) [default: a new folder under the temp dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Write the traces as JSON, one object per line (`mesh-cli traces
    /// --json`), to this file instead of printing waterfalls.
    #[arg(long, value_name = "FILE")]
    pub traces_json: Option<PathBuf>,
    /// How long each component may take to become ready.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    pub timeout: Duration,
}

/// After SIGTERM, how long a child may take to exit before SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(6);
/// The proxies' `--drain-time`: shorter than the stop deadline.
const DRAIN_TIME: &str = "3s";
const POLL: Duration = Duration::from_millis(100);

pub fn run(args: &UpArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(up(args))
}

/// A started child process.
struct Running {
    name: String,
    pid: u32,
    child: Child,
    log: PathBuf,
}

/// What to wait for before a component counts as started.
enum Ready {
    /// TCP connects on every address.
    Listening(Vec<String>),
    /// `GET path` answers 200.
    Http(Authority, &'static str),
}

async fn up(args: &UpArgs) -> Result<ExitCode> {
    let manifest = Manifest::load(&args.dir)?;
    let bins = Bins::locate()?;
    for c in &manifest.components {
        if let Some(s) = &c.service {
            bins.path(&s.bin)?;
        }
    }
    let state = state_dir::make_state_dir(args.state_dir.as_deref())?;
    let ui = Ui::new();
    // Installed before any child exists, so no signal is missed.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;

    let mut running: Vec<Running> = Vec::new();
    let started = tokio::select! {
        r = start_all(args, &manifest, &bins, &state, &ui, &mut running) => Some(r),
        _ = sigint.recv() => None,
        _ = sigterm.recv() => None,
    };
    let started = match started {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            ui.settle();
            ui.line("startup failed; stopping what was started");
            stop_all(&mut running, &ui).await;
            return Err(e);
        }
        None => {
            ui.settle();
            ui.line("interrupted; stopping what was started");
            stop_all(&mut running, &ui).await;
            return Ok(ExitCode::SUCCESS);
        }
    };

    ui.settle();
    print_banner(&manifest, &started, &state, &running);
    let mut tail = started.traces_text.as_deref().map(Tail::new);
    let mut exited = vec![false; running.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = tick.tick() => {
                if let Some(t) = tail.as_mut() {
                    t.print_new();
                }
                for (i, r) in running.iter_mut().enumerate() {
                    if !exited[i] && let Ok(Some(status)) = r.child.try_wait() {
                        exited[i] = true;
                        println!("! {} exited ({status}); see {}", r.name, r.log.display());
                    }
                }
            }
        }
    }
    println!();
    println!(
        "stopping (reverse order: SIGTERM, then SIGKILL after {}s)",
        STOP_DEADLINE.as_secs()
    );
    stop_all(&mut running, &ui).await;
    if let Some(t) = tail.as_mut() {
        t.print_new();
    }
    println!(
        "stopped; logs, traces and configs stay in {}",
        state.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What the banner needs once everything is up.
struct Started {
    values: BTreeMap<String, String>,
    /// The waterfall file, when `up` prints it.
    traces_text: Option<PathBuf>,
    /// Where traces go, in words.
    traces_where: String,
    /// (name, admin address) of each proxy.
    admins: Vec<(String, String)>,
}

async fn start_all(
    args: &UpArgs,
    manifest: &Manifest,
    bins: &Bins,
    state: &Path,
    ui: &Ui,
    running: &mut Vec<Running>,
) -> Result<Started> {
    let mut values = BTreeMap::new();
    for port in &manifest.ports {
        values.insert(port.clone(), free_port()?.to_string());
    }
    values.insert("state_dir".into(), state.display().to_string());
    for sub in ["ca", "tokens", "configs", "logs"] {
        fs::create_dir_all(state.join(sub))
            .with_context(|| format!("cannot create {}", state.join(sub).display()))?;
    }

    // The CA: created here, served by mesh-ca.
    let step = ui.step("ca", "creating the CA and starting mesh-ca serve");
    let ca_dir = state.join("ca");
    let ca = Ca::create(&manifest.trust_domain)
        .with_context(|| format!("cannot create a CA for {}", manifest.trust_domain))?;
    ca.save(&ca_dir, false).map_err(crate::certs::exists_hint)?;
    let ca_addr = format!("127.0.0.1:{}", free_port()?);
    values.insert("ca_url".into(), format!("https://{ca_addr}"));
    values.insert(
        "trust_bundle".into(),
        ca_dir.join(mesh_ca::CA_CERT_FILE).display().to_string(),
    );
    let ca_args = [
        "serve".to_owned(),
        "--ca-dir".to_owned(),
        ca_dir.display().to_string(),
        "--listen".to_owned(),
        ca_addr.clone(),
    ];
    spawn(running, state, "ca", &bins.path("mesh-ca")?, &ca_args, None).await?;
    wait_ready(
        running,
        &Ready::Listening(vec![ca_addr.clone()]),
        args.timeout,
    )
    .await
    .inspect_err(|e| step.fail(e))?;
    step.done(&format!(
        "https://{ca_addr} (trust domain {})",
        manifest.trust_domain
    ));

    // The trace receiver, unless traces go elsewhere.
    let mut traces_text = None;
    let traces_where;
    match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(endpoint) => {
            let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL") {
                Ok(p) if p.starts_with("http") => "http",
                _ => "grpc",
            };
            traces_where =
                format!("sent to {endpoint} (OTLP/{protocol}, from OTEL_EXPORTER_OTLP_ENDPOINT)");
            values.insert("otlp_endpoint".into(), endpoint);
            values.insert("otlp_protocol".into(), protocol.into());
        }
        None => {
            let step = ui.step("traces", "starting the trace receiver (mesh-cli traces)");
            let (http, grpc) = (
                format!("127.0.0.1:{}", free_port()?),
                format!("127.0.0.1:{}", free_port()?),
            );
            let mut targs = vec![
                "traces".to_owned(),
                "--listen".to_owned(),
                http.clone(),
                "--grpc-listen".to_owned(),
                grpc.clone(),
                "--idle".to_owned(),
                "1s".to_owned(),
            ];
            let out = match &args.traces_json {
                Some(file) => {
                    targs.push("--json".to_owned());
                    traces_where = format!("written as JSON lines to {}", file.display());
                    file.clone()
                }
                None => {
                    let file = state.join("traces.txt");
                    traces_where = format!(
                        "printed below as waterfalls, and kept in {}",
                        file.display()
                    );
                    traces_text = Some(file.clone());
                    file
                }
            };
            let exe = std::env::current_exe().context("cannot locate mesh-cli itself")?;
            spawn(running, state, "traces", &exe, &targs, Some(&out)).await?;
            wait_ready(
                running,
                &Ready::Listening(vec![http.clone(), grpc]),
                args.timeout,
            )
            .await
            .inspect_err(|e| step.fail(e))?;
            step.done(&format!("OTLP on http://{http}"));
            values.insert("otlp_endpoint".into(), format!("http://{http}"));
            values.insert("otlp_protocol".into(), "http".into());
        }
    }

    // Tokens and configs for every proxy, all checked before any starts.
    let mut plans = Vec::new();
    for c in &manifest.components {
        plans.push(plan(c, manifest, &args.dir, state, &ca, &values, bins)?);
    }

    let mut admins = Vec::new();
    for (c, (bin, cargs, ready)) in manifest.components.iter().zip(plans) {
        let what = if c.proxy.is_some() {
            "proxy"
        } else {
            "service"
        };
        let step = ui.step(&c.name, &format!("starting the {what}"));
        spawn(running, state, &c.name, &bin, &cargs, None)
            .await
            .inspect_err(|e| step.fail(e))?;
        wait_ready(running, &ready, args.timeout)
            .await
            .inspect_err(|e| step.fail(e))?;
        match &ready {
            Ready::Http(a, "/ready") => {
                admins.push((c.name.clone(), a.to_string()));
                step.done(&format!("ready, admin http://{a}/"));
            }
            Ready::Http(a, _) => step.done(&format!("healthy on {a}")),
            Ready::Listening(_) => step.done("listening"),
        }
    }
    Ok(Started {
        values,
        traces_text,
        traces_where,
        admins,
    })
}

/// The binary, arguments and readiness check of one component; for a proxy,
/// also writes its token and its rendered, validated config.
fn plan(
    c: &Component,
    manifest: &Manifest,
    dir: &Path,
    state: &Path,
    ca: &Ca,
    values: &BTreeMap<String, String>,
    bins: &Bins,
) -> Result<(PathBuf, Vec<String>, Ready)> {
    let here = |what: &str| format!("{}: component {}: {what}", manifest::MANIFEST_FILE, c.name);
    if let Some(s) = &c.service {
        let args = s
            .args
            .iter()
            .map(|a| manifest::render(a, values))
            .collect::<Result<Vec<_>>>()
            .with_context(|| here("args"))?;
        let health = manifest::render(&s.health, values).with_context(|| here("health"))?;
        let health: Authority = health
            .parse()
            .map_err(|_| anyhow!("{}: {health:?} is not HOST:PORT", here("health")))?;
        return Ok((bins.path(&s.bin)?, args, Ready::Http(health, "/health")));
    }
    let Some(p) = &c.proxy else {
        bail!("{}", here("neither proxy: nor service:"));
    };
    let id = SpiffeId::from_service(&manifest.trust_domain, &p.identity)
        .with_context(|| here("identity"))?;
    let token = Token::create(ca, &id, Duration::from_secs(3600))
        .with_context(|| format!("cannot create a join token for {id}"))?;
    let token_file = state.join("tokens").join(format!("{}.token", c.name));
    write_secret(&token_file, token.as_bytes())?;
    let mut values = values.clone();
    values.insert("token_file".into(), token_file.display().to_string());
    let template = dir.join(&p.config);
    let text = fs::read_to_string(&template)
        .with_context(|| format!("cannot read {}", template.display()))?;
    let rendered =
        manifest::render(&text, &values).with_context(|| format!("{}", template.display()))?;
    let config = state.join("configs").join(format!("{}.yaml", c.name));
    fs::write(&config, rendered).with_context(|| format!("cannot write {}", config.display()))?;
    if let Err(errors) = mesh_proxy::config::load_file(&config) {
        bail!(
            "the config rendered from {} does not validate: {}",
            template.display(),
            errors.to_string().lines().collect::<Vec<_>>().join("; ")
        );
    }
    let admin = manifest::render(&p.admin, &values).with_context(|| here("admin"))?;
    let admin = crate::admin::parse_admin(&admin).map_err(|e| anyhow!("{}: {e}", here("admin")))?;
    let args = vec![
        "-c".to_owned(),
        config.display().to_string(),
        "--drain-time".to_owned(),
        DRAIN_TIME.to_owned(),
    ];
    Ok((bins.path("mesh-proxy")?, args, Ready::Http(admin, "/ready")))
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Starts a child in its own process group (so the terminal's Ctrl-C reaches
/// only `up`, which stops the children in order), logging to
/// `logs/NAME.log` (stdout to `stdout` instead, when given), and records its
/// PID in `pids`.
async fn spawn(
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
async fn wait_ready(running: &mut [Running], ready: &Ready, timeout: Duration) -> Result<()> {
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
async fn stop_all(running: &mut Vec<Running>, ui: &Ui) {
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

fn print_banner(manifest: &Manifest, s: &Started, state: &Path, running: &[Running]) {
    let mut out = String::from("\nThe mesh is up. Try:\n");
    for url in &manifest.try_urls {
        match manifest::render(url, &s.values) {
            Ok(u) => out.push_str(&format!("  curl '{u}'\n")),
            Err(e) => out.push_str(&format!("  ({url}: {e})\n")),
        }
    }
    out.push_str("\nDashboards (admin API of each proxy):\n");
    let width = s.admins.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, admin) in &s.admins {
        out.push_str(&format!("  {name:width$}  http://{admin}/\n"));
    }
    let admins: Vec<String> = s
        .admins
        .iter()
        .map(|(_, a)| format!("--admin {a}"))
        .collect();
    out.push_str(&format!(
        "  golden metrics: mesh-cli stat {} --watch\n",
        admins.join(" ")
    ));
    out.push_str(&format!("\nTraces: {}\n", s.traces_where));
    out.push_str(&format!(
        "Logs: {}/NAME.log ({}); PIDs in {}\n",
        state.join("logs").display(),
        running
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        state.join("pids").display()
    ));
    out.push_str("Ctrl-C stops everything.\n");
    print!("{out}");
    let _ = std::io::stdout().flush();
}

/// The binaries next to the running `mesh-cli`.
struct Bins(PathBuf);

impl Bins {
    fn locate() -> Result<Bins> {
        let exe = std::env::current_exe().context("cannot locate mesh-cli itself")?;
        let dir = exe
            .parent()
            .ok_or_else(|| anyhow!("cannot locate the folder of {}", exe.display()))?;
        let bins = Bins(dir.to_path_buf());
        for name in ["mesh-proxy", "mesh-ca"] {
            bins.path(name)?;
        }
        Ok(bins)
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        let path = self.0.join(name);
        if !path.is_file() {
            bail!(
                "{name} not found next to mesh-cli (in {}); run cargo build --bins",
                self.0.display()
            );
        }
        Ok(path)
    }
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .context("cannot find a free port on 127.0.0.1")
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

/// Prints what was appended to the waterfall file since the last call.
struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_path_buf(),
            offset: 0,
        }
    }

    fn print_new(&mut self) {
        let Ok(mut f) = File::open(&self.path) else {
            return;
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_ok() && f.read_to_end(&mut buf).is_ok() {
            // Only whole lines; the rest waits for the next call.
            let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if whole > 0 {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&buf[..whole]);
                let _ = out.flush();
                self.offset += whole as u64;
            }
        }
    }
}

/// Spinners on a terminal, plain lines otherwise.
struct Ui {
    multi: Option<MultiProgress>,
    /// Startup is over: plain lines from now on (the finished spinners stay
    /// on screen and are not redrawn).
    settled: Cell<bool>,
}

struct Step {
    bar: Option<ProgressBar>,
    name: String,
}

impl Ui {
    fn new() -> Ui {
        let multi = std::io::stdout()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Ui {
            multi,
            settled: Cell::new(false),
        }
    }

    fn step(&self, name: &str, what: &str) -> Step {
        let Some(multi) = &self.multi else {
            println!("{name:<12} {what}...");
            return Step {
                bar: None,
                name: name.to_owned(),
            };
        };
        let bar = multi.add(ProgressBar::new_spinner());
        let style =
            ProgressStyle::with_template("{spinner:.cyan} {prefix:<12.bold} {msg} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_prefix(name.to_owned());
        bar.set_message(format!("{what}..."));
        bar.enable_steady_tick(Duration::from_millis(100));
        Step {
            bar: Some(bar),
            name: name.to_owned(),
        }
    }

    fn settle(&self) {
        self.settled.set(true);
    }

    fn line(&self, text: &str) {
        match &self.multi {
            Some(m) if !self.settled.get() => {
                let _ = m.println(text);
            }
            _ => println!("{text}"),
        }
    }
}

impl Step {
    fn finish(&self, mark: &str, text: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix:<12.bold} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{mark} {}", self.name));
                bar.finish_with_message(text.to_owned());
            }
            None => println!("{:<12} {mark} {text}", self.name),
        }
    }

    fn done(&self, text: &str) {
        self.finish("✓", text);
    }

    fn fail(&self, err: &anyhow::Error) {
        self.finish("✗", &crate::render(err));
    }
}
