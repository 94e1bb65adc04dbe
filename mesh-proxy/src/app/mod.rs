//! Wiring: builds clusters and listeners from a validated config, binds
//! every socket before serving any, runs until a signal drains it, and
//! reloads the config on SIGHUP or when its file changes (`reload`).

mod build;
mod reload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::config::{Config, IdentitySpec};
use crate::identity::IdentityStore;
use crate::identity::server::TlsServer;
use crate::listener::{self, BoundListener, Drain};
use crate::router::HttpContext;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::trace::Tracing;

pub use reload::reload;

pub struct ServeOptions {
    pub drain_time: Duration,
    /// The admin API's socket, bound with the listeners; served once the
    /// runtime is up.
    pub admin: Option<crate::admin::AdminListener>,
    /// The config file, watched and reloaded on change and on SIGHUP.
    pub config_path: Option<PathBuf>,
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

/// Loads this workload's identity, checking the files (readable, key
/// matching the certificate, a valid SVID trusted by the bundle) before any
/// socket is bound. `None` without an `identity` section.
pub fn load_identity(config: &Config) -> anyhow::Result<Option<Arc<IdentityStore>>> {
    match &config.identity {
        None => Ok(None),
        Some(IdentitySpec::Files {
            cert,
            key,
            trust_bundle,
        }) => {
            let identity =
                crate::identity::load_files(cert, key, trust_bundle).context("identity")?;
            Ok(Some(IdentityStore::new(Some(identity))))
        }
        // Obtained in the background once serving: until then handshakes
        // fail and /ready says NO_IDENTITY.
        Some(IdentitySpec::Ca { .. }) => Ok(Some(IdentityStore::new(None))),
    }
}

/// A listener as it runs: what the admin API lists and reads stats from.
#[derive(Clone)]
pub struct ListenerInfo {
    pub name: String,
    pub address: SocketAddr,
    /// The HTTP listener's context (routes, limits, stats); `None` for TCP.
    pub http: Option<Arc<HttpContext>>,
    /// The TLS side (handshake failure counters); `None` without `tls:`.
    pub tls: Option<Arc<TlsServer>>,
}

/// The current listeners and clusters with the config they came from;
/// swapped as a whole by a reload.
pub struct Topology {
    pub config: Arc<Config>,
    pub listeners: Vec<ListenerInfo>,
    pub clusters: Vec<Arc<Cluster>>,
}

/// A listener that is accepting, and how to stop it.
struct Running {
    spec: crate::config::ListenerSpec,
    info: ListenerInfo,
    stop: listener::DrainTrigger,
    /// Its socket, handed on when a reload replaces it at the same address.
    socket: listener::SocketHandle,
}

/// What a reload works on (behind an async mutex: reloads run one at a
/// time; requests never touch it).
struct RunningSet {
    listeners: Vec<Running>,
    clusters: build::ClusterMap,
}

/// Everything a running proxy is made of. The admin API reads it; it
/// mutates only through explicit handles (`drain`, `reload`).
pub struct Runtime {
    topology: ArcSwap<Topology>,
    running: tokio::sync::Mutex<RunningSet>,
    /// This workload's certificate, when it has one.
    pub identity: Option<Arc<IdentityStore>>,
    pub drain: listener::DrainTrigger,
    drain_watch: Drain,
    pub tracker: TaskTracker,
    pub started_at: std::time::SystemTime,
    /// `server.config_reload_total` / `_failed`, bumped by reloads.
    pub reloads: crate::telemetry::metrics::ReloadCounters,
    /// Span export, when tracing is configured (flushed at exit).
    pub tracing: Option<Arc<Tracing>>,
    /// The access logs, when configured (reopened on SIGUSR1).
    pub access_log: Option<Arc<AccessLog>>,
    /// Live fault overrides (admin `/fault`), read by every route table;
    /// they outlive reloads.
    pub faults: Arc<crate::policy::FaultOverrides>,
}

impl Runtime {
    /// The current config, listeners and clusters (a snapshot).
    pub fn topology(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.topology.load()
    }

    fn publish(&self, config: Arc<Config>, running: &RunningSet) {
        self.topology.store(Arc::new(Topology::of(config, running)));
    }
}

/// Starts serving `config` on already-bound sockets.
pub fn start(
    config: &Config,
    bound: Vec<BoundListener>,
    identity: Option<Arc<IdentityStore>>,
) -> anyhow::Result<Runtime> {
    match (&identity, &config.identity) {
        (
            Some(store),
            Some(IdentitySpec::Files {
                cert,
                key,
                trust_bundle,
            }),
        ) => {
            crate::identity::spawn_file_watcher(
                store,
                cert.clone(),
                key.clone(),
                trust_bundle.clone(),
            );
        }
        (
            Some(store),
            Some(IdentitySpec::Ca {
                url,
                trust_bundle,
                token_file,
                spiffe_id,
                ttl,
            }),
        ) => {
            let source = crate::identity::CaSource {
                url: url.clone(),
                trust_bundle: trust_bundle.clone(),
                token_file: token_file.clone(),
                spiffe_id: spiffe_id.clone(),
                ttl: *ttl,
            };
            crate::identity::spawn_ca_client(store, source);
        }
        _ => {}
    }
    let clusters = build::clusters(config, &identity, &build::ClusterMap::new())?;
    let tracing = match &config.tracing {
        Some(spec) => Tracing::init(spec, &config.node.service)
            .context("tracing")?
            .map(Arc::new),
        None => None,
    };
    let access_log = AccessLog::start(&config.access_log).map_err(anyhow::Error::msg)?;
    let (trigger, drain) = Drain::new();
    let tracker = TaskTracker::new();
    let faults = Arc::new(crate::policy::FaultOverrides::default());
    let shared = build::Shared {
        identity: &identity,
        tracing: &tracing,
        access_log: &access_log,
        drain: &drain,
        tracker: &tracker,
        faults: &faults,
    };
    let prepared = config
        .listeners
        .iter()
        .zip(bound)
        .map(|(spec, bound)| build::prepare(spec, bound, &clusters, &shared))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let listeners = prepared.into_iter().map(|p| p.start(&shared)).collect();
    let running = RunningSet {
        listeners,
        clusters,
    };
    let config = Arc::new(config.clone());
    Ok(Runtime {
        topology: ArcSwap::from_pointee(Topology::of(config, &running)),
        running: tokio::sync::Mutex::new(running),
        identity,
        drain: trigger,
        drain_watch: drain,
        tracker,
        started_at: std::time::SystemTime::now(),
        reloads: Default::default(),
        tracing,
        access_log,
        faults,
    })
}

/// Serves until SIGTERM or SIGINT, then drains: listeners stop accepting,
/// HTTP/1.1 responses carry `Connection: close`, HTTP/2 connections get
/// GOAWAY, in-flight requests and TCP tunnels finish, for at most `drain_time`.
pub async fn serve(
    config: Config,
    bound: Vec<BoundListener>,
    identity: Option<Arc<IdentityStore>>,
    opts: ServeOptions,
) -> anyhow::Result<()> {
    let runtime = Arc::new(start(&config, bound, identity)?);
    if let Some(admin) = opts.admin {
        admin.spawn(Arc::clone(&runtime));
    }
    tracing::info!(node = %config.node.name, "mesh-proxy started");
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let mut watch = opts.config_path.as_deref().map(FileWatch::new);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = runtime.drain.started() => break,
            _ = hup.recv() => match &opts.config_path {
                Some(path) => { let _ = reload(&runtime, path).await; }
                None => tracing::warn!("SIGHUP received but the config did not come from a file"),
            },
            _ = changed(&mut watch) => {
                if let Some(path) = &opts.config_path {
                    let _ = reload(&runtime, path).await;
                }
            }
            _ = usr1.recv() => {
                if let Some(log) = &runtime.access_log {
                    log.reopen();
                    tracing::info!("SIGUSR1: access log files will be reopened");
                }
            }
        }
    }
    tracing::info!(drain_time = ?opts.drain_time, "draining");
    runtime.drain.start();
    runtime.tracker.close();
    if tokio::time::timeout(opts.drain_time, runtime.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain time elapsed with connections still open; exiting");
    } else {
        tracing::info!("drained");
    }
    if let Some(t) = &runtime.tracing {
        t.shutdown();
    }
    Ok(())
}

/// Notices a changed config file (by device, inode, size and mtime, polled
/// each second: sees editors' renames and Kubernetes symlink swaps alike).
struct FileWatch {
    path: PathBuf,
    last: Option<(u64, u64, u64, Option<std::time::SystemTime>)>,
}

impl FileWatch {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            last: stamp(path),
        }
    }
}

fn stamp(path: &Path) -> Option<(u64, u64, u64, Option<std::time::SystemTime>)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.len(), m.modified().ok()))
}

/// Resolves when the watched file changed (never without a file).
async fn changed(watch: &mut Option<FileWatch>) {
    let Some(w) = watch.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = stamp(&w.path);
        if now != w.last && now.is_some() {
            // Let a writer finish: act on a stamp that held for a moment.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let settled = stamp(&w.path);
            w.last = settled;
            return;
        }
    }
}
