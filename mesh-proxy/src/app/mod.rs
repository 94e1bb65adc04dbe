//! Wiring: builds clusters and listeners from a validated config, binds
//! every socket before serving any, and runs until a signal drains it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::config::{Config, IdentitySpec, ListenerKind};
use crate::identity::IdentityStore;
use crate::identity::server::TlsServer;
use crate::listener::{self, BoundListener, Drain, Protocol};
use crate::router::Observe;
use crate::router::{HttpContext, HttpStats, RouteTable};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::trace::Tracing;
use opentelemetry::trace::SpanKind;

pub struct ServeOptions {
    pub drain_time: Duration,
    /// The admin API's socket, bound with the listeners; served once the
    /// runtime is up.
    pub admin: Option<crate::admin::AdminListener>,
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
pub struct ListenerInfo {
    pub name: String,
    pub address: SocketAddr,
    /// The HTTP listener's context (routes, limits, stats); `None` for TCP.
    pub http: Option<Arc<HttpContext>>,
    /// The TLS side (handshake failure counters); `None` without `tls:`.
    pub tls: Option<Arc<TlsServer>>,
}

/// Everything a running proxy is made of. The admin API reads it; it
/// mutates only through explicit handles (`drain`).
pub struct Runtime {
    pub config: Arc<Config>,
    pub listeners: Vec<ListenerInfo>,
    pub clusters: Vec<Arc<Cluster>>,
    /// This workload's certificate, when it has one.
    pub identity: Option<Arc<IdentityStore>>,
    pub drain: listener::DrainTrigger,
    pub tracker: TaskTracker,
    pub started_at: std::time::SystemTime,
    /// `server.config_reload_total` / `_failed`, bumped by reloads.
    pub reloads: crate::telemetry::metrics::ReloadCounters,
    /// Span export, when tracing is configured (flushed at exit).
    pub tracing: Option<Arc<Tracing>>,
    /// The access logs, when configured (reopened on SIGUSR1).
    pub access_log: Option<Arc<AccessLog>>,
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
    let mut clusters: HashMap<&str, Arc<Cluster>> = HashMap::new();
    for (i, c) in config.clusters.iter().enumerate() {
        let cluster = Cluster::try_spawn(c.clone(), identity.clone())
            .map_err(|e| anyhow!("clusters[{i}] ({}): {e}", c.name))?;
        crate::health::spawn_health_checks(&cluster);
        clusters.insert(c.name.as_str(), cluster);
    }
    let tracing = match &config.tracing {
        Some(spec) => Tracing::init(spec, &config.node.service)
            .context("tracing")?
            .map(Arc::new),
        None => None,
    };
    let access_log = AccessLog::start(&config.access_log).map_err(anyhow::Error::msg)?;
    let (trigger, drain) = Drain::new();
    let tracker = TaskTracker::new();
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for (spec, bound) in config.listeners.iter().zip(bound) {
        let tls = match (&spec.tls, &identity) {
            (Some(tls), Some(store)) => {
                let alpn: &[&[u8]] = match spec.kind {
                    ListenerKind::Http { .. } => &[b"h2", b"http/1.1"],
                    ListenerKind::Tcp { .. } => &[],
                };
                let server = TlsServer::new(&spec.name, tls, Arc::clone(store), alpn)
                    .map_err(|e| anyhow!("listener {}: {e}", spec.name))?;
                Some(Arc::new(server))
            }
            (Some(_), None) => anyhow::bail!("listener {}: tls needs an identity", spec.name),
            (None, _) => None,
        };
        let mut info = ListenerInfo {
            name: spec.name.clone(),
            address: bound.local_addr,
            http: None,
            tls: tls.clone(),
        };
        let protocol = match &spec.kind {
            ListenerKind::Http { routes } => {
                let table =
                    RouteTable::build(&spec.name, routes, |name| clusters.get(name).cloned())
                        .map_err(|e| anyhow!("listener {}: {e}", spec.name))?;
                let ctx = Arc::new(HttpContext {
                    listener: Arc::from(spec.name.as_str()),
                    routes: ArcSwap::from_pointee(table),
                    limits: spec.limits,
                    trust_forwarded: spec.trust_forwarded,
                    stats: HttpStats::default(),
                    observe: observe(&tracing, &access_log, spec),
                });
                info.http = Some(Arc::clone(&ctx));
                Protocol::Http(listener::http_server(ctx, tls))
            }
            ListenerKind::Tcp { cluster } => Protocol::Tcp {
                cluster: clusters.get(cluster.as_str()).cloned().ok_or_else(|| {
                    anyhow!("listener {}: unknown cluster \"{cluster}\"", spec.name)
                })?,
                limits: spec.limits,
                tls,
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
        listeners.push(info);
    }
    let mut clusters: Vec<Arc<Cluster>> = clusters.into_values().collect();
    clusters.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(Runtime {
        config: Arc::new(config.clone()),
        listeners,
        clusters,
        identity,
        drain: trigger,
        tracker,
        started_at: std::time::SystemTime::now(),
        reloads: Default::default(),
        tracing,
        access_log,
    })
}

/// What one HTTP listener observes; `None` when neither tracing nor an
/// access log is on. An mTLS ingress records SERVER spans; egress and edge
/// listeners record CLIENT spans.
fn observe(
    tracing: &Option<Arc<Tracing>>,
    access_log: &Option<Arc<AccessLog>>,
    spec: &crate::config::ListenerSpec,
) -> Option<Arc<Observe>> {
    if tracing.is_none() && access_log.is_none() {
        return None;
    }
    let is_ingress = spec
        .tls
        .as_ref()
        .is_some_and(|t| t.mode == crate::config::TlsMode::Mutual);
    Some(Arc::new(Observe {
        access_log: access_log.clone(),
        tracing: tracing.clone(),
        span_kind: if is_ingress {
            SpanKind::Server
        } else {
            SpanKind::Client
        },
    }))
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
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = runtime.drain.started() => break,
            _ = hup.recv() => tracing::warn!("SIGHUP received: live reload is not available in this build; restart to apply a new config"),
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
