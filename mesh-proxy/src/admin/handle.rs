//! What the admin API reads and may trigger, defined here and built by
//! `app`: the admin never sees the app's runtime, so `app` depends on
//! `admin` and not the other way round.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::identity::IdentityStore;
use crate::identity::server::TlsServer;
use crate::listener::DrainTrigger;
use crate::policy::FaultOverrides;
use crate::router::HttpContext;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::ReloadCounters;
use crate::telemetry::trace::Tracing;

/// A listener as it runs: what the admin API lists and reads stats from.
#[derive(Clone)]
pub(crate) struct ListenerInfo {
    pub name: String,
    pub address: SocketAddr,
    /// The HTTP listener's context (routes, limits, stats); `None` for TCP.
    pub http: Option<Arc<HttpContext>>,
    /// The TLS side (handshake failure counters); `None` without `tls:`.
    pub tls: Option<Arc<TlsServer>>,
    /// A TCP listener's authz (replaced in place by a reload).
    pub tcp_authz: Option<Arc<crate::policy::authz_tcp::TcpAuthz>>,
}

/// The current listeners and clusters with the config they came from;
/// swapped as a whole by a reload.
pub(crate) struct Topology {
    pub config: Arc<Config>,
    pub listeners: Vec<ListenerInfo>,
    pub clusters: Vec<Arc<Cluster>>,
}

/// Everything the admin API reads (snapshots, counters) and the one
/// process-wide action it may take (`drain`, for `/quitquitquit`).
#[derive(Clone)]
pub(crate) struct AdminHandle {
    /// Published by the app at start and by every reload.
    pub topology: Arc<ArcSwap<Topology>>,
    /// This workload's certificate, when it has one.
    pub identity: Option<Arc<IdentityStore>>,
    pub drain: DrainTrigger,
    pub started_at: SystemTime,
    /// `server.config_reload_total` / `_failed`.
    pub reloads: Arc<ReloadCounters>,
    /// Span export counters, when tracing is configured.
    pub tracing: Option<Arc<Tracing>>,
    /// Access log drop counters, when configured.
    pub access_log: Option<Arc<AccessLog>>,
    /// Live fault overrides (`/fault`), shared with every route table.
    pub faults: Arc<FaultOverrides>,
}

impl AdminHandle {
    /// The current config, listeners and clusters (a snapshot).
    pub fn topology(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.topology.load()
    }
}
