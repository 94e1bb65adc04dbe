//! SPEC §3's full example validates and yields the documented values.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};

use super::super::model::*;
use super::super::validate::Env;
use super::load_in;

/// SPEC §3 "Configuration (YAML)", verbatim.
pub(super) const SPEC_EXAMPLE: &str = r#"
node:
  name: orders-sidecar          # names this proxy in logs, metrics, traces
  service: orders               # service.name in traces (default: name)

admin:
  address: 127.0.0.1:9901       # loopback by default; never 0.0.0.0 unless written

identity:                       # this workload's certificate, for mTLS
  # either files (watched; a changed file is reloaded without dropping connections)
  cert: certs/orders.crt        # PEM, leaf first then intermediates
  key: certs/orders.key
  trust_bundle: certs/ca.crt
  # or a CA to obtain and renew it from (then cert/key/trust_bundle are not given)
  # ca:
  #   url: https://ca:8443
  #   trust_bundle: /etc/mesh/ca.crt      # verifies the CA server; becomes the mesh bundle
  #   token_file: /run/secrets/orders.token
  #   spiffe_id: spiffe://mesh.local/orders
  #   ttl: 24h

listeners:
  - name: ingress               # public side of a sidecar
    address: 0.0.0.0:15006
    protocol: http              # http (HTTP/1.1 and HTTP/2, detected) | tcp
    tls:
      mode: mutual              # mutual | server ; no tls key = plaintext
      allow:                    # identities allowed to call; '*' globs a path segment
        - spiffe://mesh.local/edge
        - spiffe://mesh.local/web
    routes:
      - match: { prefix: / }
        cluster: local_app

  - name: egress                # the app calls other services through this
    address: 127.0.0.1:15001
    protocol: http
    routes:
      - match:
          host: payments        # exact, or *.suffix; the port is ignored
          prefix: /             # one of prefix | path (exact) | regex
          headers: { x-canary: "true" }   # optional, exact values
          methods: [GET, POST]  # optional
        cluster: payments       # or: weighted: [{cluster: a, weight: 90}, {cluster: b, weight: 10}]
        timeout: 15s            # whole request including retries (default 15s; 0 = none)
        retry:
          attempts: 2           # retries after the first try (default 0 = no retries)
          on: [connect-failure, refused-stream, reset, gateway-error, 5xx]
          per_try_timeout: 1s
          backoff: { base: 25ms, max: 250ms }   # exponential, full jitter
          budget: { ratio: 0.2, min_per_second: 10 } # retries may add at most 20% load (+10/s)
          methods: [GET, HEAD, OPTIONS, PUT, DELETE]  # default: idempotent methods only
        rewrite_prefix: /       # optional
        host_rewrite: payments.internal        # optional
        request_headers:  { add: { x-env: prod }, remove: [x-debug] }
        response_headers: { add: { x-served-by: orders }, remove: [server] }
        rate_limit: { requests_per_second: 100, burst: 200 }   # local token bucket, 429 when empty
      - match: { path: /healthz }
        direct_response: { status: 200, body: "ok\n" }

  - name: postgres-in           # raw TCP (any protocol: PostgreSQL, Redis, ...)
    address: 0.0.0.0:15432
    protocol: tcp
    tls: { mode: mutual, allow: [spiffe://mesh.local/frontend-proxy] }
    cluster: postgres

clusters:
  - name: local_app
    endpoints: [127.0.0.1:8080]
  - name: payments
    endpoints: [payments:15006]  # host:port list
    discovery: dns              # static (default) | dns: re-resolve every dns_refresh, every address is an endpoint
    dns_refresh: 5s
    protocol: http1             # http1 (default) | http2 (h2c, or h2 via ALPN when tls)
    lb: least_request           # round_robin (default) | least_request (power of two choices) | random
    connect_timeout: 1s
    idle_timeout: 60s           # pooled upstream connections
    tls:                        # upstream TLS origination
      mode: mutual              # mutual: present our identity | server: verify the server only
      peer: spiffe://mesh.local/payments   # required SPIFFE ID of the upstream
      sni: payments             # optional
      # trust: system           # use the OS roots (for external HTTPS) instead of the mesh bundle
    circuit_breaker:
      max_connections: 1024
      max_pending_requests: 1024
      max_requests: 1024
      max_retries: 3            # concurrent retries across the cluster
    health_check:               # active; an endpoint starts healthy
      path: /health
      interval: 5s
      timeout: 1s
      unhealthy_threshold: 3
      healthy_threshold: 2
    outlier_detection:          # passive
      consecutive_5xx: 5
      consecutive_gateway_failure: 5
      base_ejection_time: 30s   # grows with each ejection
      max_ejection_percent: 50

tracing:
  otlp_endpoint: http://jaeger:4317   # default from OTEL_EXPORTER_OTLP_ENDPOINT; absent = no export
  protocol: grpc                # grpc (4317) | http (4318, /v1/traces)
  sampling: 1.0                 # ratio for traces started here; an incoming sampled flag is obeyed
  propagation: [w3c, b3]        # headers read and written

access_log:
  - path: stdout                # stdout | stderr | a file path
    format: json                # json | text | an Envoy-style format string
"#;

/// The SPEC's example also names cluster `postgres`, which it never defines.
fn spec_example_with_postgres() -> String {
    SPEC_EXAMPLE.replace(
        "clusters:\n",
        "clusters:\n  - name: postgres\n    endpoints: [127.0.0.1:5432]\n",
    )
}

pub(super) fn cert_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    for name in ["orders.crt", "orders.key", "ca.crt"] {
        std::fs::write(dir.path().join("certs").join(name), "placeholder\n").unwrap();
    }
    dir
}

#[test]
fn spec_example_reports_its_undefined_postgres_cluster() {
    let dir = cert_dir();
    let errors = load_in(SPEC_EXAMPLE, dir.path(), &Env::default()).unwrap_err();
    assert_eq!(errors.errors.len(), 1, "{errors}");
    assert_eq!(errors.errors[0].path, "listeners[2].cluster");
    assert_eq!(errors.errors[0].message, "unknown cluster \"postgres\"");
}

#[test]
fn spec_example_validates_to_the_documented_values() {
    let dir = cert_dir();
    let yaml = spec_example_with_postgres();
    let config = load_in(&yaml, dir.path(), &Env::default()).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(config.node.name, "orders-sidecar");
    assert_eq!(config.node.service, "orders");
    assert_eq!(
        config.admin.address,
        "127.0.0.1:9901".parse::<SocketAddr>().unwrap()
    );
    let Some(IdentitySpec::Files {
        cert,
        key,
        trust_bundle,
    }) = &config.identity
    else {
        panic!("identity: {:?}", config.identity);
    };
    assert_eq!(cert, &dir.path().join("certs/orders.crt"));
    assert_eq!(key, &dir.path().join("certs/orders.key"));
    assert_eq!(trust_bundle, &dir.path().join("certs/ca.crt"));
    assert_eq!(config.base_dir, dir.path());

    assert_eq!(config.listeners.len(), 3);
    let ingress = &config.listeners[0];
    assert_eq!(
        ingress.address,
        "0.0.0.0:15006".parse::<SocketAddr>().unwrap()
    );
    let tls = ingress.tls.as_ref().unwrap();
    assert_eq!(tls.mode, TlsMode::Mutual);
    let allow: Vec<&str> = tls.allow.iter().map(|p| p.as_str()).collect();
    assert_eq!(
        allow,
        ["spiffe://mesh.local/edge", "spiffe://mesh.local/web"]
    );
    assert!(
        ingress.trust_forwarded,
        "mutual listeners trust x-forwarded-*"
    );
    assert_eq!(ingress.limits, LimitsSpec::default());

    let egress = &config.listeners[1];
    assert!(!egress.trust_forwarded);
    let ListenerKind::Http { routes } = &egress.kind else {
        panic!("egress is http");
    };
    let route = &routes[0];
    assert_eq!(
        route.matcher.host,
        Some(HostMatch::Exact("payments".into()))
    );
    assert!(matches!(&route.matcher.path, PathMatch::Prefix(p) if p == "/"));
    assert_eq!(
        route.matcher.headers,
        [(
            HeaderName::from_static("x-canary"),
            HeaderValue::from_static("true")
        )]
    );
    assert_eq!(route.matcher.methods, [Method::GET, Method::POST]);
    assert!(matches!(&route.action, RouteAction::Cluster(c) if c == "payments"));
    assert_eq!(route.timeout, Some(Duration::from_secs(15)));
    let retry = route.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 2);
    assert_eq!(
        retry.on,
        RetryOn {
            connect_failure: true,
            refused_stream: true,
            reset: true,
            gateway_error: true,
            server_error: true
        }
    );
    assert_eq!(retry.per_try_timeout, Some(Duration::from_secs(1)));
    assert_eq!(retry.backoff.base, Duration::from_millis(25));
    assert_eq!(retry.backoff.max, Duration::from_millis(250));
    assert_eq!(retry.budget.ratio, 0.2);
    assert_eq!(retry.budget.min_per_second, 10);
    assert_eq!(
        retry.methods,
        [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE
        ]
    );
    assert!(retry.retriable_status_codes.is_empty());
    assert_eq!(route.rewrite_prefix.as_deref(), Some("/"));
    assert_eq!(
        route.host_rewrite,
        Some(HeaderValue::from_static("payments.internal"))
    );
    assert_eq!(
        route.request_headers.add,
        [(
            HeaderName::from_static("x-env"),
            HeaderValue::from_static("prod")
        )]
    );
    assert_eq!(
        route.request_headers.remove,
        [HeaderName::from_static("x-debug")]
    );
    assert_eq!(
        route.response_headers.remove,
        [HeaderName::from_static("server")]
    );
    let rate = route.policies.rate_limit.unwrap();
    assert_eq!((rate.requests_per_second, rate.burst), (100.0, 200));
    let health = &routes[1];
    assert!(matches!(&health.matcher.path, PathMatch::Exact(p) if p == "/healthz"));
    let RouteAction::Direct { status, body } = &health.action else {
        panic!("healthz is a direct response");
    };
    assert_eq!((*status, body.as_ref()), (StatusCode::OK, &b"ok\n"[..]));

    let pg = &config.listeners[2];
    assert!(matches!(&pg.kind, ListenerKind::Tcp { cluster, .. } if cluster == "postgres"));
    let allow = &pg.tls.as_ref().unwrap().allow;
    assert_eq!(
        allow.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        ["spiffe://mesh.local/frontend-proxy"]
    );

    let payments = config
        .clusters
        .iter()
        .find(|c| c.name == "payments")
        .unwrap();
    assert_eq!(
        payments.endpoints,
        [EndpointAddr {
            host: "payments".into(),
            port: 15006
        }]
    );
    assert_eq!(
        payments.discovery,
        Discovery::Dns {
            refresh: Duration::from_secs(5)
        }
    );
    assert_eq!(payments.protocol, UpstreamProtocol::Http1);
    assert_eq!(payments.lb, LbPolicy::LeastRequest);
    assert_eq!(payments.connect_timeout, Duration::from_secs(1));
    assert_eq!(payments.idle_timeout, Duration::from_secs(60));
    let tls = payments.tls.as_ref().unwrap();
    assert_eq!(tls.mode, TlsMode::Mutual);
    assert_eq!(tls.peer.as_deref(), Some("spiffe://mesh.local/payments"));
    assert_eq!(tls.sni.as_deref(), Some("payments"));
    assert_eq!(tls.trust, UpstreamTrust::Mesh);
    assert_eq!(payments.circuit_breaker.max_pending_requests, 1024);
    assert_eq!(payments.circuit_breaker.max_retries, 3);
    let hc = payments.health_check.as_ref().unwrap();
    assert_eq!(hc.path, "/health");
    assert_eq!(
        (hc.interval, hc.timeout),
        (Duration::from_secs(5), Duration::from_secs(1))
    );
    assert_eq!((hc.unhealthy_threshold, hc.healthy_threshold), (3, 2));
    let od = payments.outlier_detection.unwrap();
    assert_eq!(od.base_ejection_time, Duration::from_secs(30));
    assert_eq!(od.max_ejection_percent, 50);

    let tracing = config.tracing.as_ref().unwrap();
    assert_eq!(tracing.otlp_endpoint.as_deref(), Some("http://jaeger:4317"));
    assert_eq!(tracing.protocol, OtlpProtocol::Grpc);
    assert_eq!(tracing.sampling, 1.0);
    assert_eq!(tracing.propagation, [Propagation::W3c, Propagation::B3]);
    assert_eq!(config.access_log.len(), 1);
    assert_eq!(config.access_log[0].path, LogTarget::Stdout);
    assert_eq!(config.access_log[0].format, LogFormat::Json);
}
