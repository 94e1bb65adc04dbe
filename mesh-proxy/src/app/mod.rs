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
            BoundListener::bind(spec).with_context(|| format!("listeners[{i}] ({}): cannot bind {}", spec.name, spec.address))
        })
        .collect()
}

/// Starts serving `config` on already-bound sockets. Returns the trigger
/// that starts the drain and the tracker of every task to wait for.
pub fn start(config: &Config, bound: Vec<BoundListener>) -> anyhow::Result<(listener::DrainTrigger, TaskTracker)> {
    let clusters: HashMap<&str, Arc<Cluster>> = config.clusters.iter().map(|c| (c.name.as_str(), Cluster::spawn(c.clone()))).collect();
    let (trigger, drain) = Drain::new();
    let tracker = TaskTracker::new();
    for (spec, bound) in config.listeners.iter().zip(bound) {
        let protocol = match &spec.kind {
            ListenerKind::Http { routes } => {
                let table = RouteTable::build(&spec.name, routes, |name| clusters.get(name).cloned()).map_err(|e| anyhow!("listener {}: {e}", spec.name))?;
                Protocol::Http(listener::http_server(Arc::new(HttpContext {
                    listener: Arc::from(spec.name.as_str()),
                    routes: ArcSwap::from_pointee(table),
                    limits: spec.limits,
                    trust_forwarded: spec.trust_forwarded,
                    stats: HttpStats::default(),
                })))
            }
            ListenerKind::Tcp { cluster } => Protocol::Tcp {
                cluster: clusters
                    .get(cluster.as_str())
                    .cloned()
                    .ok_or_else(|| anyhow!("listener {}: unknown cluster \"{cluster}\"", spec.name))?,
                limits: spec.limits,
            },
        };
        tracing::info!(listener = %spec.name, address = %bound.local_addr, "listening");
        listener::spawn_accept_loop(bound, protocol, spec.limits.max_connections, drain.clone(), tracker.clone());
    }
    Ok((trigger, tracker))
}

/// Serves until SIGTERM or SIGINT, then drains: listeners stop accepting,
/// HTTP/1.1 responses carry `Connection: close`, HTTP/2 connections get
/// GOAWAY, in-flight requests and TCP tunnels finish, for at most `drain_time`.
pub async fn serve(config: Config, bound: Vec<BoundListener>, opts: ServeOptions) -> anyhow::Result<()> {
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
    if tokio::time::timeout(opts.drain_time, tracker.wait()).await.is_err() {
        tracing::warn!("drain time elapsed with connections still open; exiting");
    } else {
        tracing::info!("drained");
    }
    Ok(())
}
