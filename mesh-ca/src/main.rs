//! `mesh-ca serve`: the bundled CA server (SPEC §2).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mesh_ca::Ca;
use mesh_ca::server::{CaServer, ServerError, ServerOptions};

#[derive(Debug, Parser)]
#[command(
    name = "mesh-ca",
    version,
    about = "The mesh's certificate authority server"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve /v1/bundle, /v1/sign and /healthz over HTTPS.
    #[command(
        after_help = "Example:\n  mesh-cli ca init --trust-domain mesh.local --out ca/\n  mesh-ca serve --ca-dir ca/ --listen 0.0.0.0:8443 --dns ca --dns mesh-ca"
    )]
    Serve {
        /// What `mesh-cli ca init` wrote (ca.crt, ca.key).
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// Default lifetime of signed certificates.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
        ttl: Duration,
        /// The longest lifetime a caller may ask for.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "7d")]
        max_ttl: Duration,
        /// DNS names clients use to reach this server (added to localhost,
        /// mesh-ca, ca and this host's name).
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        /// IP addresses clients use (added to 127.0.0.1 and ::1).
        #[arg(long = "ip", value_name = "ADDR")]
        ips: Vec<IpAddr>,
        /// Connections served at once; more are closed at once (counted and
        /// logged).
        #[arg(long, default_value_t = mesh_ca::server::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// A request body must arrive within this, else 408 and close.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        body_timeout: Duration,
        /// Where the ids of used join tokens are kept (the file used-tokens),
        /// so a token stays spent across restarts; default: the --ca-dir.
        /// Give a writable, persistent directory when the CA directory is
        /// mounted read-only (a Kubernetes Secret, a `:ro` volume).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Cmd::Serve {
        ca_dir,
        listen,
        ttl,
        max_ttl,
        dns,
        ips,
        max_connections,
        body_timeout,
        state_dir,
    } = cli.cmd;
    mesh_ca::server::check_key_is_private(&ca_dir)?;
    let ca = Ca::load(&ca_dir)
        .with_context(|| format!("no CA in {} (run mesh-cli ca init first)", ca_dir.display()))?;
    let mut dns_names: Vec<String> = ["localhost", "mesh-ca", "ca"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && !dns_names.iter().any(|d| d == host) {
            dns_names.push(host.to_owned());
        }
    }
    dns_names.extend(dns);
    let mut all_ips: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    if !listen.ip().is_unspecified() && !all_ips.contains(&listen.ip()) {
        all_ips.push(listen.ip());
    }
    all_ips.extend(ips);
    let opts = ServerOptions {
        ttl,
        max_ttl,
        max_connections: max_connections.max(1),
        body_timeout,
        state_dir: Some(state_dir.unwrap_or(ca_dir)),
        ..ServerOptions::new(dns_names, all_ips)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = CaServer::bind(ca, listen, opts).await.map_err(|e| match e {
            ServerError::UsedTokens(e) => anyhow::anyhow!(
                "{e}: join tokens are single use, so the CA must record them; give a writable directory with --state-dir"
            ),
            e => e.into(),
        })?;
        tracing::info!(address = %server.local_addr()?, "mesh-ca serving");
        tokio::select! {
            _ = server.run() => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
            _ = terminate() => tracing::info!("stopping"),
        }
        anyhow::Ok(())
    })
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
