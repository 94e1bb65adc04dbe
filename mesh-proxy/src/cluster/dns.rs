//! DNS discovery: every address a name resolves to is an endpoint.
//!
//! Resolution runs in the background and never blocks start-up; until a name
//! resolves, its cluster simply has no endpoints (503 `UH`). Endpoints whose
//! address is still present after a refresh keep their `Arc` and so their
//! pooled connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use hickory_resolver::TokioResolver;

use super::{Cluster, Endpoint, EndpointSet};
use crate::config::EndpointAddr;

/// One resolver per process, built from the system configuration
/// (`/etc/resolv.conf`, `/etc/hosts`). `None` when that configuration
/// cannot be read: we never fall back to public resolvers.
fn resolver() -> Option<&'static TokioResolver> {
    static RESOLVER: OnceLock<Option<TokioResolver>> = OnceLock::new();
    RESOLVER
        .get_or_init(|| match TokioResolver::builder_tokio().and_then(|b| b.build()) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the system DNS configuration; dns clusters stay empty");
                None
            }
        })
        .as_ref()
}

pub(super) fn spawn_refresh(cluster: Weak<Cluster>, names: Vec<EndpointAddr>, refresh: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(resolver) = resolver() else { return };
            let resolved = resolve_all(resolver, &names).await;
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            if let Some(addrs) = resolved {
                update(&cluster, addrs);
            }
        }
    });
}

/// Resolves every name. `None` when every lookup failed, so a transient DNS
/// outage keeps the last known endpoints instead of emptying the cluster.
async fn resolve_all(resolver: &TokioResolver, names: &[EndpointAddr]) -> Option<Vec<SocketAddr>> {
    let mut out = Vec::new();
    let mut any_ok = false;
    for name in names {
        if let Ok(ip) = name.host.parse() {
            out.push(SocketAddr::new(ip, name.port));
            any_ok = true;
            continue;
        }
        match resolver.lookup_ip(name.host.as_str()).await {
            Ok(ips) => {
                any_ok = true;
                out.extend(ips.iter().map(|ip| SocketAddr::new(ip, name.port)));
            }
            Err(e) => tracing::debug!(host = %name.host, error = %e, "dns lookup failed"),
        }
    }
    out.sort_unstable();
    out.dedup();
    any_ok.then_some(out)
}

fn update(cluster: &Cluster, addrs: Vec<SocketAddr>) {
    let current = cluster.endpoints();
    let unchanged = current.endpoints.len() == addrs.len()
        && current
            .endpoints
            .iter()
            .zip(&addrs)
            .all(|(e, a)| e.addr == *a);
    if unchanged {
        return;
    }
    let mut existing: HashMap<SocketAddr, &Arc<Endpoint>> =
        current.endpoints.iter().map(|e| (e.addr, e)).collect();
    let endpoints = addrs
        .into_iter()
        .map(|a| {
            existing
                .remove(&a)
                .map(Arc::clone)
                .unwrap_or_else(|| Endpoint::new(a))
        })
        .collect::<Vec<_>>();
    tracing::info!(cluster = %cluster.name(), endpoints = endpoints.len(), "dns endpoints changed");
    drop(existing);
    cluster.set_endpoints(EndpointSet { endpoints });
}
