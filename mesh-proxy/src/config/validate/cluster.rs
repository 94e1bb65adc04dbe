//! `clusters:` — endpoints, discovery, policies, upstream TLS, health.

use std::time::Duration;

use super::super::model::*;
use super::super::raw::{
    ClusterConfig, HealthCheckConfig, OutlierDetectionConfig, UpstreamTlsConfig,
};
use super::listener::tls_mode;
use super::{Ctx, index, join, values};

const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn clusters(
    cx: &mut Ctx<'_>,
    raw: Vec<ClusterConfig>,
    has_identity: bool,
) -> Vec<ClusterSpec> {
    let mut seen: Vec<(usize, String)> = Vec::new();
    let mut out = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let at = index("clusters", i);
        if let Some(name) = &c.name {
            match seen.iter().find(|(_, s)| s == name) {
                Some((first, _)) => cx.error(
                    &join(&at, "name"),
                    format!("duplicate cluster name \"{name}\" (also clusters[{first}])"),
                ),
                None => seen.push((i, name.clone())),
            }
        }
        out.extend(cluster(cx, &at, c, has_identity));
    }
    out
}

fn cluster(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: ClusterConfig,
    has_identity: bool,
) -> Option<ClusterSpec> {
    let name = cx.name(at, raw.name.as_deref());
    let discovery = discovery(cx, at, &raw);
    let is_dns = matches!(discovery, Discovery::Dns { .. });
    let endpoints = endpoints(cx, at, raw.endpoints.as_deref(), is_dns);
    let protocol = cx.word(
        at,
        "protocol",
        raw.protocol.as_deref(),
        &[
            ("http1", UpstreamProtocol::Http1),
            ("http2", UpstreamProtocol::Http2),
        ],
        UpstreamProtocol::Http1,
    );
    let lb = cx.word(
        at,
        "lb",
        raw.lb.as_deref(),
        &[
            ("round_robin", LbPolicy::RoundRobin),
            ("least_request", LbPolicy::LeastRequest),
            ("random", LbPolicy::Random),
        ],
        LbPolicy::RoundRobin,
    );
    let connect_timeout = cx.positive_duration(
        at,
        "connect_timeout",
        raw.connect_timeout.as_ref(),
        DEFAULT_CONNECT_TIMEOUT,
    );
    let idle_timeout = cx.positive_duration(
        at,
        "idle_timeout",
        raw.idle_timeout.as_ref(),
        DEFAULT_IDLE_TIMEOUT,
    );
    let circuit_breaker = circuit_breaker(cx, &join(at, "circuit_breaker"), &raw);
    let tls = raw
        .tls
        .and_then(|t| upstream_tls(cx, &join(at, "tls"), t, has_identity));
    let health_check = raw
        .health_check
        .and_then(|h| health_check(cx, &join(at, "health_check"), h));
    let outlier_detection = raw
        .outlier_detection
        .map(|o| outlier_detection(cx, &join(at, "outlier_detection"), o));
    Some(ClusterSpec {
        name: name?,
        endpoints: endpoints?,
        discovery,
        protocol,
        lb,
        connect_timeout,
        idle_timeout,
        tls,
        circuit_breaker,
        health_check,
        outlier_detection,
    })
}

fn discovery(cx: &mut Ctx<'_>, at: &str, raw: &ClusterConfig) -> Discovery {
    // An unreadable word counts as dns so host names do not cause a second error.
    let is_dns = match raw.discovery.as_deref() {
        None => false,
        Some(text) => {
            let options = [("static", false), ("dns", true)];
            cx.check(
                &join(at, "discovery"),
                values::one_of("discovery", text, &options),
            )
            .unwrap_or(true)
        }
    };
    if !is_dns {
        if raw.dns_refresh.is_some() {
            cx.error(&join(at, "dns_refresh"), "applies only with discovery: dns");
        }
        return Discovery::Static;
    }
    let refresh = cx.positive_duration(
        at,
        "dns_refresh",
        raw.dns_refresh.as_ref(),
        DEFAULT_DNS_REFRESH,
    );
    Discovery::Dns { refresh }
}

fn endpoints(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: Option<&[String]>,
    dns: bool,
) -> Option<Vec<EndpointAddr>> {
    let raw = cx.required(at, "endpoints", raw)?;
    let at = join(at, "endpoints");
    if raw.is_empty() {
        cx.error(&at, "needs at least one host:port");
        return None;
    }
    let mut out: Vec<EndpointAddr> = Vec::new();
    let mut ok = true;
    for (i, text) in raw.iter().enumerate() {
        match cx.check(&index(&at, i), values::endpoint(text.trim(), dns)) {
            Some(ep) if out.contains(&ep) => {
                cx.error(&index(&at, i), format!("duplicate endpoint \"{text}\""));
                ok = false;
            }
            Some(ep) => out.push(ep),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn upstream_tls(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: UpstreamTlsConfig,
    has_identity: bool,
) -> Option<UpstreamTlsSpec> {
    let trust = match raw.trust.as_deref() {
        None => UpstreamTrust::Mesh,
        Some(text) => {
            let options = [
                ("mesh", UpstreamTrust::Mesh),
                ("system", UpstreamTrust::System),
            ];
            cx.check(&join(at, "trust"), values::one_of("trust", text, &options))?
        }
    };
    let mode = match raw.mode.as_deref() {
        // External HTTPS (system roots) cannot expect our mesh certificate.
        None if trust == UpstreamTrust::System => TlsMode::Server,
        None => TlsMode::Mutual,
        Some(text) => cx.check(&join(at, "mode"), tls_mode(text))?,
    };
    if !has_identity && (mode == TlsMode::Mutual || trust == UpstreamTrust::Mesh) {
        cx.error(at, "mesh tls needs this proxy's identity: add an identity section (or use trust: system, mode: server)");
    }
    let peer = match raw.peer {
        Some(peer) => Some(peer).filter(|p| {
            cx.check(&join(at, "peer"), values::spiffe_id(p, false))
                .is_some()
        }),
        // Without a peer, any certificate the mesh CA ever issued would do:
        // every workload could answer for this cluster.
        None if trust == UpstreamTrust::Mesh => {
            let why = match mode {
                TlsMode::Mutual => "required with mode: mutual",
                TlsMode::Server => "required with trust: mesh",
            };
            cx.error(
                &join(at, "peer"),
                format!("{why}: the SPIFFE ID the upstream must present (without one, any workload certificate of the mesh would be accepted)"),
            );
            None
        }
        None => None,
    };
    let sni = match raw.sni {
        Some(sni) if !values::is_hostname(&sni) => {
            cx.error(
                &join(at, "sni"),
                format!("invalid sni \"{sni}\": expected a DNS name"),
            );
            None
        }
        other => other,
    };
    Some(UpstreamTlsSpec {
        mode,
        peer,
        sni,
        trust,
    })
}

fn circuit_breaker(cx: &mut Ctx<'_>, at: &str, raw: &ClusterConfig) -> CircuitBreakerSpec {
    let defaults = CircuitBreakerSpec::default();
    let Some(cb) = &raw.circuit_breaker else {
        return defaults;
    };
    CircuitBreakerSpec {
        max_connections: cx.at_least(
            at,
            "max_connections",
            cb.max_connections,
            1,
            defaults.max_connections,
        ),
        max_pending_requests: cx.at_least(
            at,
            "max_pending_requests",
            cb.max_pending_requests,
            1,
            defaults.max_pending_requests,
        ),
        max_requests: cx.at_least(
            at,
            "max_requests",
            cb.max_requests,
            1,
            defaults.max_requests,
        ),
        // 0 is meaningful: no retries at all for this cluster.
        max_retries: cb.max_retries.unwrap_or(defaults.max_retries),
    }
}

fn health_check(cx: &mut Ctx<'_>, at: &str, raw: HealthCheckConfig) -> Option<HealthCheckSpec> {
    let path = cx.required(at, "path", raw.path.as_ref()).cloned();
    if let Some(p) = path.as_deref().filter(|p| !p.starts_with('/')) {
        cx.error(
            &join(at, "path"),
            format!("invalid path \"{p}\": must start with /"),
        );
    }
    let interval = cx.positive_duration(
        at,
        "interval",
        raw.interval.as_ref(),
        Duration::from_secs(5),
    );
    let timeout = cx.positive_duration(at, "timeout", raw.timeout.as_ref(), Duration::from_secs(1));
    if timeout >= interval {
        cx.error(
            &join(at, "timeout"),
            format!(
                "timeout {} must be shorter than interval {}",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
        );
    }
    Some(HealthCheckSpec {
        path: path?,
        interval,
        timeout,
        unhealthy_threshold: cx.at_least(at, "unhealthy_threshold", raw.unhealthy_threshold, 1, 3),
        healthy_threshold: cx.at_least(at, "healthy_threshold", raw.healthy_threshold, 1, 2),
    })
}

fn outlier_detection(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: OutlierDetectionConfig,
) -> OutlierDetectionSpec {
    let percent = raw.max_ejection_percent.unwrap_or(50);
    if percent > 100 {
        cx.error(
            &join(at, "max_ejection_percent"),
            format!("{percent} is out of range: expected 0 to 100"),
        );
    }
    OutlierDetectionSpec {
        consecutive_5xx: cx.at_least(at, "consecutive_5xx", raw.consecutive_5xx, 1, 5),
        consecutive_gateway_failure: cx.at_least(
            at,
            "consecutive_gateway_failure",
            raw.consecutive_gateway_failure,
            1,
            5,
        ),
        base_ejection_time: cx.positive_duration(
            at,
            "base_ejection_time",
            raw.base_ejection_time.as_ref(),
            Duration::from_secs(30),
        ),
        max_ejection_percent: percent,
    }
}
