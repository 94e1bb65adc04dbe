//! Read-only views of the running proxy: `/clusters`, `/listeners`,
//! `/certs` and `/local_replies`. Certificates appear only as metadata
//! (SPIFFE ID, serial, issuer, validity, file paths), never their contents
//! or any key material.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::AdminHandle;
use crate::cluster::Cluster;
use crate::config::{Discovery, IdentitySpec, LbPolicy, ListenerKind, TlsMode, UpstreamProtocol};

fn lb_name(lb: LbPolicy) -> &'static str {
    match lb {
        LbPolicy::RoundRobin => "round_robin",
        LbPolicy::LeastRequest => "least_request",
        LbPolicy::Random => "random",
    }
}

fn protocol_name(p: UpstreamProtocol) -> &'static str {
    match p {
        UpstreamProtocol::Http1 => "http1",
        UpstreamProtocol::Http2 => "http2",
    }
}

fn tls_mode(m: TlsMode) -> &'static str {
    match m {
        TlsMode::Mutual => "mutual",
        TlsMode::Server => "server",
    }
}

/// `/clusters` as Envoy prints it: `cluster::endpoint::stat::value`.
pub(super) fn clusters_text(rt: &AdminHandle) -> String {
    let mut out = String::new();
    for c in &rt.topology().clusters {
        let n = c.name();
        let cb = c.spec().circuit_breaker;
        let s = c.stats();
        out.push_str(&format!(
            "{n}::default_priority::max_connections::{}\n{n}::default_priority::max_pending_requests::{}\n{n}::default_priority::max_requests::{}\n{n}::default_priority::max_retries::{}\n",
            cb.max_connections, cb.max_pending_requests, cb.max_requests, cb.max_retries
        ));
        out.push_str(&format!(
            "{n}::cx_active::{}\n{n}::rq_active::{}\n",
            s.upstream_cx_active.load(Ordering::Relaxed),
            s.upstream_rq_active.load(Ordering::Relaxed)
        ));
        for e in &c.endpoints().endpoints {
            let a = e.addr;
            let health = e.health().snapshot();
            out.push_str(&format!(
                "{n}::{a}::rq_active::{}\n{n}::{a}::health_flags::{}\n{n}::{a}::outlier_ejections::{}\n",
                e.active_requests.load(Ordering::Relaxed),
                health.flags(),
                health.ejections
            ));
        }
    }
    out
}

fn cluster_json(c: &Cluster) -> Value {
    let spec = c.spec();
    let s = c.stats();
    let set = c.endpoints();
    let endpoints: Vec<Value> = set
        .endpoints
        .iter()
        .map(|e| {
            let health = e.health().snapshot();
            json!({
                "address": e.addr.to_string(),
                "health_flags": health.flags(),
                "healthy": health.healthy,
                "ejected": health.ejected,
                "available": health.is_available(),
                "rq_active": e.active_requests.load(Ordering::Relaxed),
                "outlier_ejections": health.ejections,
                "consecutive_5xx": health.consecutive_5xx,
            })
        })
        .collect();
    let cb = spec.circuit_breaker;
    json!({
        "name": c.name(),
        "discovery": match spec.discovery { Discovery::Static => "static", Discovery::Dns { .. } => "dns" },
        "lb": lb_name(spec.lb),
        "protocol": protocol_name(spec.protocol),
        "tls": spec.tls.as_ref().map(|t| tls_mode(t.mode)),
        "circuit_breakers": {
            "max_connections": cb.max_connections,
            "max_pending_requests": cb.max_pending_requests,
            "max_requests": cb.max_requests,
            "max_retries": cb.max_retries,
        },
        "cx_active": s.upstream_cx_active.load(Ordering::Relaxed),
        "rq_active": s.upstream_rq_active.load(Ordering::Relaxed),
        "membership_total": set.endpoints.len(),
        "membership_healthy": set.endpoints.iter().filter(|e| e.is_available()).count(),
        "endpoints": endpoints,
    })
}

pub(super) fn clusters_json(rt: &AdminHandle) -> Value {
    let clusters: Vec<Value> = rt
        .topology()
        .clusters
        .iter()
        .map(|c| cluster_json(c))
        .collect();
    json!({ "clusters": clusters })
}

/// `/listeners`: `name::address` lines, or JSON with protocol and TLS mode.
pub(super) fn listeners_text(rt: &AdminHandle) -> String {
    rt.topology()
        .listeners
        .iter()
        .map(|l| format!("{}::{}\n", l.name, l.address))
        .collect()
}

pub(super) fn listeners_json(rt: &AdminHandle) -> Value {
    let topo = rt.topology();
    let listeners: Vec<Value> = topo
        .listeners
        .iter()
        .map(|l| {
            let spec = topo.config.listeners.iter().find(|s| s.name == l.name);
            let (protocol, target) = match spec.map(|s| &s.kind) {
                Some(ListenerKind::Http { routes }) => ("http", json!({ "routes": routes.len() })),
                Some(ListenerKind::Tcp { cluster, .. }) => ("tcp", json!({ "cluster": cluster })),
                None => ("unknown", json!({})),
            };
            let cx_active = l
                .http
                .as_ref()
                .map(|h| h.stats.downstream_cx_active.load(Ordering::Relaxed));
            json!({
                "name": l.name,
                "address": l.address.to_string(),
                "protocol": protocol,
                "tls": spec.and_then(|s| s.tls.as_ref()).map(|t| tls_mode(t.mode)),
                "downstream_cx_active": cx_active,
                "target": target,
            })
        })
        .collect();
    json!({ "listeners": listeners })
}

fn rfc3339(unix_secs: i64) -> String {
    let at = if unix_secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix_secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(unix_secs.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `/certs`: this workload's certificate as metadata; an empty list
/// without an identity.
pub(super) fn certs_json(rt: &AdminHandle) -> Value {
    let Some(id) = rt.identity.as_ref().and_then(|s| s.current()) else {
        return json!({ "certificates": [] });
    };
    let left = id.expires_in_secs();
    let (cert_path, bundle_path) = match &rt.topology().config.identity {
        Some(IdentitySpec::Files {
            cert, trust_bundle, ..
        }) => (
            Some(cert.display().to_string()),
            Some(trust_bundle.display().to_string()),
        ),
        Some(IdentitySpec::Ca { trust_bundle, .. }) => {
            (None, Some(trust_bundle.display().to_string()))
        }
        None => (None, None),
    };
    json!({
        "certificates": [{
            "spiffe_id": id.spiffe_id.to_string(),
            "serial_number": id.serial_hex,
            "issuer": id.issuer,
            "not_before": rfc3339(id.not_before),
            "not_after": rfc3339(id.not_after),
            "seconds_until_expiration": left,
            "days_until_expiration": left.div_euclid(86_400),
            "cert_path": cert_path,
            "trust_bundle_path": bundle_path,
            "trust_roots": id.trust.roots.len(),
        }]
    })
}

/// `/local_replies`: the last local replies of every listener, newest first.
pub(super) fn local_replies_json(rt: &AdminHandle) -> Value {
    let mut all: Vec<_> = rt
        .topology()
        .listeners
        .iter()
        .filter_map(|l| l.http.as_ref())
        .flat_map(|h| h.stats.local_replies.recent())
        .collect();
    all.sort_by_key(|r| std::cmp::Reverse(r.unix_ms));
    all.truncate(crate::telemetry::local_replies::RECENT_CAPACITY);
    let replies: Vec<Value> = all
        .into_iter()
        .map(|r| {
            let at = UNIX_EPOCH + Duration::from_millis(r.unix_ms);
            json!({
                "time": humantime::format_rfc3339_millis(at).to_string(),
                "unix_ms": r.unix_ms,
                "listener": &*r.listener,
                "method": r.method,
                "path": r.path,
                "status": r.status,
                "flag": r.flag,
                "detail": r.detail,
            })
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    json!({ "now_ms": now, "local_replies": replies })
}
