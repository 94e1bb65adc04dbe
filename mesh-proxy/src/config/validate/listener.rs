//! `listeners:` — names, addresses (and their conflicts), protocol, TLS.

use std::net::SocketAddr;

use mesh_ca::SpiffePattern;

use super::super::model::*;
use super::super::raw::{DownstreamTlsConfig, ListenerConfig};
use super::super::suggest::did_you_mean;
use super::value_error::ValueError;
use super::{Ctx, index, join, limits, route, values};

/// What every listener is checked against.
pub(super) struct Shared<'a> {
    /// Every cluster name in the file, valid or not, for references.
    pub clusters: &'a [String],
    /// Top-level limits, overridden per listener.
    pub limits: &'a LimitsSpec,
    /// Whether an `identity` section exists (TLS needs one).
    pub has_identity: bool,
}

pub(super) fn listeners(
    cx: &mut Ctx<'_>,
    raw: Vec<ListenerConfig>,
    shared: &Shared<'_>,
) -> Vec<ListenerSpec> {
    let mut names: Vec<(usize, String)> = Vec::new();
    let mut addresses: Vec<(usize, String, SocketAddr)> = Vec::new();
    let mut out = Vec::new();
    for (i, listener) in raw.into_iter().enumerate() {
        let at = index("listeners", i);
        if let Some(name) = &listener.name {
            match names.iter().find(|(_, seen)| seen == name) {
                Some((first, _)) => cx.error(
                    &join(&at, "name"),
                    format!("duplicate listener name \"{name}\" (also listeners[{first}])"),
                ),
                None => names.push((i, name.clone())),
            }
        }
        let spec = self::listener(cx, &at, listener, shared);
        if let Some(spec) = spec {
            check_conflicts(cx, &join(&at, "address"), spec.address, &addresses);
            addresses.push((i, spec.name.clone(), spec.address));
            out.push(spec);
        }
    }
    out
}

fn listener(
    cx: &mut Ctx<'_>,
    at: &str,
    mut raw: ListenerConfig,
    shared: &Shared<'_>,
) -> Option<ListenerSpec> {
    let name = cx.name(at, raw.name.as_deref());
    let address = cx
        .required(at, "address", raw.address.as_deref())
        .and_then(|a| cx.check(&join(at, "address"), values::listen_address(a)));
    let is_tcp = cx.word(
        at,
        "protocol",
        raw.protocol.as_deref(),
        &[("http", false), ("tcp", true)],
        false,
    );
    let tls = raw
        .tls
        .take()
        .and_then(|tls| downstream_tls(cx, &join(at, "tls"), tls, shared.has_identity));
    let limits = limits::limits(cx, &join(at, "limits"), raw.limits.as_ref(), shared.limits);
    let policies =
        crate::policy::ListenerPolicies::validate(cx, at, &mut raw, is_tcp, tls.as_ref());
    let kind = if is_tcp {
        tcp_kind(cx, at, &raw, shared, policies.authz.clone())
    } else {
        http_kind(cx, at, &mut raw, shared, &policies)
    };
    let trust_forwarded = raw
        .trust_forwarded
        .unwrap_or_else(|| tls.as_ref().is_some_and(|t| t.mode == TlsMode::Mutual));
    Some(ListenerSpec {
        name: name?,
        address: address?,
        tls,
        limits,
        trust_forwarded,
        kind: kind?,
    })
}

fn tcp_kind(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: &ListenerConfig,
    shared: &Shared<'_>,
    authz: Option<crate::policy::authz::AuthzSpec>,
) -> Option<ListenerKind> {
    if raw.routes.is_some() {
        cx.error(
            &join(at, "routes"),
            "a tcp listener has no routes: give cluster instead",
        );
    }
    if raw.trust_forwarded.is_some() {
        cx.error(
            &join(at, "trust_forwarded"),
            "applies to http listeners only",
        );
    }
    let cluster = cx.required(at, "cluster", raw.cluster.as_deref())?;
    cluster_ref(cx, &join(at, "cluster"), cluster, shared.clusters);
    Some(ListenerKind::Tcp {
        cluster: cluster.to_owned(),
        authz,
    })
}

fn http_kind(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: &mut ListenerConfig,
    shared: &Shared<'_>,
    policies: &crate::policy::ListenerPolicies,
) -> Option<ListenerKind> {
    if raw.cluster.is_some() {
        cx.error(
            &join(at, "cluster"),
            "an http listener sends to clusters through routes (use protocol: tcp to forward the raw stream)",
        );
    }
    let routes = match raw.routes.take() {
        Some(routes) if !routes.is_empty() => {
            let listener = raw.name.as_deref().unwrap_or_default();
            route::routes(
                cx,
                &join(at, "routes"),
                listener,
                routes,
                shared.clusters,
                policies,
            )
        }
        _ => {
            cx.error(
                &join(at, "routes"),
                "an http listener needs at least one route",
            );
            Vec::new()
        }
    };
    Some(ListenerKind::Http { routes })
}

fn downstream_tls(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: DownstreamTlsConfig,
    has_identity: bool,
) -> Option<DownstreamTlsSpec> {
    if !has_identity {
        cx.error(
            at,
            "tls needs this proxy's certificate: add an identity section",
        );
    }
    let mode = match raw.mode.as_deref() {
        None => TlsMode::Mutual,
        Some(text) => cx.check(&join(at, "mode"), tls_mode(text))?,
    };
    let allow = allow_list(cx, &join(at, "allow"), mode, raw.allow.unwrap_or_default());
    allow.map(|allow| DownstreamTlsSpec { mode, allow })
}

/// `tls.allow`: who may connect. A mutual listener must say it, even for
/// "anyone of the mesh": an empty list would admit nobody, and before this
/// check it silently admitted every certificate of the trust bundle.
fn allow_list(
    cx: &mut Ctx<'_>,
    at: &str,
    mode: TlsMode,
    raw: Vec<String>,
) -> Option<Vec<SpiffePattern>> {
    match mode {
        TlsMode::Server if !raw.is_empty() => {
            cx.error(at, "allow needs client certificates: use mode: mutual");
        }
        TlsMode::Mutual if raw.is_empty() => cx.error(
            at,
            "required with mode: mutual (an empty list would admit nobody): list the SPIFFE IDs \
             that may connect, or spiffe://<trust-domain>/** for any workload of the trust domain",
        ),
        _ => {}
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, text) in raw.iter().enumerate() {
        if let Some(pattern) = cx.check(&index(at, i), values::spiffe_pattern(text)) {
            out.push(pattern);
        }
    }
    (out.len() == raw.len()).then_some(out)
}

pub(super) fn tls_mode(text: &str) -> Result<TlsMode, ValueError> {
    values::one_of(
        "mode",
        text,
        &[("mutual", TlsMode::Mutual), ("server", TlsMode::Server)],
    )
}

/// A reference to a cluster by name.
pub(super) fn cluster_ref(cx: &mut Ctx<'_>, at: &str, name: &str, clusters: &[String]) {
    if !clusters.iter().any(|c| c == name) {
        let hint = did_you_mean(name, clusters.iter().map(String::as_str));
        cx.error(at, format!("unknown cluster \"{name}\"{hint}"));
    }
}

/// Two sockets that cannot both be bound. Port 0 (any free port) never
/// conflicts; `[::]` takes IPv4 too (Linux dual-stack default).
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let covers = |wide: SocketAddr, other: SocketAddr| {
        wide.ip().is_unspecified() && (wide.is_ipv6() || other.is_ipv4())
    };
    a.ip() == b.ip() || covers(a, b) || covers(b, a)
}

fn check_conflicts(
    cx: &mut Ctx<'_>,
    at: &str,
    address: SocketAddr,
    earlier: &[(usize, String, SocketAddr)],
) {
    if let Some((i, name, other)) = earlier
        .iter()
        .find(|(_, _, other)| conflicts(address, *other))
    {
        cx.error(
            at,
            format!("address {address} conflicts with listeners[{i}] \"{name}\" ({other}): both bind port {}", address.port()),
        );
    }
}

/// The admin socket must not collide with a listener.
pub(super) fn check_admin_address(cx: &mut Ctx<'_>, admin: &AdminSpec, listeners: &[ListenerSpec]) {
    let earlier: Vec<(usize, String, SocketAddr)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i, l.name.clone(), l.address))
        .collect();
    check_conflicts(cx, "admin.address", admin.address, &earlier);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn same_port_conflicts_when_either_side_is_a_wildcard_or_equal() {
        assert!(conflicts(addr("0.0.0.0:80"), addr("127.0.0.1:80")));
        assert!(conflicts(addr("127.0.0.1:80"), addr("127.0.0.1:80")));
        assert!(conflicts(addr("[::]:80"), addr("10.0.0.1:80")));
        assert!(conflicts(addr("[::1]:80"), addr("[::]:80")));
        assert!(!conflicts(addr("127.0.0.1:80"), addr("127.0.0.2:80")));
        assert!(!conflicts(addr("0.0.0.0:80"), addr("[::1]:80")));
        assert!(!conflicts(addr("0.0.0.0:80"), addr("0.0.0.0:81")));
        assert!(!conflicts(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
    }
}
