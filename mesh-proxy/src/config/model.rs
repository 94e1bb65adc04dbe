//! Validated configuration: the domain types the runtime reads.
//!
//! Everything here has passed `validate()`: names resolve, durations and
//! addresses are parsed, regexes compiled, defaults filled in. Runtime code
//! never sees the raw serde types of `raw.rs`.
//!
//! `Serialize` gives `/config_dump` in the YAML's shape, secrets redacted
//! (see `ser.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde::Serialize;

use super::ser;

pub use super::limits::{LimitsSpec, UnderscoreAction};

/// The whole validated configuration of one proxy.
#[derive(Debug, Clone, Serialize)]
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
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeSpec {
    pub name: String,
    /// `service.name` in traces; defaults to `name`.
    pub service: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdminSpec {
    /// Default `127.0.0.1:9901`.
    pub address: SocketAddr,
}

/// Files are shown by path only, never read; the CA URL without credentials.
#[derive(Debug, Clone, Serialize)]
pub enum IdentitySpec {
    #[serde(rename = "ca")]
    Ca {
        #[serde(serialize_with = "ser::uri")]
        url: http::Uri,
        trust_bundle: PathBuf,
        token_file: PathBuf,
        spiffe_id: String,
        /// Default 24h.
        #[serde(serialize_with = "ser::duration")]
        ttl: Duration,
    },
    #[serde(untagged)]
    Files {
        cert: PathBuf,
        key: PathBuf,
        trust_bundle: PathBuf,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct ListenerSpec {
    pub name: String,
    pub address: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<DownstreamTlsSpec>,
    /// Top-level `limits` with this listener's `limits` overrides applied.
    pub limits: LimitsSpec,
    /// Keep and append to incoming `x-forwarded-for` / `x-forwarded-proto`
    /// instead of replacing them. Default: true on `tls.mode: mutual`
    /// listeners (the peer is an authenticated workload), false otherwise.
    pub trust_forwarded: bool,
    #[serde(flatten)]
    pub kind: ListenerKind,
}

/// Flattened into its listener: `protocol: http` and `routes`, or
/// `protocol: tcp` and `cluster`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "protocol", rename_all = "lowercase")]
pub enum ListenerKind {
    Http {
        routes: Vec<RouteSpec>,
    },
    Tcp {
        cluster: String,
        /// The listener's `authz:`, decided per connection from the caller.
        #[serde(skip_serializing_if = "Option::is_none")]
        authz: Option<crate::policy::authz::AuthzSpec>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Server,
    Mutual,
}

#[derive(Debug, Clone, Serialize)]
pub struct DownstreamTlsSpec {
    pub mode: TlsMode,
    /// SPIFFE ID patterns (`*` one path segment, `**` the rest). Never empty
    /// in mutual mode (validation); empty in server mode.
    pub allow: Vec<mesh_ca::SpiffePattern>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteSpec {
    /// As logged (`%ROUTE_NAME%`, json `route`, span `mesh.route`): the
    /// configured name, or `<listener>/<index>` for an unnamed route.
    pub name: String,
    /// `<listener>/<configured name>` (`<listener>/<index>` when unnamed):
    /// how admin (`route=`) and metrics address the route.
    #[serde(skip)]
    pub id: String,
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    #[serde(flatten)]
    pub action: RouteAction,
    /// Whole request including retries; `None` when configured as `0`. Default 15s.
    #[serde(serialize_with = "ser::timeout")]
    pub timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite_prefix: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser::opt_header_value"
    )]
    pub host_rewrite: Option<HeaderValue>,
    pub request_headers: HeaderMutations,
    pub response_headers: HeaderMutations,
    /// The per-route policy stages' config (`rate_limit`, …), flattened.
    #[serde(flatten)]
    pub policies: crate::policy::RoutePolicies,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteMatch {
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser::host_match"
    )]
    pub host: Option<HostMatch>,
    #[serde(flatten)]
    pub path: PathMatch,
    /// Exact values; all must match.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "ser::header_pairs"
    )]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Empty = any method.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "ser::methods")]
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

/// Flattened into its match: `prefix`, `path` or `regex` (as written).
#[derive(Debug, Clone, Serialize)]
pub enum PathMatch {
    #[serde(rename = "prefix")]
    Prefix(String),
    #[serde(rename = "path")]
    Exact(String),
    #[serde(rename = "regex", serialize_with = "ser::regex")]
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

/// Flattened into its route: `cluster`, `weighted` or `direct_response`.
#[derive(Debug, Clone, Serialize)]
pub enum RouteAction {
    #[serde(rename = "cluster")]
    Cluster(String),
    #[serde(rename = "weighted")]
    Weighted(Vec<WeightedCluster>),
    #[serde(rename = "direct_response")]
    Direct {
        #[serde(serialize_with = "ser::status")]
        status: StatusCode,
        #[serde(serialize_with = "ser::lossy")]
        body: Bytes,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct WeightedCluster {
    pub cluster: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HeaderMutations {
    #[serde(serialize_with = "ser::header_pairs")]
    pub add: Vec<(HeaderName, HeaderValue)>,
    #[serde(serialize_with = "ser::header_names")]
    pub remove: Vec<HeaderName>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetrySpec {
    /// Retries after the first try.
    pub attempts: u32,
    pub on: RetryOn,
    #[serde(serialize_with = "ser::statuses")]
    pub retriable_status_codes: Vec<StatusCode>,
    #[serde(serialize_with = "ser::opt_duration")]
    pub per_try_timeout: Option<Duration>,
    pub backoff: BackoffSpec,
    pub budget: RetryBudgetSpec,
    /// Methods that may be retried after bytes reached the upstream.
    #[serde(serialize_with = "ser::methods")]
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

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BackoffSpec {
    /// Default 25ms.
    #[serde(serialize_with = "ser::duration")]
    pub base: Duration,
    /// Default 250ms.
    #[serde(serialize_with = "ser::duration")]
    pub max: Duration,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RetryBudgetSpec {
    /// Default 0.2.
    pub ratio: f64,
    /// Default 10.
    pub min_per_second: u32,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RateLimitSpec {
    pub requests_per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterSpec {
    pub name: String,
    pub endpoints: Vec<EndpointAddr>,
    #[serde(flatten)]
    pub discovery: Discovery,
    pub protocol: UpstreamProtocol,
    pub lb: LbPolicy,
    /// Default 1s.
    #[serde(serialize_with = "ser::duration")]
    pub connect_timeout: Duration,
    /// Default 60s.
    #[serde(serialize_with = "ser::duration")]
    pub idle_timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsSpec>,
    pub circuit_breaker: CircuitBreakerSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamTlsSpec {
    pub mode: TlsMode,
    pub peer: Option<String>,
    pub sni: Option<String>,
    pub trust: UpstreamTrust,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTrust {
    /// The mesh trust bundle from `identity`.
    Mesh,
    /// OS / webpki roots, for external HTTPS.
    System,
}

#[derive(Debug, Clone, Copy, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct HealthCheckSpec {
    pub path: String,
    #[serde(serialize_with = "ser::duration")]
    pub interval: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct OutlierDetectionSpec {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
    #[serde(serialize_with = "ser::duration")]
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct TracingSpec {
    /// From the config, else `OTEL_EXPORTER_OTLP_ENDPOINT`; `None` = no export.
    #[serde(serialize_with = "ser::opt_url")]
    pub otlp_endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    pub sampling: f64,
    pub propagation: Vec<Propagation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    Grpc,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    W3c,
    B3,
}

#[derive(Debug, Clone, Serialize)]
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
