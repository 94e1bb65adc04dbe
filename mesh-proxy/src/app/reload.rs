//! Hot reload (SIGHUP, or a change of the config file): the new config is
//! validated first — an invalid one is logged, counted and ignored while
//! the old one keeps serving. A valid one is applied without dropping a
//! connection:
//!
//! - clusters whose spec is unchanged are kept (pools, health, ejections);
//!   changed and new ones are built; removed ones go away with their last user;
//! - an HTTP listener whose address, protocol, TLS mode and limits are
//!   unchanged keeps its socket and gets the new route table in one atomic
//!   swap;
//! - a listener's new `tls.allow` applies to its open connections: the next
//!   HTTP request of a peer no longer listed gets 403 `UAEX`, a TCP tunnel of
//!   one is closed (a replaced listener's connections get it too);
//! - a changed listener is closed and bound anew, a removed one stops
//!   accepting (its connections finish), a new one starts.
//!
//! Identity, tracing, access logs and the admin address need a restart.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::build::{self, ClusterMap, Shared, same};
use super::{Runtime, Topology};
use crate::config::{Config, ListenerKind, ListenerSpec, TlsMode};
use crate::listener::BoundListener;

/// Reloads `path`; the error says why the old config stays.
pub async fn reload(rt: &Runtime, path: &Path) -> Result<(), String> {
    rt.reloads.total.fetch_add(1, Ordering::Relaxed);
    let result = apply(rt, path).await;
    match &result {
        Ok(()) => tracing::info!(path = %path.display(), "config reloaded"),
        Err(e) => {
            rt.reloads.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(path = %path.display(), "config reload rejected; the previous config keeps serving:\n{e}");
        }
    }
    result
}

async fn apply(rt: &Runtime, path: &Path) -> Result<(), String> {
    let new = crate::config::load_file(path).map_err(|e| e.to_string())?;
    let old = rt.topology().config.clone();
    warn_restart_only(&old, &new);

    // Everything that can fail happens before anything changes.
    let mut running = rt.running.lock().await;
    let previous: ClusterMap = running.clusters.clone();
    let clusters = build::clusters(&new, &rt.identity, &previous).map_err(|e| format!("{e:#}"))?;
    let mut keep = Vec::new();
    let mut relaunch = Vec::new();
    for spec in &new.listeners {
        match running
            .listeners
            .iter()
            .position(|r| r.spec.name == spec.name)
        {
            Some(i)
                if same_socket(&running.listeners[i].spec, spec)
                    && same_tcp_cluster(spec, &previous, &clusters) =>
            {
                let table = build::routes(spec, &clusters).map_err(|e| format!("{e:#}"))?;
                keep.push((i, spec.clone(), table));
            }
            _ => relaunch.push(spec.clone()),
        }
    }
    // Listeners that change or go away stop accepting first, so a changed
    // one can bind its address again.
    let kept: Vec<usize> = keep.iter().map(|(i, _, _)| *i).collect();
    let mut stay = Vec::new();
    for (i, r) in running.listeners.drain(..).enumerate() {
        if kept.contains(&i) {
            stay.push((i, r));
        } else {
            tracing::info!(listener = %r.spec.name, "listener closed by reload");
            if let Some(spec) = new.listeners.iter().find(|s| s.name == r.spec.name) {
                refresh_allow(&r, spec);
            }
            r.stop.start();
        }
    }
    let mut next = Vec::new();
    for ((_, spec, table), (_, mut r)) in keep.into_iter().zip(stay) {
        if let (Some(table), Some(http)) = (table, &r.info.http) {
            http.routes.store(Arc::new(table));
        }
        refresh_allow(&r, &spec);
        r.spec = spec;
        next.push(r);
    }
    let shared = Shared {
        identity: &rt.identity,
        tracing: &rt.tracing,
        access_log: &rt.access_log,
        drain: &rt.drain_watch,
        tracker: &rt.tracker,
    };
    let mut errors = Vec::new();
    for spec in relaunch {
        // The old socket may take a moment to close after its loop stops.
        match bind_retrying(&spec).await {
            Ok(bound) => match build::launch(&spec, bound, &clusters, &shared) {
                Ok(r) => next.push(r),
                Err(e) => errors.push(format!("{e:#}")),
            },
            Err(e) => errors.push(format!(
                "listener {}: cannot bind {}: {e}",
                spec.name, spec.address
            )),
        }
    }
    running.clusters = clusters;
    running.listeners = next;
    rt.publish(Arc::new(new), &running);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

async fn bind_retrying(spec: &ListenerSpec) -> std::io::Result<BoundListener> {
    let mut last = None;
    for _ in 0..20 {
        match BoundListener::bind(spec) {
            Ok(b) => return Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
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
        ListenerKind::Tcp { cluster } => match (previous.get(cluster), next.get(cluster)) {
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
        (ListenerKind::Tcp { cluster: a }, ListenerKind::Tcp { cluster: b }) => a == b,
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
/// of `spec`, the listener's new config.
fn refresh_allow(running: &super::Running, spec: &ListenerSpec) {
    match (&running.info.tls, &spec.tls) {
        (Some(server), Some(tls)) if tls.mode == TlsMode::Mutual => server.replace_allow(tls),
        _ => {}
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

impl Topology {
    pub(super) fn of(config: Arc<Config>, running: &super::RunningSet) -> Self {
        let mut clusters: Vec<_> = running
            .clusters
            .values()
            .map(|(_, c)| Arc::clone(c))
            .collect();
        clusters.sort_by(|a, b| a.name().cmp(b.name()));
        Self {
            config,
            listeners: running.listeners.iter().map(|r| r.info.clone()).collect(),
            clusters,
        }
    }
}
