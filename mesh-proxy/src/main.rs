//! `mesh-proxy`: the command line. Flags follow Envoy's habits (`-c`,
//! `--mode validate`, `-l`, `--concurrency`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use mesh_proxy::{admin, app, config, telemetry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Serve,
    Validate,
}

/// The mesh data plane: sidecar and edge proxy for HTTP/1.1, HTTP/2 and TCP.
#[derive(Debug, Parser)]
#[command(
    name = "mesh-proxy",
    version,
    after_help = "Examples:\n  mesh-proxy -c examples/quickstart.yaml\n  mesh-proxy -c sidecar.yaml --mode validate\n  mesh-proxy -c edge.yaml -l debug --component-log-level upstream=trace --concurrency 2"
)]
struct Cli {
    /// The YAML config file.
    #[arg(short = 'c', long = "config", value_name = "CONFIG.yaml")]
    config: PathBuf,
    /// `validate` checks the config, prints OK or every problem, and binds nothing.
    #[arg(long, value_enum, default_value = "serve")]
    mode: Mode,
    /// Log level: trace, debug, info, warn, error, off.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_level: String,
    /// Per-component levels, e.g. `upstream=debug,router=trace`.
    #[arg(long, value_name = "NAME=LEVEL,...")]
    component_log_level: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    log_format: telemetry::LogFormat,
    /// Write logs to this file instead of stderr.
    #[arg(long, value_name = "FILE")]
    log_path: Option<PathBuf>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    drain_time: Duration,
    /// Worker threads (default: the number of cores).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match config::load_file(&cli.config) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    // The identity files are checked in both modes, before any socket.
    let identity = match app::load_identity(&cfg) {
        Ok(identity) => identity,
        Err(e) => {
            eprintln!("{}: {:#}", cli.config.display(), anyhow::Error::from(e));
            return ExitCode::FAILURE;
        }
    };
    if cli.mode == Mode::Validate {
        println!("OK");
        return ExitCode::SUCCESS;
    }
    match run(cli, cfg, identity) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    cli: Cli,
    cfg: config::Config,
    identity: Option<std::sync::Arc<mesh_proxy::identity::IdentityStore>>,
) -> anyhow::Result<()> {
    let filter = telemetry::filter(&cli.log_level, cli.component_log_level.as_deref())
        .map_err(anyhow::Error::msg)?;
    let logs = telemetry::init_logging(filter, cli.log_format, cli.log_path.as_deref())?;
    let threads = match cli.concurrency {
        Some(0) => anyhow::bail!("--concurrency must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // One worker: a current-thread runtime, with no work-stealing queues or
    // cross-thread wake-ups on the request path (bench/run measures both).
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = builder.thread_name("mesh-worker").enable_all().build()?;
    let config_path = cli.config.clone();
    runtime.block_on(async move {
        // Bind inside the runtime (tokio sockets need its reactor), but
        // before any listener serves: one failure binds nothing else.
        let bound = app::bind_all(&cfg)?;
        let admin = admin::AdminListener::bind(cfg.admin.address, Some(logs)).map_err(|e| {
            anyhow::anyhow!("admin.address: cannot bind {}: {e}", cfg.admin.address)
        })?;
        app::serve(
            cfg,
            bound,
            identity,
            app::ServeOptions {
                drain_time: cli.drain_time,
                admin: Some(admin),
                config_path: Some(config_path),
            },
        )
        .await?;
        Ok(())
    })
}
