//! The Prometheus families of the admin API: name (without the `mesh_`
//! prefix; counters get `_total` from the encoder), type and help. The
//! dotted `/stats` names live with the samples in `stats.rs`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
}

/// A Prometheus family: its name without the `mesh_` prefix (counters get
/// `_total` appended by the encoder), its type and its help text.
pub(super) struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        help,
    }
}

/// Every family, in exposition order.
pub(super) const FAMILIES: &[Family] = &[
    counter(
        "authz_decisions",
        "Authorization decisions per listener: allow (by rule, '-' for the default), deny, would_deny (audit mode).",
    ),
    counter(
        "http_downstream_rq",
        "Downstream requests answered, by status class.",
    ),
    counter(
        "http_downstream_rq_local",
        "Downstream requests the proxy answered itself (local replies).",
    ),
    counter(
        "http_downstream_rq_rejected",
        "Downstream requests refused by a listener limit, by reason.",
    ),
    counter(
        "http_dropped_headers_with_underscores",
        "Request headers removed because their name has an underscore.",
    ),
    counter("http_downstream_cx", "Downstream connections accepted."),
    gauge("http_downstream_cx_active", "Downstream connections open."),
    counter(
        "http_downstream_cx_overflow",
        "Downstream connections closed at accept by max_connections.",
    ),
    gauge(
        "http_downstream_cx_parked",
        "Idle HTTP/1.1 downstream connections parked without parser buffers.",
    ),
    counter("tls_handshakes", "Downstream TLS handshakes completed."),
    counter(
        "tls_handshake_failures",
        "Downstream TLS handshakes failed, by reason.",
    ),
    counter(
        "tls_revoked",
        "Downstream TCP connections closed because a reload removed their peer from allow.",
    ),
    counter(
        "cluster_upstream_rq",
        "Upstream attempts by status class; an attempt without a response counts as 5xx.",
    ),
    gauge("cluster_upstream_rq_active", "Upstream requests in flight."),
    gauge(
        "cluster_upstream_rq_pending_active",
        "Upstream requests waiting for a connection.",
    ),
    counter(
        "cluster_upstream_rq_pending_overflow",
        "Requests refused by the max_pending_requests circuit breaker.",
    ),
    counter(
        "cluster_upstream_rq_overflow",
        "Requests refused by the max_requests circuit breaker.",
    ),
    counter("cluster_upstream_rq_retry", "Retries sent."),
    counter(
        "cluster_upstream_rq_retry_overflow",
        "Retries skipped by the max_retries circuit breaker.",
    ),
    counter(
        "cluster_upstream_rq_retry_budget_exhausted",
        "Retries skipped by the retry budget.",
    ),
    counter(
        "cluster_upstream_rq_timeout",
        "Requests that hit the route timeout.",
    ),
    counter(
        "cluster_upstream_rq_per_try_timeout",
        "Attempts that hit the per-try timeout.",
    ),
    counter("cluster_upstream_cx", "Upstream connections opened."),
    gauge("cluster_upstream_cx_active", "Upstream connections open."),
    counter(
        "cluster_upstream_cx_connect_fail",
        "Upstream connection attempts that failed.",
    ),
    counter(
        "cluster_upstream_cx_overflow",
        "Connections refused by the max_connections circuit breaker.",
    ),
    gauge(
        "cluster_membership_healthy",
        "Endpoints healthy and not ejected.",
    ),
    gauge(
        "cluster_membership_endpoints",
        "Endpoints in the cluster (dotted: membership_total).",
    ),
    gauge(
        "cluster_outlier_detection_ejections_active",
        "Endpoints ejected by outlier detection now.",
    ),
    counter(
        "cluster_outlier_detection_ejections",
        "Ejections by outlier detection.",
    ),
    gauge(
        "cluster_circuit_breakers_remaining",
        "Capacity left before a circuit breaker opens, by resource.",
    ),
    gauge(
        "server_live",
        "1 while the proxy serves (not draining, health check not failed).",
    ),
    gauge("server_uptime_seconds", "Seconds since the proxy started."),
    counter("server_config_reload", "Config reloads attempted."),
    counter("tracing_spans_started", "Spans started by this proxy."),
    counter(
        "tracing_spans_exported",
        "Spans the OTLP exporter delivered.",
    ),
    counter(
        "tracing_spans_export_failed",
        "Spans the OTLP exporter failed to deliver.",
    ),
    counter(
        "tracing_spans_dropped",
        "Spans dropped because the export queue was full.",
    ),
    counter(
        "tracing_spans_dropped_over_budget",
        "Spans dropped because the export queue held its 16 MiB byte budget.",
    ),
    counter(
        "access_log_dropped",
        "Access log records dropped because the writer queue was full.",
    ),
    counter(
        "access_log_dropped_over_budget",
        "Access log records dropped because the writer queue held its 16 MiB byte budget.",
    ),
    counter(
        "server_config_reload_failed",
        "Config reloads rejected (the old config kept serving).",
    ),
    gauge(
        "server_cert_expiry_seconds",
        "Seconds until this workload's certificate expires.",
    ),
    counter(
        "server_cert_rotations",
        "Certificates loaded (the first one and every rotation).",
    ),
    counter(
        "server_cert_rotation_failed",
        "Certificate rotations that failed (the old one kept serving).",
    ),
];

/// The Prometheus family of the latency histograms (seconds): name, help.
pub(super) const HISTOGRAM_FAMILY: (&str, &str) = (
    "cluster_upstream_rq_time_seconds",
    "Time from sending a request upstream to its response headers, retries included.",
);
