//! Wiring: builds clusters and listeners from a validated config, binds
//! every socket before serving any, runs until a signal drains it, and
//! reloads the config on SIGHUP or when its file changes (`reload`).

mod build;
mod error;
mod reload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::task::TaskTracker;

use crate::admin::{AdminHandle, ListenerInfo, Topology};
use crate::config::{Config, IdentitySpec};
use crate::file_watch::FileWatch;
use crate::identity::IdentityStore;
use crate::listener::{self, BoundListener, Drain};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::trace::Tracing;

pub use error::AppError;
pub(crate) use reload::reload_file;

pub struct ServeOptions {
    pub drain_time: Duration,
    /// The admin API's socket, bound with the listeners; served once the
    /// runtime is up.
    pub admin: Option<crate::admin::AdminListener>,
    /// The config file, watched and reloaded on change and on SIGHUP.
    pub config_path: Option<PathBuf>,
}

/// Binds every listener; fails (binding nothing else) if any cannot be bound.
pub fn bind_all(config: &Config) -> Result<Vec<BoundListener>, AppError> {
    config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            BoundListener::bind(spec).map_err(|source| AppError::Bind {
                listener: format!("listeners[{i}] ({})", spec.name),
                address: spec.address,
                source,
            })
        })
        .collect()
}

/// Loads this workload's identity, checking the files (readable, key
/// matching the certificate, a valid SVID trusted by the bundle) before any
/// socket is bound. `None` without an `identity` section.
pub fn load_identity(config: &Config) -> Result<Option<Arc<IdentityStore>>, AppError> {
    match &config.identity {
        None => Ok(None),
        Some(IdentitySpec::Files {
            cert,
            key,
            trust_bundle,
        }) => {
            let identity =
                crate::identity::load_files(cert, key, trust_bundle).map_err(AppError::Identity)?;
            Ok(Some(IdentityStore::new(Some(identity))))
        }
        // Obtained in the background once serving: until then handshakes
        // fail and /ready says NO_IDENTITY.
        Some(IdentitySpec::Ca { .. }) => Ok(Some(IdentityStore::new(None))),
    }
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

/// Everything a running proxy is made of. The admin API reads it through
/// an [`AdminHandle`]; it mutates only through explicit handles (`drain`,
/// `reload`).
pub(crate) struct Runtime {
    topology: Arc<ArcSwap<Topology>>,
    running: tokio::sync::Mutex<RunningSet>,
    /// This workload's certificate, when it has one.
    pub identity: Option<Arc<IdentityStore>>,
    pub drain: listener::DrainTrigger,
    drain_watch: Drain,
    pub tracker: TaskTracker,
    pub started_at: std::time::SystemTime,
    /// `server.config_reload_total` / `_failed`, bumped by reloads.
    pub reloads: Arc<crate::telemetry::metrics::ReloadCounters>,
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
    pub(crate) fn topology(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.topology.load()
    }

    fn publish(&self, config: Arc<Config>, running: &RunningSet) {
        self.topology.store(Arc::new(topology_of(config, running)));
    }

    /// What the admin API reads: the same snapshots and counters.
    pub(crate) fn admin_handle(&self) -> AdminHandle {
        AdminHandle {
            topology: Arc::clone(&self.topology),
            identity: self.identity.clone(),
            drain: self.drain.clone(),
            started_at: self.started_at,
            reloads: Arc::clone(&self.reloads),
            tracing: self.tracing.clone(),
            access_log: self.access_log.clone(),
            faults: Arc::clone(&self.faults),
        }
    }
}

/// The admin's view of `running`, with the config it came from.
fn topology_of(config: Arc<Config>, running: &RunningSet) -> Topology {
    let mut clusters: Vec<_> = running
        .clusters
        .values()
        .map(|(_, c)| Arc::clone(c))
        .collect();
    clusters.sort_by(|a, b| a.name().cmp(b.name()));
    Topology {
        config,
        listeners: running.listeners.iter().map(|r| r.info.clone()).collect(),
        clusters,
    }
}

/// Keeps the identity fresh: watches its files (`identity.files`) or
/// obtains and renews it from the CA (`identity.ca`).
fn spawn_identity_source(identity: &Option<Arc<IdentityStore>>, config: &Config) {
    match (identity, &config.identity) {
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
}

/// Starts serving `config` on already-bound sockets.
pub(crate) fn start(
    config: &Config,
    bound: Vec<BoundListener>,
    identity: Option<Arc<IdentityStore>>,
) -> Result<Runtime, AppError> {
    spawn_identity_source(&identity, config);
    let clusters = build::clusters(config, &identity, &build::ClusterMap::new())?;
    let tracing = match &config.tracing {
        Some(spec) => Tracing::init(spec, &config.node.service)
            .map_err(|e| AppError::Tracing {
                reason: format!("{e:#}"),
            })?
            .map(Arc::new),
        None => None,
    };
    let access_log = AccessLog::start(&config.access_log).map_err(AppError::AccessLog)?;
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
        .collect::<Result<Vec<_>, _>>()?;
    let listeners = prepared.into_iter().map(|p| p.start(&shared)).collect();
    let running = RunningSet {
        listeners,
        clusters,
    };
    let config = Arc::new(config.clone());
    Ok(Runtime {
        topology: Arc::new(ArcSwap::from_pointee(topology_of(config, &running))),
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
) -> Result<(), AppError> {
    let runtime = Arc::new(start(&config, bound, identity)?);
    if let Some(admin) = opts.admin {
        admin.spawn(runtime.admin_handle());
    }
    tracing::info!(node = %config.node.name, "mesh-proxy started");
    let mut term = install(SignalKind::terminate(), "SIGTERM")?;
    let mut int = install(SignalKind::interrupt(), "SIGINT")?;
    let mut hup = install(SignalKind::hangup(), "SIGHUP")?;
    let mut usr1 = install(SignalKind::user_defined1(), "SIGUSR1")?;
    let mut watch = opts.config_path.as_ref().map(|path| {
        FileWatch::new(
            vec![path.clone()],
            Duration::from_secs(1),
            Duration::from_millis(200),
        )
    });
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = runtime.drain.started() => break,
            _ = hup.recv() => match &opts.config_path {
                Some(path) => { let _ = reload_file(&runtime, path).await; }
                None => tracing::warn!("SIGHUP received but the config did not come from a file"),
            },
            _ = changed(&mut watch) => {
                if let Some(path) = &opts.config_path {
                    let _ = reload_file(&runtime, path).await;
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

fn install(kind: SignalKind, name: &'static str) -> Result<Signal, AppError> {
    signal(kind).map_err(|source| AppError::Signal {
        signal: name,
        source,
    })
}

/// Resolves when the config file changed and is there to be read (never
/// without a file). Polled each second, and acted on once the new stamp
/// held for 200 ms, to let a writer finish.
async fn changed(watch: &mut Option<FileWatch>) {
    let Some(w) = watch.as_mut() else {
        return std::future::pending().await;
    };
    while !w.changed().await {}
}

#[cfg(test)]
mod tests;
