//! The process-wide samples of [`Stats`]: the server's state and reloads,
//! tracing's and the access log's queues, the identity and its TLS
//! handshakes.

use super::{Stats, int, load};
use crate::admin::AdminHandle;
use crate::identity::IdentityStore;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::trace::Tracing;

impl Stats {
    pub(super) fn server(&mut self, rt: &AdminHandle, is_live: bool) {
        let uptime = rt.started_at.elapsed().map_or(0, |d| int(d.as_secs()));
        let rows = [
            ("server.live", "server_live", i64::from(is_live)),
            ("server.uptime", "server_uptime_seconds", uptime),
            (
                "server.config_reload_total",
                "server_config_reload",
                load(&rt.reloads.total),
            ),
            (
                "server.config_reload_failed",
                "server_config_reload_failed",
                load(&rt.reloads.failed),
            ),
        ];
        for (name, family, v) in rows {
            self.add(name.to_owned(), Some(family), Vec::new(), v);
        }
        if let Some(t) = &rt.tracing {
            self.tracing(t);
        }
        if let Some(log) = &rt.access_log {
            self.access_log(log);
        }
        if let Some(store) = &rt.identity {
            self.identity(store);
        }
    }

    fn tracing(&mut self, t: &Tracing) {
        let rows = [
            (
                "tracing.spans_started",
                "tracing_spans_started",
                load(&t.spans_started),
            ),
            (
                "tracing.spans_exported",
                "tracing_spans_exported",
                load(&t.export.exported),
            ),
            (
                "tracing.spans_export_failed",
                "tracing_spans_export_failed",
                load(&t.export.failed),
            ),
            (
                "tracing.spans_dropped",
                "tracing_spans_dropped",
                load(&t.export.dropped),
            ),
            (
                "tracing.spans_dropped_over_budget",
                "tracing_spans_dropped_over_budget",
                load(&t.export.dropped_over_budget),
            ),
        ];
        for (name, family, v) in rows {
            self.add(name.to_owned(), Some(family), Vec::new(), v);
        }
    }

    fn access_log(&mut self, log: &AccessLog) {
        self.add(
            "access_log.dropped".to_owned(),
            Some("access_log_dropped"),
            Vec::new(),
            load(&log.dropped),
        );
        self.add(
            "access_log.dropped_over_budget".to_owned(),
            Some("access_log_dropped_over_budget"),
            Vec::new(),
            load(&log.dropped_over_budget),
        );
    }

    fn identity(&mut self, store: &IdentityStore) {
        if let Some(id) = store.current() {
            let v = id.expires_in_secs();
            self.add(
                "server.cert_expiry_seconds".into(),
                Some("server_cert_expiry_seconds"),
                Vec::new(),
                v,
            );
        }
        let rotations = load(&store.rotations);
        self.add(
            "server.cert_rotations".into(),
            Some("server_cert_rotations"),
            Vec::new(),
            rotations,
        );
        let failed = load(&store.rotation_failures);
        self.add(
            "server.cert_rotation_failed".into(),
            Some("server_cert_rotation_failed"),
            Vec::new(),
            failed,
        );
    }
}
