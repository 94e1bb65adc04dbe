//! Wiring: builds clusters and listeners from a validated config, binds
//! every socket before serving any, and runs until a signal drains it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::config::{Config, ListenerKind};
use crate::listener::{self, BoundListener, Drain, Protocol};
use crate::router::{HttpContext, HttpStats, RouteTable};

pub struct ServeOptions {
    pub drain_time: Duration,
}

/// Binds every listener; fails (binding nothing else) if any cannot be bound.
pub fn bind_all(config: &Config) -> anyhow::Result<Vec<BoundListener>> {
    config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            BoundListener::bind(spec).with_context(|| {
                format!(
                    "listeners[{i}] ({}): cannot bind {}",
                    spec.name, spec.address
                )
            })
        })
        .collect()
}

/// Config features this build parses and validates but does not enforce
/// yet. Security features refuse to start (serving plaintext where TLS was
/// asked for would be worse than not serving); the others are warned about.
pub fn check_supported(config: &Config) -> anyhow::Result<()> {
    let tls_listener = config.listeners.iter().find(|l| l.tls.is_some());
    let tls_cluster = config.clusters.iter().find(|c| c.tls.is_some());
    if config.identity.is_some() || tls_listener.is_some() || tls_cluster.is_some() {
        anyhow::bail!(
            "identity and tls are not supported by this build yet; remove them or use a build with mTLS support"
        );
    }
    let mut later = Vec::new();
    if config
        .tracing
        .as_ref()
        .is_some_and(|t| t.otlp_endpoint.is_some())
    {
        later.push("tracing");
    }
    if !config.access_log.is_empty() {
        later.push("access_log");
    }
    later.sort_unstable();
    later.dedup();
    if !later.is_empty() {
        tracing::warn!(features = %later.join(", "), "configured but not enforced by this build yet");
    }
    Ok(())
}

/// Starts serving `config` on already-bound sockets. Returns the trigger
/// that starts the drain and the tracker of every task to wait for.
pub fn start(
    config: &Config,
    bound: Vec<BoundListener>,
) -> anyhow::Result<(listener::DrainTrigger, TaskTracker)> {
    let clusters: HashMap<&str, Arc<Cluster>> = config
        .clusters
        .iter()
        .map(|c| {
            let cluster = Cluster::spawn(c.clone());
            crate::health::spawn_health_checks(&cluster);
            (c.name.as_str(), cluster)
        })
        .collect();
    let (trigger, drain) = Drain::new();
    let tracker = TaskTracker::new();
    for (spec, bound) in config.listeners.iter().zip(bound) {
        let protocol = match &spec.kind {
            ListenerKind::Http { routes } => {
                let table =
                    RouteTable::build(&spec.name, routes, |name| clusters.get(name).cloned())
                        .map_err(|e| anyhow!("listener {}: {e}", spec.name))?;
                Protocol::Http(listener::http_server(Arc::new(HttpContext {
                    listener: Arc::from(spec.name.as_str()),
                    routes: ArcSwap::from_pointee(table),
                    limits: spec.limits,
                    trust_forwarded: spec.trust_forwarded,
                    stats: HttpStats::default(),
                })))
            }
            ListenerKind::Tcp { cluster } => Protocol::Tcp {
                cluster: clusters.get(cluster.as_str()).cloned().ok_or_else(|| {
                    anyhow!("listener {}: unknown cluster \"{cluster}\"", spec.name)
                })?,
                limits: spec.limits,
            },
        };
        tracing::info!(listener = %spec.name, address = %bound.local_addr, "listening");
        listener::spawn_accept_loop(
            bound,
            protocol,
            spec.limits.max_connections,
            drain.clone(),
            tracker.clone(),
        );
    }
    Ok((trigger, tracker))
}

/// Serves until SIGTERM or SIGINT, then drains: listeners stop accepting,
/// HTTP/1.1 responses carry `Connection: close`, HTTP/2 connections get
/// GOAWAY, in-flight requests and TCP tunnels finish, for at most `drain_time`.
pub async fn serve(
    config: Config,
    bound: Vec<BoundListener>,
    opts: ServeOptions,
) -> anyhow::Result<()> {
    let (trigger, tracker) = start(&config, bound)?;
    tracing::info!(node = %config.node.name, "mesh-proxy started");
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => tracing::warn!("SIGHUP received: live reload is not available in this build; restart to apply a new config"),
        }
    }
    tracing::info!(drain_time = ?opts.drain_time, "draining");
    trigger.start();
    tracker.close();
    if tokio::time::timeout(opts.drain_time, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain time elapsed with connections still open; exiting");
    } else {
        tracing::info!("drained");
    }
    Ok(())
}
