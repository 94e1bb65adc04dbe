//! Raw serde types mirroring the YAML of SPEC §3 key for key.
//!
//! They are deliberately permissive: every key is optional and enum-like
//! words, durations and addresses stay text, so that `validate` can report
//! every problem with its path instead of stopping at the first. Unknown keys
//! are not rejected here (no `deny_unknown_fields`): `parse` collects them
//! through `serde_ignored` so they are reported together with the rest.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProxyConfig {
    pub node: Option<NodeConfig>,
    pub admin: Option<AdminConfig>,
    pub identity: Option<IdentityConfig>,
    pub listeners: Option<Vec<ListenerConfig>>,
    pub clusters: Option<Vec<ClusterConfig>>,
    pub tracing: Option<TracingConfig>,
    pub access_log: Option<Vec<AccessLogConfig>>,
    pub limits: Option<LimitsConfig>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NodeConfig {
    pub name: Option<String>,
    pub service: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AdminConfig {
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct IdentityConfig {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub trust_bundle: Option<String>,
    pub ca: Option<CaConfig>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CaConfig {
    pub url: Option<String>,
    pub trust_bundle: Option<String>,
    pub token_file: Option<String>,
    pub spiffe_id: Option<String>,
    pub ttl: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListenerConfig {
    pub name: Option<String>,
    pub address: Option<String>,
    pub protocol: Option<String>,
    pub tls: Option<DownstreamTlsConfig>,
    pub routes: Option<Vec<RouteConfig>>,
    pub cluster: Option<String>,
    pub limits: Option<LimitsConfig>,
    pub trust_forwarded: Option<bool>,
    pub authz: Option<crate::policy::authz::AuthzConfig>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DownstreamTlsConfig {
    pub mode: Option<String>,
    pub allow: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RouteConfig {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<MatchConfig>,
    pub cluster: Option<String>,
    pub weighted: Option<Vec<WeightedConfig>>,
    pub direct_response: Option<DirectResponseConfig>,
    pub timeout: Option<Scalar>,
    pub retry: Option<RetryConfig>,
    pub rewrite_prefix: Option<String>,
    pub host_rewrite: Option<String>,
    pub request_headers: Option<HeadersConfig>,
    pub response_headers: Option<HeadersConfig>,
    pub rate_limit: Option<RateLimitConfig>,
    pub fault: Option<crate::policy::fault::FaultConfig>,
    pub authz: Option<crate::policy::authz::AuthzConfig>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MatchConfig {
    pub host: Option<String>,
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub regex: Option<String>,
    pub headers: Option<ScalarMap>,
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WeightedConfig {
    pub cluster: Option<String>,
    pub weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DirectResponseConfig {
    pub status: Option<u32>,
    pub body: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RetryConfig {
    pub attempts: Option<u32>,
    pub on: Option<Vec<String>>,
    pub retriable_status_codes: Option<Vec<u32>>,
    pub per_try_timeout: Option<Scalar>,
    pub backoff: Option<BackoffConfig>,
    pub budget: Option<BudgetConfig>,
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BackoffConfig {
    pub base: Option<Scalar>,
    pub max: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BudgetConfig {
    pub ratio: Option<f64>,
    pub min_per_second: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HeadersConfig {
    pub add: Option<ScalarMap>,
    pub remove: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RateLimitConfig {
    pub requests_per_second: Option<f64>,
    pub burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ClusterConfig {
    pub name: Option<String>,
    pub endpoints: Option<Vec<String>>,
    pub discovery: Option<String>,
    pub dns_refresh: Option<Scalar>,
    pub protocol: Option<String>,
    pub lb: Option<String>,
    pub connect_timeout: Option<Scalar>,
    pub idle_timeout: Option<Scalar>,
    pub tls: Option<UpstreamTlsConfig>,
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    pub health_check: Option<HealthCheckConfig>,
    pub outlier_detection: Option<OutlierDetectionConfig>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UpstreamTlsConfig {
    pub mode: Option<String>,
    pub peer: Option<String>,
    pub sni: Option<String>,
    pub trust: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CircuitBreakerConfig {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HealthCheckConfig {
    pub path: Option<String>,
    pub interval: Option<Scalar>,
    pub timeout: Option<Scalar>,
    pub unhealthy_threshold: Option<u32>,
    pub healthy_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct OutlierDetectionConfig {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_failure: Option<u32>,
    pub base_ejection_time: Option<Scalar>,
    pub max_ejection_percent: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TracingConfig {
    pub otlp_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub sampling: Option<f64>,
    pub propagation: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AccessLogConfig {
    pub path: Option<String>,
    pub format: Option<String>,
}

/// SPEC §3 "Limits"; the same keys at the top level and per listener.
#[derive(Debug, Deserialize)]
pub(crate) struct LimitsConfig {
    pub max_request_headers_kb: Option<u32>,
    pub max_request_headers_count: Option<u32>,
    pub max_uri_kb: Option<u32>,
    pub max_request_body_mb: Option<u32>,
    pub header_read_timeout: Option<Scalar>,
    pub body_idle_timeout: Option<Scalar>,
    pub stream_idle_timeout: Option<Scalar>,
    pub idle_timeout: Option<Scalar>,
    pub max_connections: Option<u32>,
    pub http2_max_concurrent_streams: Option<u32>,
    pub buffer_kb: Option<u32>,
    pub headers_with_underscores: Option<String>,
}

/// Any YAML scalar kept as text, so `timeout: 0` and `x-canary: true` are
/// accepted where a string is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar(pub String);

impl Scalar {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
}

/// A mapping of names to scalars in file order (header names to values).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ScalarMap(pub Vec<(String, Scalar)>);

impl<'de> Deserialize<'de> for ScalarMap {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ScalarMapVisitor)
    }
}

struct ScalarMapVisitor;

impl<'de> Visitor<'de> for ScalarMapVisitor {
    type Value = ScalarMap;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of names to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ScalarMap, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Scalar>()? {
            entries.push((key, value));
        }
        Ok(ScalarMap(entries))
    }
}
