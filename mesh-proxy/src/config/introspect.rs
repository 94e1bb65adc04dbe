//! Known key names of the raw types, read from serde itself so they are never
//! listed twice: a derived `Deserialize` hands its field list to
//! `deserialize_struct`, which the probe below captures.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::raw::*;

/// The key names of struct `T` as written in YAML (renames applied).
pub(crate) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(Probe) {
        Err(Captured::Fields(fields)) => fields,
        _ => &[],
    }
}

/// The key names allowed in the mapping at `shape`, a key path whose indexes
/// are written `[*]` (`listeners[*].routes[*].retry`; `""` is the top level).
/// `None` for a place that is not a struct.
pub(crate) fn fields_at(shape: &str) -> Option<&'static [&'static str]> {
    let fields = match shape {
        "" => fields_of::<ProxyConfig>(),
        "node" => fields_of::<NodeConfig>(),
        "admin" => fields_of::<AdminConfig>(),
        "identity" => fields_of::<IdentityConfig>(),
        "identity.ca" => fields_of::<CaConfig>(),
        "limits" | "listeners[*].limits" => fields_of::<LimitsConfig>(),
        "listeners[*]" => fields_of::<ListenerConfig>(),
        "listeners[*].tls" => fields_of::<DownstreamTlsConfig>(),
        "clusters[*]" => fields_of::<ClusterConfig>(),
        "clusters[*].tls" => fields_of::<UpstreamTlsConfig>(),
        "clusters[*].circuit_breaker" => fields_of::<CircuitBreakerConfig>(),
        "clusters[*].health_check" => fields_of::<HealthCheckConfig>(),
        "clusters[*].outlier_detection" => fields_of::<OutlierDetectionConfig>(),
        "tracing" => fields_of::<TracingConfig>(),
        "access_log[*]" => fields_of::<AccessLogConfig>(),
        _ => return route_fields_at(shape.strip_prefix("listeners[*].routes[*]")?),
    };
    Some(fields)
}

/// `fields_at` below `listeners[*].routes[*]`; `rest` is what follows it.
fn route_fields_at(rest: &str) -> Option<&'static [&'static str]> {
    let fields = match rest {
        "" => fields_of::<RouteConfig>(),
        ".match" => fields_of::<MatchConfig>(),
        ".weighted[*]" => fields_of::<WeightedConfig>(),
        ".direct_response" => fields_of::<DirectResponseConfig>(),
        ".retry" => fields_of::<RetryConfig>(),
        ".retry.backoff" => fields_of::<BackoffConfig>(),
        ".retry.budget" => fields_of::<BudgetConfig>(),
        ".request_headers" | ".response_headers" => fields_of::<HeadersConfig>(),
        // The policies' keys are listed by their own modules.
        _ => return crate::policy::fields_at(rest),
    };
    Some(fields)
}

/// A deserializer that only answers "which fields does this struct have".
struct Probe;

#[derive(Debug)]
enum Captured {
    Fields(&'static [&'static str]),
    NotAStruct,
}

impl fmt::Display for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for Captured {}

impl de::Error for Captured {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Captured::NotAStruct
    }
}

impl<'de> de::Deserializer<'de> for Probe {
    type Error = Captured;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Captured> {
        Err(Captured::NotAStruct)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Captured> {
        Err(Captured::Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every struct place in the file, with one key that only it has (or that
    /// tells it apart from its neighbours).
    const SHAPES: &[(&str, &str)] = &[
        ("", "listeners"),
        ("node", "service"),
        ("admin", "address"),
        ("identity", "cert"),
        ("identity.ca", "spiffe_id"),
        ("limits", "max_uri_kb"),
        ("listeners[*].limits", "buffer_kb"),
        ("listeners[*]", "trust_forwarded"),
        ("listeners[*].tls", "allow"),
        ("listeners[*].routes[*]", "direct_response"),
        ("listeners[*].routes[*].match", "regex"),
        ("listeners[*].routes[*].weighted[*]", "weight"),
        ("listeners[*].routes[*].direct_response", "body"),
        ("listeners[*].routes[*].retry", "per_try_timeout"),
        ("listeners[*].routes[*].retry.backoff", "base"),
        ("listeners[*].routes[*].retry.budget", "min_per_second"),
        ("listeners[*].routes[*].request_headers", "remove"),
        ("listeners[*].routes[*].response_headers", "add"),
        ("listeners[*].routes[*].rate_limit", "burst"),
        ("listeners[*].routes[*].fault", "from"),
        ("listeners[*].routes[*].fault.delay", "fixed"),
        ("listeners[*].routes[*].fault.abort", "grpc_status"),
        ("clusters[*]", "dns_refresh"),
        ("clusters[*].tls", "peer"),
        ("clusters[*].circuit_breaker", "max_pending_requests"),
        ("clusters[*].health_check", "healthy_threshold"),
        ("clusters[*].outlier_detection", "max_ejection_percent"),
        ("tracing", "propagation"),
        ("access_log[*]", "format"),
    ];

    #[test]
    fn probe_reads_the_derived_field_list() {
        assert_eq!(fields_of::<NodeConfig>(), ["name", "service"]);
        assert_eq!(fields_of::<BackoffConfig>(), ["base", "max"]);
        // renamed fields appear under their YAML name
        assert!(fields_of::<RouteConfig>().contains(&"match"));
        assert!(!fields_of::<RouteConfig>().contains(&"matcher"));
        // not a struct
        assert!(fields_of::<String>().is_empty());
        assert!(fields_of::<Scalar>().is_empty());
    }

    #[test]
    fn every_struct_place_maps_to_its_raw_type() {
        for (shape, key) in SHAPES {
            let fields = fields_at(shape).unwrap_or_else(|| panic!("no fields for {shape:?}"));
            assert!(fields.contains(key), "{shape:?} lacks {key:?}: {fields:?}");
        }
        assert_eq!(
            fields_at("listeners[*].routes[*].retry"),
            Some(fields_of::<RetryConfig>())
        );
        assert_eq!(
            fields_at("clusters[*].tls"),
            Some(fields_of::<UpstreamTlsConfig>())
        );
        assert_eq!(
            fields_at("listeners[*].tls"),
            Some(fields_of::<DownstreamTlsConfig>())
        );
        assert_eq!(fields_at("limits"), fields_at("listeners[*].limits"));
    }

    #[test]
    fn places_that_are_not_structs_have_no_fields() {
        assert_eq!(fields_at("listeners"), None);
        assert_eq!(fields_at("listeners[*].routes[*].match.headers"), None);
        assert_eq!(fields_at("listeners[*].routes[*].bogus"), None);
        assert_eq!(fields_at("clusters[*].endpoints[*]"), None);
    }
}
