//! `/config_dump`: the effective (validated, defaulted) config as JSON.
//!
//! Secrets are redacted: files holding keys, tokens and certificates are
//! shown by path only (never read), header values of credential headers a
//! route adds are replaced, and credentials in URLs are removed. Durations
//! print as humantime strings, regexes as their source.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::config::*;

const REDACTED: &str = "[redacted]";

fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Header values that carry credentials are never shown.
fn is_secret_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-api-key"
    ) || name.as_str().contains("token")
        || name.as_str().contains("secret")
}

fn header_pairs(pairs: &[(HeaderName, HeaderValue)]) -> Value {
    let map: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(n, v)| {
            let shown = if is_secret_header(n) {
                REDACTED.to_owned()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (n.as_str().to_owned(), Value::String(shown))
        })
        .collect();
    Value::Object(map)
}

fn mutations(m: &HeaderMutations) -> Value {
    json!({
        "add": header_pairs(&m.add),
        "remove": m.remove.iter().map(HeaderName::as_str).collect::<Vec<_>>(),
    })
}

/// `scheme://user:pass@host/...` → `scheme://[redacted]@host/...`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

fn limits(l: &LimitsSpec) -> Value {
    json!({
        "max_request_headers_kb": l.max_request_headers_kb,
        "max_request_headers_count": l.max_request_headers_count,
        "max_uri_kb": l.max_uri_kb,
        "max_request_body_mb": l.max_request_body_mb,
        "header_read_timeout": dur(l.header_read_timeout),
        "body_idle_timeout": dur(l.body_idle_timeout),
        "stream_idle_timeout": dur(l.stream_idle_timeout),
        "idle_timeout": dur(l.idle_timeout),
        "max_connections": l.max_connections,
        "http2_max_concurrent_streams": l.http2_max_concurrent_streams,
        "buffer_kb": l.buffer_kb,
        "headers_with_underscores": l.headers_with_underscores.as_str(),
    })
}

fn tls_mode(m: TlsMode) -> &'static str {
    match m {
        TlsMode::Mutual => "mutual",
        TlsMode::Server => "server",
    }
}

fn identity(spec: &IdentitySpec) -> Value {
    match spec {
        IdentitySpec::Files {
            cert,
            key,
            trust_bundle,
        } => json!({
            "cert": cert.display().to_string(),
            "key": key.display().to_string(),
            "trust_bundle": trust_bundle.display().to_string(),
        }),
        IdentitySpec::Ca {
            url,
            trust_bundle,
            token_file,
            spiffe_id,
            ttl,
        } => json!({ "ca": {
            "url": redact_url(&url.to_string()),
            "trust_bundle": trust_bundle.display().to_string(),
            "token_file": token_file.display().to_string(),
            "spiffe_id": spiffe_id,
            "ttl": dur(*ttl),
        }}),
    }
}

fn route(r: &RouteSpec) -> Value {
    let m = &r.matcher;
    let mut matcher = serde_json::Map::new();
    match &m.host {
        Some(HostMatch::Exact(h)) => drop(matcher.insert("host".into(), json!(h))),
        Some(HostMatch::Suffix(s)) => drop(matcher.insert("host".into(), json!(format!("*{s}")))),
        None => {}
    }
    let (kind, path) = match &m.path {
        PathMatch::Prefix(p) => ("prefix", p.clone()),
        PathMatch::Exact(p) => ("path", p.clone()),
        PathMatch::Regex(re) => ("regex", re.as_str().to_owned()),
    };
    matcher.insert(kind.into(), json!(path));
    if !m.headers.is_empty() {
        matcher.insert("headers".into(), header_pairs(&m.headers));
    }
    if !m.methods.is_empty() {
        let methods: Vec<&str> = m.methods.iter().map(http::Method::as_str).collect();
        matcher.insert("methods".into(), json!(methods));
    }
    let mut out = json!({
        "match": matcher,
        "timeout": r.timeout.map_or_else(|| "0s".to_owned(), dur),
        "request_headers": mutations(&r.request_headers),
        "response_headers": mutations(&r.response_headers),
    });
    let action = match &r.action {
        RouteAction::Cluster(c) => ("cluster", json!(c)),
        RouteAction::Weighted(w) => (
            "weighted",
            w.iter()
                .map(|w| json!({ "cluster": w.cluster, "weight": w.weight }))
                .collect(),
        ),
        RouteAction::Direct { status, body } => (
            "direct_response",
            json!({ "status": status.as_u16(), "body": String::from_utf8_lossy(body) }),
        ),
    };
    out[action.0] = action.1;
    if let Some(retry) = &r.retry {
        out["retry"] = json!({
            "attempts": retry.attempts,
            "on": retry_on(&retry.on),
            "retriable_status_codes": retry.retriable_status_codes.iter().map(|s| s.as_u16()).collect::<Vec<_>>(),
            "per_try_timeout": retry.per_try_timeout.map(dur),
            "backoff": { "base": dur(retry.backoff.base), "max": dur(retry.backoff.max) },
            "budget": { "ratio": retry.budget.ratio, "min_per_second": retry.budget.min_per_second },
            "methods": retry.methods.iter().map(http::Method::as_str).collect::<Vec<_>>(),
        });
    }
    if let Some(p) = &r.rewrite_prefix {
        out["rewrite_prefix"] = json!(p);
    }
    if let Some(h) = &r.host_rewrite {
        out["host_rewrite"] = json!(String::from_utf8_lossy(h.as_bytes()));
    }
    if let Some(rl) = &r.policies.rate_limit {
        out["rate_limit"] =
            json!({ "requests_per_second": rl.requests_per_second, "burst": rl.burst });
    }
    if let Some(fault) = &r.policies.fault {
        out["fault"] = json!(fault);
        if !fault.headers.is_empty() {
            out["fault"]["headers"] = header_pairs(&fault.headers);
        }
    }
    out
}

fn retry_on(on: &RetryOn) -> Vec<&'static str> {
    [
        (on.connect_failure, "connect-failure"),
        (on.refused_stream, "refused-stream"),
        (on.reset, "reset"),
        (on.gateway_error, "gateway-error"),
        (on.server_error, "5xx"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect()
}

fn listener(l: &ListenerSpec) -> Value {
    let mut out = json!({
        "name": l.name,
        "address": l.address.to_string(),
        "trust_forwarded": l.trust_forwarded,
        "limits": limits(&l.limits),
    });
    match &l.kind {
        ListenerKind::Http { routes } => {
            out["protocol"] = json!("http");
            out["routes"] = routes.iter().map(route).collect();
        }
        ListenerKind::Tcp { cluster } => {
            out["protocol"] = json!("tcp");
            out["cluster"] = json!(cluster);
        }
    }
    if let Some(tls) = &l.tls {
        out["tls"] = json!({ "mode": tls_mode(tls.mode), "allow": tls.allow });
    }
    out
}

fn cluster(c: &ClusterSpec) -> Value {
    let cb = c.circuit_breaker;
    let mut out = json!({
        "name": c.name,
        "endpoints": c.endpoints.iter().map(|e| {
            if e.host.contains(':') { format!("[{}]:{}", e.host, e.port) } else { format!("{}:{}", e.host, e.port) }
        }).collect::<Vec<_>>(),
        "discovery": match c.discovery { Discovery::Static => "static", Discovery::Dns { .. } => "dns" },
        "protocol": match c.protocol { UpstreamProtocol::Http1 => "http1", UpstreamProtocol::Http2 => "http2" },
        "lb": match c.lb { LbPolicy::RoundRobin => "round_robin", LbPolicy::LeastRequest => "least_request", LbPolicy::Random => "random" },
        "connect_timeout": dur(c.connect_timeout),
        "idle_timeout": dur(c.idle_timeout),
        "circuit_breaker": {
            "max_connections": cb.max_connections,
            "max_pending_requests": cb.max_pending_requests,
            "max_requests": cb.max_requests,
            "max_retries": cb.max_retries,
        },
    });
    if let Discovery::Dns { refresh } = c.discovery {
        out["dns_refresh"] = json!(dur(refresh));
    }
    if let Some(tls) = &c.tls {
        out["tls"] = json!({
            "mode": tls_mode(tls.mode),
            "peer": tls.peer,
            "sni": tls.sni,
            "trust": match tls.trust { UpstreamTrust::Mesh => "mesh", UpstreamTrust::System => "system" },
        });
    }
    if let Some(hc) = &c.health_check {
        out["health_check"] = json!({
            "path": hc.path,
            "interval": dur(hc.interval),
            "timeout": dur(hc.timeout),
            "unhealthy_threshold": hc.unhealthy_threshold,
            "healthy_threshold": hc.healthy_threshold,
        });
    }
    if let Some(od) = &c.outlier_detection {
        out["outlier_detection"] = json!({
            "consecutive_5xx": od.consecutive_5xx,
            "consecutive_gateway_failure": od.consecutive_gateway_failure,
            "base_ejection_time": dur(od.base_ejection_time),
            "max_ejection_percent": od.max_ejection_percent,
        });
    }
    out
}

pub(super) fn dump(config: &Config) -> Value {
    let tracing = config.tracing.as_ref().map(|t| {
        json!({
            "otlp_endpoint": t.otlp_endpoint.as_deref().map(redact_url),
            "protocol": match t.protocol { OtlpProtocol::Grpc => "grpc", OtlpProtocol::Http => "http" },
            "sampling": t.sampling,
            "propagation": t.propagation.iter().map(|p| match p { Propagation::W3c => "w3c", Propagation::B3 => "b3" }).collect::<Vec<_>>(),
        })
    });
    let access_log: Vec<Value> = config
        .access_log
        .iter()
        .map(|a| {
            let path = match &a.path {
                LogTarget::Stdout => "stdout".to_owned(),
                LogTarget::Stderr => "stderr".to_owned(),
                LogTarget::File(p) => p.display().to_string(),
            };
            let format = match &a.format {
                crate::config::LogFormat::Json => "json".to_owned(),
                crate::config::LogFormat::Text => "text".to_owned(),
                crate::config::LogFormat::Custom(f) => f.clone(),
            };
            json!({ "path": path, "format": format })
        })
        .collect();
    json!({
        "node": { "name": config.node.name, "service": config.node.service },
        "admin": { "address": config.admin.address.to_string() },
        "identity": config.identity.as_ref().map(identity),
        "listeners": config.listeners.iter().map(listener).collect::<Vec<_>>(),
        "clusters": config.clusters.iter().map(cluster).collect::<Vec<_>>(),
        "tracing": tracing,
        "access_log": access_log,
        "limits": limits(&config.limits),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_removed() {
        assert_eq!(
            redact_url("https://user:pw@collector:4318/v1"),
            "https://[redacted]@collector:4318/v1"
        );
        assert_eq!(redact_url("http://jaeger:4318"), "http://jaeger:4318");
        assert_eq!(redact_url("http://h/p@q"), "http://h/p@q");
    }

    #[test]
    fn credential_headers_added_by_routes_are_redacted() {
        let pairs = vec![
            (
                HeaderName::from_static("authorization"),
                HeaderValue::from_static("Bearer abc"),
            ),
            (
                HeaderName::from_static("x-env"),
                HeaderValue::from_static("prod"),
            ),
        ];
        let v = header_pairs(&pairs);
        assert_eq!(v["authorization"], REDACTED);
        assert_eq!(v["x-env"], "prod");
    }

    #[test]
    fn a_route_fault_is_dumped_with_credential_headers_redacted() {
        let yaml = "listeners:\n  - name: web\n    address: 127.0.0.1:8000\n    routes:\n      - cluster: app\n        fault: { delay: { fixed: 250ms, percent: 10 }, abort: { status: 503 }, from: [spiffe://mesh.local/web], headers: { authorization: secret, x-chaos: on } }\nclusters:\n  - { name: app, endpoints: [127.0.0.1:9000] }\n";
        let config =
            crate::config::load_str(yaml, "proxy.yaml", std::path::Path::new("/nonexistent"))
                .expect("valid");
        let fault = &dump(&config)["listeners"][0]["routes"][0]["fault"];
        assert_eq!(fault["delay"], json!({ "fixed": "250ms", "percent": 10.0 }));
        assert_eq!(fault["abort"], json!({ "status": 503, "percent": 100.0 }));
        assert_eq!(fault["from"], json!(["spiffe://mesh.local/web"]));
        assert_eq!(fault["headers"]["authorization"], REDACTED);
        assert_eq!(fault["headers"]["x-chaos"], "on");
    }
}
