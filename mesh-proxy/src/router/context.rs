//! What the requests of one HTTP listener share ([`HttpContext`]) and what
//! is known of the downstream connection a request arrived on
//! ([`Downstream`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;
use http::header::HeaderValue;

use super::{Observe, RouteTable};
use crate::config::LimitsSpec;
use crate::identity::allow::Admission;

/// Counters of one HTTP listener (SPEC §3 "Metrics").
#[derive(Debug, Default)]
pub struct HttpStats {
    pub downstream_rq_total: AtomicU64,
    /// Index 0 = 1xx … 4 = 5xx.
    pub downstream_rq_class: [AtomicU64; 5],
    /// Requests the proxy answered itself (every local reply).
    pub downstream_rq_local: AtomicU64,
    /// Request headers removed for an `_` in their name
    /// (`limits.headers_with_underscores`).
    pub dropped_headers_with_underscores: AtomicU64,
    /// Requests refused by a listener limit, by reason.
    pub downstream_rq_rejected: crate::telemetry::metrics::RejectCounters,
    pub downstream_cx_total: AtomicU64,
    pub downstream_cx_active: AtomicU64,
    /// Connections closed at accept because `max_connections` was reached.
    pub downstream_cx_overflow: AtomicU64,
    /// Idle HTTP/1.1 connections parked without parser buffers (gauge).
    pub downstream_cx_parked: AtomicU64,
    /// The last local replies, for the admin dashboard.
    pub local_replies: crate::telemetry::local_replies::LocalReplyLog,
}

/// What every request on one HTTP listener shares.
pub struct HttpContext {
    pub listener: Arc<str>,
    pub routes: ArcSwap<RouteTable>,
    pub limits: LimitsSpec,
    pub trust_forwarded: bool,
    pub stats: HttpStats,
    /// Access logs and tracing; `None` when neither is configured.
    pub observe: Option<Arc<Observe>>,
}

/// Facts about the downstream connection a request arrived on.
pub struct Downstream {
    pub peer: SocketAddr,
    /// The peer IP, formatted once per connection.
    pub peer_ip: HeaderValue,
    pub is_tls: bool,
    /// The peer against the listener's current allow-list (`None`: no
    /// mutual TLS, always admitted). Checked per request, so a reload that
    /// drops the peer answers its next request with 403 `UAEX`.
    pub admission: Option<Admission>,
    /// `x-forwarded-client-cert` for the app, on mutual TLS listeners,
    /// built once per connection.
    pub xfcc: Option<HeaderValue>,
    /// The peer's SPIFFE ID on mutual TLS listeners (for spans and logs).
    pub peer_identity: Option<String>,
    /// Set by the listener when the proxy drains: HTTP/1.1 responses then
    /// carry `Connection: close`.
    pub draining: std::sync::atomic::AtomicBool,
    /// Whether this connection speaks HTTP/2 (known from its first request).
    pub is_http2: std::sync::atomic::AtomicBool,
    /// Requests whose response has not been fully sent yet (the listener
    /// parks an HTTP/1.1 connection only when this is zero).
    pub open_requests: std::sync::atomic::AtomicU32,
    /// Requests received on this connection so far.
    pub requests: AtomicU64,
    /// The upstream side of an HTTP/1.1 upgrade the upstream accepted (101):
    /// once the 101 is written, the listener joins it to the downstream
    /// connection.
    pub upgrade: std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>,
}

impl Downstream {
    pub fn new(peer: SocketAddr) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            peer,
            peer_ip,
            is_tls: false,
            admission: None,
            xfcc: None,
            peer_identity: None,
            draining: std::sync::atomic::AtomicBool::new(false),
            is_http2: std::sync::atomic::AtomicBool::new(false),
            open_requests: std::sync::atomic::AtomicU32::new(0),
            requests: AtomicU64::new(0),
            upgrade: std::sync::Mutex::new(None),
        }
    }

    /// Whether the listener's allow-list admits the peer now.
    pub fn is_allowed(&self) -> bool {
        self.admission.as_ref().is_none_or(Admission::is_allowed)
    }
}
