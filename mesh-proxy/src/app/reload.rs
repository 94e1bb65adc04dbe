//! Hot reload. [`reload`] applies a validated [`Config`] from any source;
//! [`reload_file`] is the file source (SIGHUP, or a change of the config
//! file): it reads and validates first — an invalid file is logged,
//! counted and ignored while the old config keeps serving. A valid config
//! is applied without dropping a connection:
//!
//! - clusters whose spec is unchanged are kept (pools, health, ejections);
//!   changed and new ones are built; removed ones go away with their last user;
//! - an HTTP listener whose address, protocol, TLS mode and limits are
//!   unchanged keeps its socket and gets the new route table in one atomic
//!   swap;
//! - a listener's new `tls.allow` applies to its open connections: the next
//!   HTTP request of a peer no longer listed gets 403 `UAEX`, a TCP tunnel of
//!   one is closed (a replaced listener's connections get it too);
//! - a changed listener is built anew (on the same socket when its address
//!   did not change, so the port never refuses), a removed one stops
//!   accepting (its connections finish), a new one starts.
//!
//! A reload is all or nothing: every new address is bound and every new
//! listener built before anything old is stopped or swapped; any failure
//! (an address in use, TLS without an identity, ...) drops what was built
//! and leaves every listener, route table and cluster as it was.
//!
//! Identity, tracing, access logs and the admin address need a restart.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::build::{self, ClusterMap, Prepared, Shared, same};
use super::error::chain;
use super::{AppError, Running, RunningSet, Runtime};
use crate::config::{Config, ListenerKind, ListenerSpec, TlsMode};
use crate::listener::BoundListener;
use crate::router::RouteTable;

/// The file source (SIGHUP, a change of the config file): reads and
/// validates `path`, then applies it with [`reload`]. An invalid file
/// counts as a failed reload.
pub(crate) async fn reload_file(rt: &Runtime, path: &Path) -> Result<(), AppError> {
    let origin = path.display().to_string();
    match crate::config::load_file(path) {
        Ok(config) => reload(rt, config, &origin).await,
        Err(errors) => {
            rt.reloads.total.fetch_add(1, Ordering::Relaxed);
            rejected(rt, &origin, AppError::InvalidConfig(errors))
        }
    }
}

/// Applies a validated config, all or nothing; the error says why nothing
/// changed. `origin` names where it came from (a file path) in the logs.
/// Both outcomes count in `server.config_reload_total`, failures also in
/// `_failed`.
pub(crate) async fn reload(rt: &Runtime, config: Config, origin: &str) -> Result<(), AppError> {
    rt.reloads.total.fetch_add(1, Ordering::Relaxed);
    match apply(rt, config).await {
        Ok(()) => {
            tracing::info!(origin, "config reloaded");
            Ok(())
        }
        Err(e) => rejected(rt, origin, e),
    }
}

fn rejected(rt: &Runtime, origin: &str, error: AppError) -> Result<(), AppError> {
    rt.reloads.failed.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        origin,
        "config reload rejected; nothing was changed and the previous config keeps serving:\n{}",
        chain(&error)
    );
    Err(error)
}

/// A new config, fully built but not yet serving.
struct Plan {
    clusters: ClusterMap,
    /// Listeners that keep their socket: index in the running set, new
    /// spec, new route table.
    keep: Vec<(usize, ListenerSpec, Option<RouteTable>)>,
    /// Listeners to start, each on its own bound socket.
    start: Vec<Prepared>,
}

async fn apply(rt: &Runtime, new: Config) -> Result<(), AppError> {
    let old = rt.topology().config.clone();
    warn_restart_only(&old, &new);
    let mut running = rt.running.lock().await;
    // Everything that can fail happens here, before anything changes.
    let plan = prepare(rt, &running, &new).await?;
    commit(rt, &mut running, plan, &new);
    rt.faults.retain(|id| same_route(&old, &new, id));
    rt.publish(Arc::new(new), &running);
    Ok(())
}

/// Whether route `id` still names the route it named before the reload: a
/// named route is its name; an unnamed one (`<listener>/<index>`) is only
/// the same route while its match is unchanged, so that a route inserted
/// before it cannot inherit its live fault override.
pub(super) fn same_route(old: &Config, new: &Config, id: &str) -> bool {
    fn find<'c>(c: &'c Config, id: &str) -> Option<&'c crate::config::RouteSpec> {
        c.listeners.iter().find_map(|l| match &l.kind {
            ListenerKind::Http { routes } => routes.iter().find(|r| r.id == id),
            ListenerKind::Tcp { .. } => None,
        })
    }
    match (find(old, id), find(new, id)) {
        (Some(before), Some(after)) => {
            let named = after.name != after.id;
            named
                || serde_json::to_value(&before.matcher).ok()
                    == serde_json::to_value(&after.matcher).ok()
        }
        _ => false,
    }
}

fn shared(rt: &Runtime) -> Shared<'_> {
    Shared {
        identity: &rt.identity,
        tracing: &rt.tracing,
        access_log: &rt.access_log,
        drain: &rt.drain_watch,
        tracker: &rt.tracker,
        faults: &rt.faults,
    }
}

/// Builds `new` against the running set without touching it: on error,
/// whatever was bound or built is dropped.
async fn prepare(rt: &Runtime, running: &RunningSet, new: &Config) -> Result<Plan, AppError> {
    let previous = &running.clusters;
    let clusters = build::clusters(new, &rt.identity, previous)?;
    let mut keep = Vec::new();
    let mut changed = Vec::new();
    for spec in &new.listeners {
        let old = running.listeners.iter().position(|r| {
            r.spec.name == spec.name
                && same_socket(&r.spec, spec)
                && same_tcp_cluster(spec, previous, &clusters)
        });
        match old {
            Some(i) => {
                let table = build::routes(spec, &clusters, &rt.faults)?;
                keep.push((i, spec.clone(), table));
            }
            None => changed.push(spec),
        }
    }
    let shared = shared(rt);
    let mut start = Vec::with_capacity(changed.len());
    for spec in changed {
        let bound = socket_for(spec, running, &keep)
            .await
            .map_err(|source| AppError::Bind {
                listener: format!("listener {}", spec.name),
                address: spec.address,
                source,
            })?;
        start.push(build::prepare(spec, bound, &clusters, &shared)?);
    }
    Ok(Plan {
        clusters,
        keep,
        start,
    })
}

/// The socket for a listener to start: the one an old listener that goes
/// away serves at the same address, or a newly bound one.
async fn socket_for(
    spec: &ListenerSpec,
    running: &RunningSet,
    keep: &[(usize, ListenerSpec, Option<RouteTable>)],
) -> std::io::Result<BoundListener> {
    let leaving = running.listeners.iter().enumerate().find(|(i, r)| {
        spec.address.port() != 0
            && r.spec.address == spec.address
            && !keep.iter().any(|(k, _, _)| k == i)
    });
    match leaving.and_then(|(_, r)| r.socket.rebound(&spec.name)) {
        Some(bound) => bound,
        None => bind_retrying(spec).await,
    }
}

/// Applies a plan; cannot fail. New listeners accept before old ones stop.
fn commit(rt: &Runtime, running: &mut RunningSet, plan: Plan, new: &Config) {
    let shared = shared(rt);
    let mut next: Vec<Running> = plan.start.into_iter().map(|p| p.start(&shared)).collect();
    let mut old: Vec<Option<Running>> = running.listeners.drain(..).map(Some).collect();
    for (i, spec, table) in plan.keep {
        let Some(mut r) = old.get_mut(i).and_then(Option::take) else {
            continue;
        };
        if let (Some(table), Some(http)) = (table, &r.info.http) {
            http.routes.store(Arc::new(table));
        }
        refresh_allow(&r, &spec);
        r.spec = spec;
        next.push(r);
    }
    for r in old.into_iter().flatten() {
        tracing::info!(listener = %r.spec.name, "listener closed by reload");
        if let Some(spec) = new.listeners.iter().find(|s| s.name == r.spec.name) {
            refresh_allow(&r, spec);
        }
        r.stop.start();
    }
    // Keep the config's order for /listeners.
    next.sort_by_key(|r| new.listeners.iter().position(|s| s.name == r.spec.name));
    running.clusters = plan.clusters;
    running.listeners = next;
}

/// A removed listener's address may still be held for a moment by its
/// accept loop, which closes the socket once it stops.
async fn bind_retrying(spec: &ListenerSpec) -> std::io::Result<BoundListener> {
    let mut last = None;
    for _ in 0..10 {
        match BoundListener::bind(spec) {
            Ok(b) => return Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("address in use")))
}

/// A TCP listener holds its cluster directly: it keeps running only if
/// that cluster was kept as it was.
fn same_tcp_cluster(spec: &ListenerSpec, previous: &ClusterMap, next: &ClusterMap) -> bool {
    match &spec.kind {
        ListenerKind::Tcp { cluster, .. } => match (previous.get(cluster), next.get(cluster)) {
            (Some((_, a)), Some((_, b))) => Arc::ptr_eq(a, b),
            _ => false,
        },
        ListenerKind::Http { .. } => true,
    }
}

/// Can the listener keep its socket and connections (only routes change)?
fn same_socket(old: &ListenerSpec, new: &ListenerSpec) -> bool {
    let kind_same = match (&old.kind, &new.kind) {
        (ListenerKind::Http { .. }, ListenerKind::Http { .. }) => true,
        (ListenerKind::Tcp { cluster: a, .. }, ListenerKind::Tcp { cluster: b, .. }) => a == b,
        _ => false,
    };
    kind_same
        && old.address == new.address
        && old.trust_forwarded == new.trust_forwarded
        && same_tls_mode(old, new)
        && same(&old.limits, &new.limits)
}

/// A changed `allow` alone keeps the socket: it is swapped in place.
fn same_tls_mode(old: &ListenerSpec, new: &ListenerSpec) -> bool {
    match (&old.tls, &new.tls) {
        (None, None) => true,
        (Some(a), Some(b)) => a.mode == b.mode,
        _ => false,
    }
}

/// Open connections of `running` re-check their peer against the allow-list
/// of `spec`, the listener's new config, and a TCP listener's tunnels
/// against its new `authz`.
fn refresh_allow(running: &Running, spec: &ListenerSpec) {
    match (&running.info.tls, &spec.tls) {
        (Some(server), Some(tls)) if tls.mode == TlsMode::Mutual => server.replace_allow(tls),
        _ => {}
    }
    if let (Some(live), ListenerKind::Tcp { authz, .. }) = (&running.info.tcp_authz, &spec.kind) {
        live.replace(authz.clone());
    }
}

fn warn_restart_only(old: &Config, new: &Config) {
    for (what, changed) in [
        ("identity", !same(&old.identity, &new.identity)),
        ("tracing", !same(&old.tracing, &new.tracing)),
        ("access_log", !same(&old.access_log, &new.access_log)),
        ("admin", !same(&old.admin, &new.admin)),
    ] {
        if changed {
            tracing::warn!("config reload: {what} changed; it takes effect after a restart");
        }
    }
}
