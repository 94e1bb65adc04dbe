//! Cluster checks: names, endpoints, discovery, policies, TLS, health.

use std::time::Duration;

use super::super::model::*;
use super::*;

const C: &str = "clusters[2]";

fn cluster_ok(cluster: &str) -> ClusterSpec {
    load_ok(&with_cluster(cluster)).clusters[2].clone()
}

#[track_caller]
fn cluster_error(cluster: &str, key: &str, part: &str) {
    let path = if key.is_empty() {
        C.to_owned()
    } else {
        format!("{C}.{key}")
    };
    assert_error(&with_cluster(cluster), &path, part);
}

fn cluster_with_identity(cluster: &str) -> Result<Config, ConfigErrors> {
    let dir = super::example::cert_dir();
    let yaml = format!(
        "identity: {{cert: certs/orders.crt, key: certs/orders.key, trust_bundle: certs/ca.crt}}\n{}",
        with_cluster(cluster)
    );
    load_in(&yaml, dir.path(), &Env::default())
}

#[test]
fn duplicate_cluster_names_are_refused() {
    cluster_error(
        "{name: app, endpoints: [127.0.0.1:9100]}",
        "name",
        "duplicate cluster name \"app\" (also clusters[0])",
    );
}

#[test]
fn endpoints_are_required_and_not_empty() {
    cluster_error("{name: db}", "endpoints", "required key is missing");
    cluster_error(
        "{name: db, endpoints: []}",
        "endpoints",
        "needs at least one host:port",
    );
}

#[test]
fn static_endpoints_must_be_ip_literals() {
    cluster_error(
        "{name: db, endpoints: [db.internal:5432]}",
        "endpoints[0]",
        "\"db.internal\" is not an IP address; use discovery: dns to resolve host names",
    );
}

#[test]
fn dns_endpoints_take_host_names_and_refresh_every_5s() {
    let cluster =
        cluster_ok("{name: db, discovery: dns, endpoints: [db.internal:5432, \"[::1]:5433\"]}");
    assert_eq!(
        cluster.discovery,
        Discovery::Dns {
            refresh: Duration::from_secs(5)
        }
    );
    assert_eq!(
        cluster.endpoints[0],
        EndpointAddr {
            host: "db.internal".into(),
            port: 5432
        }
    );
    assert_eq!(
        cluster.endpoints[1],
        EndpointAddr {
            host: "::1".into(),
            port: 5433
        }
    );
    let cluster = cluster_ok("{name: db, discovery: dns, dns_refresh: 30s, endpoints: [db:5432]}");
    assert_eq!(
        cluster.discovery,
        Discovery::Dns {
            refresh: Duration::from_secs(30)
        }
    );
}

#[test]
fn dns_refresh_needs_dns_discovery() {
    cluster_error(
        "{name: db, dns_refresh: 5s, endpoints: [127.0.0.1:5432]}",
        "dns_refresh",
        "applies only with discovery: dns",
    );
}

#[test]
fn bad_endpoints_are_reported_each() {
    let errors = errors(&with_cluster(
        "{name: db, endpoints: [127.0.0.1, \"127.0.0.1:99999\", 127.0.0.1:1, 127.0.0.1:1]}",
    ));
    assert_error_in(
        &errors,
        "clusters[2].endpoints[0]",
        "invalid endpoint \"127.0.0.1\": expected host:port",
    );
    assert_error_in(
        &errors,
        "clusters[2].endpoints[1]",
        "invalid port \"99999\"",
    );
    assert_error_in(
        &errors,
        "clusters[2].endpoints[3]",
        "duplicate endpoint \"127.0.0.1:1\"",
    );
}

#[test]
fn enum_words_suggest_the_closest() {
    cluster_error(
        "{name: db, lb: least_requests, endpoints: [127.0.0.1:1]}",
        "lb",
        "invalid lb \"least_requests\" (did you mean \"least_request\"?)",
    );
    cluster_error(
        "{name: db, protocol: http3, endpoints: [127.0.0.1:1]}",
        "protocol",
        "invalid protocol \"http3\" (did you mean \"http1\"?)",
    );
    cluster_error(
        "{name: db, discovery: eds, endpoints: [127.0.0.1:1]}",
        "discovery",
        "invalid discovery \"eds\": expected one of static, dns",
    );
}

#[test]
fn cluster_defaults_when_keys_are_omitted() {
    let cluster = cluster_ok("{name: db, endpoints: [127.0.0.1:5432]}");
    assert_eq!(cluster.discovery, Discovery::Static);
    assert_eq!(cluster.protocol, UpstreamProtocol::Http1);
    assert_eq!(cluster.lb, LbPolicy::RoundRobin);
    assert_eq!(cluster.connect_timeout, Duration::from_secs(1));
    assert_eq!(cluster.idle_timeout, Duration::from_secs(60));
    assert!(
        cluster.tls.is_none()
            && cluster.health_check.is_none()
            && cluster.outlier_detection.is_none()
    );
    let cb = cluster.circuit_breaker;
    assert_eq!(
        (
            cb.max_connections,
            cb.max_pending_requests,
            cb.max_requests,
            cb.max_retries
        ),
        (1024, 1024, 1024, 3)
    );
}

#[test]
fn cluster_timeouts_are_positive_durations() {
    cluster_error(
        "{name: db, connect_timeout: 1 sec please, endpoints: [127.0.0.1:1]}",
        "connect_timeout",
        "invalid duration",
    );
    cluster_error(
        "{name: db, idle_timeout: 0, endpoints: [127.0.0.1:1]}",
        "idle_timeout",
        "must be greater than 0",
    );
}

#[test]
fn upstream_tls_peer_must_be_a_spiffe_id() {
    let errors =
        cluster_with_identity("{name: db, endpoints: [127.0.0.1:1], tls: {peer: db.internal}}")
            .unwrap_err()
            .errors;
    assert_error_in(
        &errors,
        "clusters[2].tls.peer",
        "invalid SPIFFE ID \"db.internal\"",
    );
}

#[test]
fn upstream_mutual_tls_with_mesh_trust_requires_a_peer() {
    let errors = cluster_with_identity("{name: db, endpoints: [127.0.0.1:1], tls: {mode: mutual}}")
        .unwrap_err()
        .errors;
    assert_error_in(
        &errors,
        "clusters[2].tls.peer",
        "required with mode: mutual",
    );
}

#[test]
fn upstream_mesh_trust_requires_a_peer_in_server_mode_too() {
    for tls in ["{mode: server}", "{mode: server, trust: mesh}"] {
        let errors = cluster_with_identity(&format!(
            "{{name: db, endpoints: [127.0.0.1:1], tls: {tls}}}"
        ))
        .unwrap_err()
        .errors;
        assert_eq!(errors.len(), 1, "{tls}: {errors:?}");
        assert_error_in(&errors, "clusters[2].tls.peer", "required with trust: mesh");
        assert_error_in(&errors, "clusters[2].tls.peer", "any workload certificate");
    }
}

#[test]
fn upstream_tls_words_are_checked() {
    let errors = cluster_with_identity(
        "{name: db, endpoints: [127.0.0.1:1], tls: {mode: server, trust: sytem}}",
    )
    .unwrap_err()
    .errors;
    assert_error_in(
        &errors,
        "clusters[2].tls.trust",
        "invalid trust \"sytem\" (did you mean \"system\"?)",
    );
    let errors = cluster_with_identity("{name: db, endpoints: [127.0.0.1:1], tls: {mode: both}}")
        .unwrap_err()
        .errors;
    assert_error_in(&errors, "clusters[2].tls.mode", "invalid mode \"both\"");
}

#[test]
fn upstream_mesh_tls_requires_an_identity() {
    cluster_error(
        "{name: db, endpoints: [127.0.0.1:1], tls: {peer: \"spiffe://mesh.local/db\"}}",
        "tls",
        "add an identity section",
    );
}

#[test]
fn system_trust_defaults_to_server_mode_without_identity() {
    let cluster = cluster_ok(
        "{name: ext, discovery: dns, endpoints: [api.example.com:443], tls: {trust: system, sni: api.example.com}}",
    );
    let tls = cluster.tls.unwrap();
    assert_eq!(
        (tls.mode, tls.trust),
        (TlsMode::Server, UpstreamTrust::System)
    );
    assert_eq!(tls.peer, None);
    assert_eq!(tls.sni.as_deref(), Some("api.example.com"));
    cluster_error(
        "{name: ext, endpoints: [127.0.0.1:1], tls: {trust: system, sni: \"not a name\"}}",
        "tls.sni",
        "invalid sni \"not a name\"",
    );
}

#[test]
fn circuit_breaker_limits_are_positive_but_retries_may_be_zero() {
    cluster_error(
        "{name: db, endpoints: [127.0.0.1:1], circuit_breaker: {max_connections: 0}}",
        "circuit_breaker.max_connections",
        "0 is too small",
    );
    let cluster = cluster_ok(
        "{name: db, endpoints: [127.0.0.1:1], circuit_breaker: {max_retries: 0, max_requests: 50}}",
    );
    assert_eq!(cluster.circuit_breaker.max_retries, 0);
    assert_eq!(cluster.circuit_breaker.max_requests, 50);
    assert_eq!(cluster.circuit_breaker.max_connections, 1024);
}

#[test]
fn health_check_path_and_timing_are_checked() {
    cluster_error(
        "{name: db, endpoints: [127.0.0.1:1], health_check: {path: health}}",
        "health_check.path",
        "invalid path \"health\": must start with /",
    );
    cluster_error(
        "{name: db, endpoints: [127.0.0.1:1], health_check: {path: /h, interval: 1s, timeout: 2s}}",
        "health_check.timeout",
        "timeout 2s must be shorter than interval 1s",
    );
    cluster_error(
        "{name: db, endpoints: [127.0.0.1:1], health_check: {interval: 1s}}",
        "health_check.path",
        "required key is missing",
    );
    cluster_error(
        "{name: db, endpoints: [127.0.0.1:1], health_check: {path: /h, healthy_threshold: 0}}",
        "health_check.healthy_threshold",
        "too small",
    );
}

#[test]
fn health_check_defaults() {
    let hc = cluster_ok("{name: db, endpoints: [127.0.0.1:1], health_check: {path: /health}}")
        .health_check
        .unwrap();
    assert_eq!(
        (hc.interval, hc.timeout),
        (Duration::from_secs(5), Duration::from_secs(1))
    );
    assert_eq!((hc.unhealthy_threshold, hc.healthy_threshold), (3, 2));
}

#[test]
fn outlier_detection_percent_is_at_most_100() {
    cluster_error(
        "{name: db, endpoints: [127.0.0.1:1], outlier_detection: {max_ejection_percent: 150}}",
        "outlier_detection.max_ejection_percent",
        "150 is out of range",
    );
    cluster_error(
        "{name: db, endpoints: [127.0.0.1:1], outlier_detection: {base_ejection_time: forever}}",
        "outlier_detection.base_ejection_time",
        "invalid duration \"forever\"",
    );
}

#[test]
fn outlier_detection_defaults() {
    let od = cluster_ok("{name: db, endpoints: [127.0.0.1:1], outlier_detection: {}}")
        .outlier_detection
        .unwrap();
    assert_eq!((od.consecutive_5xx, od.consecutive_gateway_failure), (5, 5));
    assert_eq!(od.base_ejection_time, Duration::from_secs(30));
    assert_eq!(od.max_ejection_percent, 50);
}
