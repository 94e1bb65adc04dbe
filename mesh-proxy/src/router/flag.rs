//! The response flags of SPEC §3 "Local replies" (and §8's `FI`), typed.
//!
//! A flag is this proxy's own verdict on a request it answered itself. It
//! travels with the reply as a response extension ([`super::local::Noted`])
//! and is never read back from an `x-mesh-error` header: a header that came
//! from upstream is another hop's verdict (or a forgery) and is passed on
//! untouched, not logged as ours.

/// Why the proxy answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseFlag {
    /// No route matched (404).
    NoRoute,
    /// The peer identity is not admitted (403).
    Unauthorized,
    /// The local rate limit refused the request (429).
    RateLimited,
    /// No healthy endpoint (503).
    NoHealthyUpstream,
    /// Connecting upstream failed (503).
    UpstreamConnectFailure,
    /// The circuit breaker refused the request (503).
    UpstreamOverflow,
    /// The upstream reset before response headers (502).
    UpstreamReset,
    /// The upstream's response was not valid HTTP (502).
    UpstreamProtocolError,
    /// The request or per-try timeout elapsed (504).
    UpstreamTimeout,
    /// The downstream request broke a limit or was malformed (4xx).
    DownstreamProtocolError,
    /// The proxy is draining (503).
    Draining,
    /// Fault injection aborted the request (SPEC §8).
    FaultInjected,
}

impl ResponseFlag {
    /// The short code of SPEC §3, as sent in `x-mesh-error` and logged.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::NoRoute => "NR",
            ResponseFlag::Unauthorized => "UAEX",
            ResponseFlag::RateLimited => "RL",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectFailure => "UF",
            ResponseFlag::UpstreamOverflow => "UO",
            ResponseFlag::UpstreamReset => "UR",
            ResponseFlag::UpstreamProtocolError => "UPE",
            ResponseFlag::UpstreamTimeout => "UT",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::Draining => "DR",
            ResponseFlag::FaultInjected => "FI",
        }
    }
}

impl std::fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
