//! Validated configuration: the domain types the runtime reads.
//!
//! Everything here has passed `validate()`: names resolve, durations and
//! addresses are parsed, regexes compiled, defaults filled in. Runtime code
//! never sees the raw serde types of `raw.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};

/// The whole validated configuration of one proxy.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: NodeSpec,
    pub admin: AdminSpec,
    pub identity: Option<IdentitySpec>,
    pub listeners: Vec<ListenerSpec>,
    pub clusters: Vec<ClusterSpec>,
    pub tracing: Option<TracingSpec>,
    pub access_log: Vec<AccessLogSpec>,
    /// Top-level limits; each listener carries its merged copy in `ListenerSpec::limits`.
    pub limits: LimitsSpec,
    /// Folder of the config file; relative paths were resolved against it.
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    /// `service.name` in traces; defaults to `name`.
    pub service: String,
}

#[derive(Debug, Clone)]
pub struct AdminSpec {
    /// Default `127.0.0.1:9901`.
    pub address: SocketAddr,
}

#[derive(Debug, Clone)]
pub enum IdentitySpec {
    Files {
        cert: PathBuf,
        key: PathBuf,
        trust_bundle: PathBuf,
    },
    Ca {
        url: http::Uri,
        trust_bundle: PathBuf,
        token_file: PathBuf,
        spiffe_id: String,
        /// Default 24h.
        ttl: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: String,
    pub address: SocketAddr,
    pub tls: Option<DownstreamTlsSpec>,
    /// Top-level `limits` with this listener's `limits` overrides applied.
    pub limits: LimitsSpec,
    /// Keep and append to incoming `x-forwarded-for` / `x-forwarded-proto`
    /// instead of replacing them. Default: true on `tls.mode: mutual`
    /// listeners (the peer is an authenticated workload), false otherwise.
    pub trust_forwarded: bool,
    pub kind: ListenerKind,
}

#[derive(Debug, Clone)]
pub enum ListenerKind {
    Http { routes: Vec<RouteSpec> },
    Tcp { cluster: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Server,
    Mutual,
}

#[derive(Debug, Clone)]
pub struct DownstreamTlsSpec {
    pub mode: TlsMode,
    /// SPIFFE ID patterns (`*` one path segment, `**` the rest). Never empty
    /// in mutual mode (validation); empty in server mode.
    pub allow: Vec<mesh_ca::SpiffePattern>,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// As logged (`%ROUTE_NAME%`, json `route`, span `mesh.route`): the
    /// configured name, or `<listener>/<index>` for an unnamed route.
    pub name: String,
    /// `<listener>/<configured name>` (`<listener>/<index>` when unnamed):
    /// how admin (`route=`) and metrics address the route.
    pub id: String,
    pub matcher: RouteMatch,
    pub action: RouteAction,
    /// Whole request including retries; `None` when configured as `0`. Default 15s.
    pub timeout: Option<Duration>,
    pub retry: Option<RetrySpec>,
    pub rewrite_prefix: Option<String>,
    pub host_rewrite: Option<HeaderValue>,
    pub request_headers: HeaderMutations,
    pub response_headers: HeaderMutations,
    pub rate_limit: Option<RateLimitSpec>,
}

#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    pub host: Option<HostMatch>,
    pub path: PathMatch,
    /// Exact values; all must match.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Empty = any method.
    pub methods: Vec<Method>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Lowercase host without port.
    Exact(String),
    /// `*.example.com` stored as `.example.com` (lowercase); matches any
    /// host ending in it with at least one more label character.
    Suffix(String),
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(regex::Regex),
}

impl PathMatch {
    /// The span attribute `http.route`: `P*` for prefix `P`, the exact path,
    /// or the regex as written.
    pub fn pattern(&self) -> String {
        match self {
            PathMatch::Prefix(p) => format!("{p}*"),
            PathMatch::Exact(p) => p.clone(),
            PathMatch::Regex(r) => regex_source(r).to_owned(),
        }
    }
}

/// The regex as the user wrote it, without the `^(?:…)$` anchoring
/// validation wraps it in.
pub(crate) fn regex_source(r: &regex::Regex) -> &str {
    let s = r.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch::Prefix("/".to_owned())
    }
}

#[derive(Debug, Clone)]
pub enum RouteAction {
    Cluster(String),
    Weighted(Vec<WeightedCluster>),
    Direct { status: StatusCode, body: Bytes },
}

#[derive(Debug, Clone)]
pub struct WeightedCluster {
    pub cluster: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Default)]
pub struct HeaderMutations {
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

#[derive(Debug, Clone)]
pub struct RetrySpec {
    /// Retries after the first try.
    pub attempts: u32,
    pub on: RetryOn,
    pub retriable_status_codes: Vec<StatusCode>,
    pub per_try_timeout: Option<Duration>,
    pub backoff: BackoffSpec,
    pub budget: RetryBudgetSpec,
    /// Methods that may be retried after bytes reached the upstream.
    pub methods: Vec<Method>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn {
    pub connect_failure: bool,
    pub refused_stream: bool,
    pub reset: bool,
    pub gateway_error: bool,
    pub server_error: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct BackoffSpec {
    /// Default 25ms.
    pub base: Duration,
    /// Default 250ms.
    pub max: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryBudgetSpec {
    /// Default 0.2.
    pub ratio: f64,
    /// Default 10.
    pub min_per_second: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimitSpec {
    pub requests_per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    pub endpoints: Vec<EndpointAddr>,
    pub discovery: Discovery,
    pub protocol: UpstreamProtocol,
    pub lb: LbPolicy,
    /// Default 1s.
    pub connect_timeout: Duration,
    /// Default 60s.
    pub idle_timeout: Duration,
    pub tls: Option<UpstreamTlsSpec>,
    pub circuit_breaker: CircuitBreakerSpec,
    pub health_check: Option<HealthCheckSpec>,
    pub outlier_detection: Option<OutlierDetectionSpec>,
}

/// `host:port` as written; for `discovery: static` the host is an IP literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointAddr {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    Static,
    /// Re-resolve every `refresh` (default 5s).
    Dns {
        refresh: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
}

#[derive(Debug, Clone)]
pub struct UpstreamTlsSpec {
    pub mode: TlsMode,
    pub peer: Option<String>,
    pub sni: Option<String>,
    pub trust: UpstreamTrust,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTrust {
    /// The mesh trust bundle from `identity`.
    Mesh,
    /// OS / webpki roots, for external HTTPS.
    System,
}

#[derive(Debug, Clone, Copy)]
pub struct CircuitBreakerSpec {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for CircuitBreakerSpec {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HealthCheckSpec {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct OutlierDetectionSpec {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

#[derive(Debug, Clone)]
pub struct TracingSpec {
    /// From the config, else `OTEL_EXPORTER_OTLP_ENDPOINT`; `None` = no export.
    pub otlp_endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    pub sampling: f64,
    pub propagation: Vec<Propagation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    W3c,
    B3,
}

#[derive(Debug, Clone)]
pub struct AccessLogSpec {
    pub path: LogTarget,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
    /// An Envoy-style format string such as `%REQ(:METHOD)% %RESPONSE_CODE%`.
    Custom(String),
}

/// What a request header whose name has an `_` gets (Envoy's
/// `headers_with_underscores_action`): many upstreams read `_` as `-`, so
/// `X-Forwarded_Client_Cert` would pass for the proxy's own header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscoreAction {
    /// Removed before forwarding, counted (nginx's default).
    #[default]
    Drop,
    /// The request is answered 400 `DPE`.
    Reject,
    /// Forwarded, except spellings of the headers the proxy sets or strips.
    Allow,
}

impl UnderscoreAction {
    pub fn as_str(self) -> &'static str {
        match self {
            UnderscoreAction::Drop => "drop",
            UnderscoreAction::Reject => "reject",
            UnderscoreAction::Allow => "allow",
        }
    }
}

/// SPEC §3 "Limits"; every field has the documented default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitsSpec {
    pub max_request_headers_kb: u32,
    pub max_request_headers_count: u32,
    pub max_uri_kb: u32,
    /// 0 = unlimited.
    pub max_request_body_mb: u32,
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: u32,
    pub http2_max_concurrent_streams: u32,
    pub buffer_kb: u32,
    pub headers_with_underscores: UnderscoreAction,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_request_headers_kb: 60,
            max_request_headers_count: 100,
            max_uri_kb: 16,
            max_request_body_mb: 0,
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(10),
            stream_idle_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(3600),
            max_connections: 50_000,
            http2_max_concurrent_streams: 100,
            buffer_kb: 32,
            headers_with_underscores: UnderscoreAction::Drop,
        }
    }
}
