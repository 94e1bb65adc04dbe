//! `mesh-cli up DIR`: runs a whole demo mesh as local processes (SPEC §4,
//! §5.1). It reads `DIR/mesh.yaml`, picks free 127.0.0.1 ports, creates a
//! CA in the state dir, starts `mesh-ca serve`, writes a join token per
//! proxy, starts a trace receiver (`mesh-cli traces`) unless
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, renders the proxy config templates
//! and checks them, then starts the components in order, waiting for each
//! to be ready, with a spinner per component. Ctrl-C or SIGTERM stops them
//! in reverse order by PID: SIGTERM (proxies drain), SIGKILL after a deadline.
//!
//! Files: `manifest` (mesh.yaml and the placeholders), `state_dir`, `plan`
//! (what each component runs), `start` (the start-up sequence), `children`
//! (spawn, readiness, stop by PID) and `ui` (spinners, banner, waterfalls).

mod children;
mod manifest;
mod plan;
mod start;
mod state_dir;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use children::{Running, STOP_DEADLINE, stop_all};
use manifest::Manifest;
use plan::Bins;
use start::start_all;
use ui::{Tail, Ui, print_banner};

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

pub fn run(args: &UpArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(up(args))
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
