//! The validated `limits:` (SPEC §3 "Limits"), top level and per listener.

use std::time::Duration;

use serde::Serialize;

use super::ser;

/// What a request header whose name has an `_` gets (Envoy's
/// `headers_with_underscores_action`): many upstreams read `_` as `-`, so
/// `X-Forwarded_Client_Cert` would pass for the proxy's own header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LimitsSpec {
    pub max_request_headers_kb: u32,
    pub max_request_headers_count: u32,
    pub max_uri_kb: u32,
    /// 0 = unlimited.
    pub max_request_body_mb: u32,
    #[serde(serialize_with = "ser::duration")]
    pub header_read_timeout: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub body_idle_timeout: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub stream_idle_timeout: Duration,
    #[serde(serialize_with = "ser::duration")]
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
