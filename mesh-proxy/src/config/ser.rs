//! How the validated model serializes (`/config_dump`): in the YAML's own
//! shape, durations as humantime strings, regexes as written, and secrets
//! redacted — files holding keys, tokens and certificates are paths (never
//! read), credential headers a route adds or matches are replaced, and
//! credentials in URLs are removed.
//!
//! The `serialize_with` helpers of `model.rs` and the few hand-written
//! `Serialize` impls whose JSON shape differs from the Rust one.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::model::{
    Discovery, EndpointAddr, HostMatch, LogFormat, LogTarget, RetryOn, regex_source,
};

pub(crate) const REDACTED: &str = "[redacted]";

pub(crate) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

pub(crate) fn opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}

/// A route timeout: `None` was configured as `0` (no timeout).
pub(crate) fn timeout<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    duration(&d.unwrap_or(Duration::ZERO), s)
}

pub(crate) fn status<S: Serializer>(code: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(code.as_u16())
}

pub(crate) fn statuses<S: Serializer>(codes: &[StatusCode], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(codes.iter().map(StatusCode::as_u16))
}

pub(crate) fn methods<S: Serializer>(methods: &[Method], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(methods.iter().map(Method::as_str))
}

pub(crate) fn header_names<S: Serializer>(names: &[HeaderName], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(names.iter().map(HeaderName::as_str))
}

pub(crate) fn opt_header_value<S: Serializer>(
    v: &Option<HeaderValue>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&String::from_utf8_lossy(v.as_bytes())),
        None => s.serialize_none(),
    }
}

/// Header values that carry credentials are never shown.
fn is_secret_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-api-key"
    ) || name.as_str().contains("token")
        || name.as_str().contains("secret")
}

/// `name: value` pairs as a map, credential values redacted.
pub(crate) fn header_pairs<S: Serializer>(
    pairs: &[(HeaderName, HeaderValue)],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(pairs.len()))?;
    for (name, value) in pairs {
        if is_secret_header(name) {
            map.serialize_entry(name.as_str(), REDACTED)?;
        } else {
            map.serialize_entry(name.as_str(), &String::from_utf8_lossy(value.as_bytes()))?;
        }
    }
    map.end()
}

pub(crate) fn lossy<S: Serializer>(body: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(body))
}

pub(crate) fn regex<S: Serializer>(re: &regex::Regex, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(regex_source(re))
}

/// `scheme://user:pass@host/...` → `scheme://[redacted]@host/...`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

pub(crate) fn uri<S: Serializer>(uri: &http::Uri, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(&uri.to_string()))
}

pub(crate) fn opt_url<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_str(&redact_url(url)),
        None => s.serialize_none(),
    }
}

pub(crate) fn host_match<S: Serializer>(host: &Option<HostMatch>, s: S) -> Result<S::Ok, S::Error> {
    match host {
        Some(HostMatch::Exact(h)) => s.serialize_str(h),
        Some(HostMatch::Suffix(suffix)) => s.collect_str(&format_args!("*{suffix}")),
        None => s.serialize_none(),
    }
}

impl Serialize for RetryOn {
    /// The `on:` list: `[connect-failure, 5xx]`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let names = [
            (self.connect_failure, "connect-failure"),
            (self.refused_stream, "refused-stream"),
            (self.reset, "reset"),
            (self.gateway_error, "gateway-error"),
            (self.server_error, "5xx"),
        ];
        let mut seq = s.serialize_seq(None)?;
        for (_, name) in names.iter().filter(|(set, _)| *set) {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

impl Serialize for EndpointAddr {
    /// `host:port`, IPv6 hosts in brackets.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.host.contains(':') {
            s.collect_str(&format_args!("[{}]:{}", self.host, self.port))
        } else {
            s.collect_str(&format_args!("{}:{}", self.host, self.port))
        }
    }
}

impl Serialize for Discovery {
    /// Flattened into its cluster: `discovery: dns` and `dns_refresh`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self {
            Discovery::Static => map.serialize_entry("discovery", "static")?,
            Discovery::Dns { refresh } => {
                map.serialize_entry("discovery", "dns")?;
                let refresh = humantime::format_duration(*refresh).to_string();
                map.serialize_entry("dns_refresh", &refresh)?;
            }
        }
        map.end()
    }
}

impl Serialize for LogTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LogTarget::Stdout => s.serialize_str("stdout"),
            LogTarget::Stderr => s.serialize_str("stderr"),
            LogTarget::File(path) => path.serialize(s),
        }
    }
}

impl Serialize for LogFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LogFormat::Json => s.serialize_str("json"),
            LogFormat::Text => s.serialize_str("text"),
            LogFormat::Custom(format) => s.serialize_str(format),
        }
    }
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
        let v = header_pairs(&pairs, serde_json::value::Serializer).expect("json");
        assert_eq!(v["authorization"], REDACTED);
        assert_eq!(v["x-env"], "prod");
    }
}
