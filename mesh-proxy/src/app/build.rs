//! Building the running pieces from config: clusters (reusing unchanged
//! ones, so their pools and health state survive a reload) and listeners.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use opentelemetry::trace::SpanKind;
use tokio_util::task::TaskTracker;

use super::{AppError, Running};
use crate::admin::ListenerInfo;
use crate::cluster::Cluster;
use crate::config::{ClusterSpec, Config, ListenerKind, ListenerSpec, TlsMode};
use crate::identity::IdentityStore;
use crate::identity::server::TlsServer;
use crate::listener::{self, BoundListener, Drain, Protocol};
use crate::policy::FaultOverrides;
use crate::policy::authz_tcp::TcpAuthz;
use crate::router::{HttpContext, HttpStats, Observe, RouteTable};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::trace::Tracing;

/// Clusters by name, with the spec each was built from.
pub(super) type ClusterMap = HashMap<String, (ClusterSpec, Arc<Cluster>)>;

/// Builds the clusters of `config`, reusing those of `previous` whose spec
/// did not change.
pub(super) fn clusters(
    config: &Config,
    identity: &Option<Arc<IdentityStore>>,
    previous: &ClusterMap,
) -> Result<ClusterMap, AppError> {
    let mut out = ClusterMap::new();
    for (i, spec) in config.clusters.iter().enumerate() {
        let reused = previous
            .get(&spec.name)
            .filter(|(old, _)| same(old, spec))
            .map(|(_, c)| Arc::clone(c));
        let cluster = match reused {
            Some(c) => c,
            None => {
                let c = Cluster::try_spawn(spec.clone(), identity.clone()).map_err(|reason| {
                    AppError::Cluster {
                        index: i,
                        cluster: spec.name.clone(),
                        reason,
                    }
                })?;
                crate::health::spawn_health_checks(&c);
                c
            }
        };
        out.insert(spec.name.clone(), (spec.clone(), cluster));
    }
    Ok(out)
}

/// Specs are plain data; their debug form is a faithful comparison.
pub(super) fn same<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// What every listener shares.
pub(super) struct Shared<'a> {
    pub identity: &'a Option<Arc<IdentityStore>>,
    pub tracing: &'a Option<Arc<Tracing>>,
    pub access_log: &'a Option<Arc<AccessLog>>,
    pub drain: &'a Drain,
    pub tracker: &'a TaskTracker,
    pub faults: &'a Arc<FaultOverrides>,
}

/// The route table of an HTTP listener against `clusters`, open to the
/// live fault overrides of `faults`.
pub(super) fn routes(
    spec: &ListenerSpec,
    clusters: &ClusterMap,
    faults: &Arc<FaultOverrides>,
) -> Result<Option<RouteTable>, AppError> {
    match &spec.kind {
        ListenerKind::Http { routes } => {
            let mut table = RouteTable::build(&spec.name, routes, |name| {
                clusters.get(name).map(|(_, c)| Arc::clone(c))
            })
            .map_err(|source| AppError::Routes {
                listener: spec.name.clone(),
                source,
            })?;
            table.attach_fault_overrides(faults);
            Ok(Some(table))
        }
        ListenerKind::Tcp { .. } => Ok(None),
    }
}

/// A listener ready to serve: everything that can fail (TLS, routes, the
/// cluster of a TCP listener) is done; only its accept loop is missing.
pub(super) struct Prepared {
    spec: ListenerSpec,
    bound: BoundListener,
    protocol: Protocol,
    info: ListenerInfo,
}

/// Builds one listener on its bound socket without serving it yet.
pub(super) fn prepare(
    spec: &ListenerSpec,
    bound: BoundListener,
    clusters: &ClusterMap,
    shared: &Shared<'_>,
) -> Result<Prepared, AppError> {
    let tls = match (&spec.tls, shared.identity) {
        (Some(tls), Some(store)) => {
            let alpn: &[&[u8]] = match spec.kind {
                ListenerKind::Http { .. } => &[b"h2", b"http/1.1"],
                ListenerKind::Tcp { .. } => &[],
            };
            let server =
                TlsServer::new(&spec.name, tls, Arc::clone(store), alpn).map_err(|source| {
                    AppError::ListenerTls {
                        listener: spec.name.clone(),
                        source,
                    }
                })?;
            Some(Arc::new(server))
        }
        (Some(_), None) => {
            return Err(AppError::TlsWithoutIdentity {
                listener: spec.name.clone(),
            });
        }
        (None, _) => None,
    };
    let mut info = ListenerInfo {
        name: spec.name.clone(),
        address: bound.local_addr,
        http: None,
        tls: tls.clone(),
        tcp_authz: None,
    };
    let protocol = match &spec.kind {
        ListenerKind::Http { .. } => {
            let table = routes(spec, clusters, shared.faults)?.unwrap_or_default();
            let ctx = Arc::new(HttpContext {
                listener: Arc::from(spec.name.as_str()),
                routes: ArcSwap::from_pointee(table),
                limits: spec.limits,
                trust_forwarded: spec.trust_forwarded,
                stats: HttpStats::default(),
                observe: observe(shared.tracing, shared.access_log, spec),
            });
            info.http = Some(Arc::clone(&ctx));
            Protocol::Http(listener::http_server(ctx, tls))
        }
        ListenerKind::Tcp { cluster, authz } => {
            let authz = Arc::new(TcpAuthz::new(&spec.name, authz.clone()));
            info.tcp_authz = Some(Arc::clone(&authz));
            Protocol::Tcp {
                cluster: clusters
                    .get(cluster.as_str())
                    .map(|(_, c)| Arc::clone(c))
                    .ok_or_else(|| AppError::UnknownCluster {
                        listener: spec.name.clone(),
                        cluster: cluster.clone(),
                    })?,
                limits: spec.limits,
                tls,
                authz,
            }
        }
    };
    Ok(Prepared {
        spec: spec.clone(),
        bound,
        protocol,
        info,
    })
}

impl Prepared {
    /// Starts the accept loop; cannot fail.
    pub(super) fn start(self, shared: &Shared<'_>) -> Running {
        let Prepared {
            spec,
            bound,
            protocol,
            info,
        } = self;
        tracing::info!(listener = %spec.name, address = %bound.local_addr, "listening");
        let socket = bound.handle();
        let (stop, stopped) = Drain::new();
        listener::spawn_accept_loop(
            bound,
            protocol,
            spec.limits.max_connections,
            shared.drain.clone(),
            stopped,
            shared.tracker.clone(),
        );
        Running {
            spec,
            info,
            stop,
            socket,
        }
    }
}

/// What one HTTP listener observes; `None` when neither tracing nor an
/// access log is on. An mTLS ingress records SERVER spans; egress and edge
/// listeners record CLIENT spans.
fn observe(
    tracing: &Option<Arc<Tracing>>,
    access_log: &Option<Arc<AccessLog>>,
    spec: &ListenerSpec,
) -> Option<Arc<Observe>> {
    if tracing.is_none() && access_log.is_none() {
        return None;
    }
    let is_ingress = spec.tls.as_ref().is_some_and(|t| t.mode == TlsMode::Mutual);
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
