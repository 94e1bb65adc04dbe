//! One walk over the running proxy's atomics gives [`Stats`]: every sample
//! with its dotted `/stats` name and, where Prometheus has it, its family
//! and labels. `/stats`, `/stats?format=json` and `/stats/prometheus` all
//! render this one list, so the three can never disagree on a name or a
//! number.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::AdminHandle;
use crate::cluster::Cluster;
use crate::identity::server::FailReason;
use crate::router::{HttpStats, RouteTable};
use crate::telemetry::metrics::{HistogramSnapshot, RejectReason};

use super::families::FAMILIES;

mod server;

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub(super) struct Sample {
    /// The dotted `/stats` name.
    pub name: String,
    /// Prometheus family; `None` for dotted-only totals (Prometheus sums
    /// the labelled series instead).
    pub family: Option<&'static str>,
    pub labels: Vec<(&'static str, String)>,
    pub value: i64,
}

pub(super) struct Histogram {
    /// `cluster.<name>.upstream_rq_time`
    pub name: String,
    pub cluster: String,
    pub snapshot: HistogramSnapshot,
}

pub(super) struct Stats {
    pub samples: Vec<Sample>,
    pub histograms: Vec<Histogram>,
}

fn load(counter: &AtomicU64) -> i64 {
    i64::try_from(counter.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
}

fn int<T: TryInto<i64>>(v: T) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

impl Stats {
    fn add(
        &mut self,
        name: String,
        family: Option<&'static str>,
        labels: Vec<(&'static str, String)>,
        value: i64,
    ) {
        self.samples.push(Sample {
            name,
            family,
            labels,
            value,
        });
    }

    /// Walks the running proxy. `is_live` is the admin's view of readiness.
    pub(super) fn collect(rt: &AdminHandle, is_live: bool) -> Self {
        let mut out = Stats {
            samples: Vec::new(),
            histograms: Vec::new(),
        };
        for l in &rt.topology().listeners {
            if let Some(http) = &l.http {
                out.listener(&l.name, &http.stats);
                out.routes(&l.name, &http.routes.load());
            }
            if let Some(authz) = &l.tcp_authz {
                out.tcp_authz(&l.name, authz);
            }
            if let Some(tls) = &l.tls {
                let lab = || vec![("listener", l.name.clone())];
                let p = format!("tls.{}.", l.name);
                let handshakes = load(&tls.stats.handshakes);
                out.add(
                    format!("{p}handshakes"),
                    Some("tls_handshakes"),
                    lab(),
                    handshakes,
                );
                out.add(
                    format!("{p}revoked"),
                    Some("tls_revoked"),
                    lab(),
                    load(&tls.stats.revoked),
                );
                for r in FailReason::ALL {
                    let mut labels = lab();
                    labels.push(("reason", r.as_str().to_owned()));
                    let v = load(&tls.stats.handshake_fail[r as usize]);
                    let name = format!("{p}handshake_fail.{}", r.as_str());
                    out.add(name, Some("tls_handshake_failures"), labels, v);
                }
            }
        }
        for c in &rt.topology().clusters {
            out.cluster(c);
        }
        out.server(rt, is_live);
        out.samples.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// `route.<listener>.<route>.<counter>`: the counters of every
    /// route's policies (`fault.aborted`, …), dotted only; the authz
    /// decisions summed per listener (SPEC §7): `authz.<listener>.allowed.
    /// <rule>`, `.denied`, `.would_deny` (see [`Stats::authz`]).
    fn routes(&mut self, listener: &str, table: &RouteTable) {
        let mut authz: Vec<(String, u64)> = Vec::new();
        for route in table.routes() {
            let p = format!("{}.", route.name.stat_prefix());
            route.policies.counters(&mut |name, v| {
                if let Some(decision) = name.strip_prefix("authz.") {
                    match authz.iter_mut().find(|(n, _)| n == decision) {
                        Some((_, sum)) => *sum += v,
                        None => authz.push((decision.to_owned(), v)),
                    }
                } else {
                    self.add(format!("{p}{name}"), None, Vec::new(), int(v));
                }
            });
        }
        self.authz(listener, authz);
    }

    /// A tcp listener's authz decisions, and `authz.<listener>.revoked`
    /// (open tunnels closed by a reload); nothing for one never configured.
    fn tcp_authz(&mut self, listener: &str, authz: &crate::policy::authz_tcp::TcpAuthz) {
        let mut sums = Vec::new();
        authz.counters(&mut |name, v| {
            if let Some(decision) = name.strip_prefix("authz.") {
                sums.push((decision.to_owned(), v));
            }
        });
        let revoked = authz.revoked_count();
        if authz.is_configured() || revoked > 0 || sums.iter().any(|(_, v)| *v > 0) {
            self.authz(listener, sums);
            let name = format!("authz.{listener}.revoked");
            self.add(name, None, Vec::new(), int(revoked));
        }
    }

    /// One listener's authz decisions (`allowed.<rule>`, `denied`,
    /// `would_deny`, each with its count) as `authz.<listener>.<decision>`
    /// and `mesh_authz_decisions_total{listener,rule,decision}`.
    fn authz(&mut self, listener: &str, decisions: Vec<(String, u64)>) {
        for (decision, v) in decisions {
            let (label, rule) = match decision.split_once('.') {
                Some(("allowed", rule)) => ("allow", rule.to_owned()),
                _ if decision == "denied" => ("deny", "-".to_owned()),
                _ => ("would_deny", "-".to_owned()),
            };
            let labels = vec![
                ("listener", listener.to_owned()),
                ("rule", rule),
                ("decision", label.to_owned()),
            ];
            let name = format!("authz.{listener}.{decision}");
            self.add(name, Some("authz_decisions"), labels, int(v));
        }
    }

    fn listener(&mut self, name: &str, s: &HttpStats) {
        let p = format!("http.{name}.");
        let lab = || vec![("listener", name.to_owned())];
        self.add(
            format!("{p}downstream_rq_total"),
            None,
            lab(),
            load(&s.downstream_rq_total),
        );
        for (i, class) in CLASSES.iter().enumerate() {
            let mut labels = lab();
            labels.push(("code_class", (*class).to_owned()));
            let v = load(&s.downstream_rq_class[i]);
            self.add(
                format!("{p}downstream_rq_{class}"),
                Some("http_downstream_rq"),
                labels,
                v,
            );
        }
        let local = load(&s.downstream_rq_local);
        self.add(
            format!("{p}downstream_rq_local"),
            Some("http_downstream_rq_local"),
            lab(),
            local,
        );
        for r in RejectReason::ALL {
            let mut labels = lab();
            labels.push(("reason", r.as_str().to_owned()));
            let v = int(s.downstream_rq_rejected.get(r));
            let n = format!("{p}downstream_rq_rejected.{}", r.as_str());
            self.add(n, Some("http_downstream_rq_rejected"), labels, v);
        }
        self.add(
            format!("{p}dropped_headers_with_underscores"),
            Some("http_dropped_headers_with_underscores"),
            lab(),
            load(&s.dropped_headers_with_underscores),
        );
        let cx = [
            (
                "downstream_cx_total",
                "http_downstream_cx",
                &s.downstream_cx_total,
            ),
            (
                "downstream_cx_active",
                "http_downstream_cx_active",
                &s.downstream_cx_active,
            ),
            (
                "downstream_cx_overflow",
                "http_downstream_cx_overflow",
                &s.downstream_cx_overflow,
            ),
            (
                "downstream_cx_parked",
                "http_downstream_cx_parked",
                &s.downstream_cx_parked,
            ),
        ];
        for (stat, family, v) in cx {
            self.add(format!("{p}{stat}"), Some(family), lab(), load(v));
        }
    }

    fn cluster(&mut self, c: &Cluster) {
        let name = c.name();
        let p = format!("cluster.{name}.");
        self.cluster_requests(c, &p);
        self.cluster_membership(c, &p);
        self.cluster_breakers(c, &p);
        self.histograms.push(Histogram {
            name: format!("{p}upstream_rq_time"),
            cluster: name.to_owned(),
            snapshot: c.stats().upstream_rq_time.snapshot(),
        });
    }

    /// Request and connection counters.
    fn cluster_requests(&mut self, c: &Cluster, p: &str) {
        let name = c.name();
        let s = c.stats();
        let lab = || vec![("cluster", name.to_owned())];
        self.add(
            format!("{p}upstream_rq_total"),
            None,
            lab(),
            load(&s.upstream_rq_total),
        );
        for (i, class) in CLASSES.iter().enumerate() {
            let mut labels = lab();
            labels.push(("code_class", (*class).to_owned()));
            let v = load(&s.upstream_rq_class[i]);
            self.add(
                format!("{p}upstream_rq_{class}"),
                Some("cluster_upstream_rq"),
                labels,
                v,
            );
        }
        let plain = [
            ("upstream_rq_active", &s.upstream_rq_active),
            ("upstream_rq_pending_active", &s.upstream_rq_pending_active),
            (
                "upstream_rq_pending_overflow",
                &s.upstream_rq_pending_overflow,
            ),
            ("upstream_rq_overflow", &s.upstream_rq_overflow),
            ("upstream_rq_retry", &s.upstream_rq_retry),
            ("upstream_rq_retry_overflow", &s.upstream_rq_retry_overflow),
            (
                "upstream_rq_retry_budget_exhausted",
                &s.upstream_rq_retry_budget_exhausted,
            ),
            ("upstream_rq_timeout", &s.upstream_rq_timeout),
            (
                "upstream_rq_per_try_timeout",
                &s.upstream_rq_per_try_timeout,
            ),
            ("upstream_cx_active", &s.upstream_cx_active),
            ("upstream_cx_connect_fail", &s.upstream_cx_connect_fail),
            ("upstream_cx_overflow", &s.upstream_cx_overflow),
        ];
        for (stat, v) in plain {
            let family = FAMILIES
                .iter()
                .find(|f| f.name.strip_prefix("cluster_") == Some(stat))
                .map(|f| f.name);
            self.add(format!("{p}{stat}"), family, lab(), load(v));
        }
        let cx_total = load(&s.upstream_cx_total);
        self.add(
            format!("{p}upstream_cx_total"),
            Some("cluster_upstream_cx"),
            lab(),
            cx_total,
        );
    }

    /// Endpoints: total, available, ejected.
    fn cluster_membership(&mut self, c: &Cluster, p: &str) {
        let name = c.name();
        let s = c.stats();
        let lab = || vec![("cluster", name.to_owned())];
        let set = c.endpoints();
        let endpoints = &set.endpoints;
        let healthy = endpoints.iter().filter(|e| e.is_available()).count();
        let ejected = endpoints.iter().filter(|e| e.health().is_ejected()).count();
        let membership = [
            (
                "membership_healthy",
                "cluster_membership_healthy",
                int(healthy),
            ),
            (
                "membership_total",
                "cluster_membership_endpoints",
                int(endpoints.len()),
            ),
            (
                "outlier_detection.ejections_active",
                "cluster_outlier_detection_ejections_active",
                int(ejected),
            ),
            (
                "outlier_detection.ejections_total",
                "cluster_outlier_detection_ejections",
                load(&s.outlier_ejections_total),
            ),
        ];
        for (stat, family, v) in membership {
            self.add(format!("{p}{stat}"), Some(family), lab(), v);
        }
    }

    /// What each circuit breaker still allows.
    fn cluster_breakers(&mut self, c: &Cluster, p: &str) {
        let name = c.name();
        let s = c.stats();
        let lab = || vec![("cluster", name.to_owned())];
        let cb = c.spec().circuit_breaker;
        let remaining = |max: u32, active: &AtomicU64| int(max).saturating_sub(load(active)).max(0);
        let breakers = [
            ("cx", remaining(cb.max_connections, &s.upstream_cx_active)),
            (
                "pending",
                remaining(cb.max_pending_requests, &s.upstream_rq_pending_active),
            ),
            ("rq", remaining(cb.max_requests, &s.upstream_rq_active)),
            (
                "retries",
                remaining(cb.max_retries, &s.upstream_retries_active),
            ),
        ];
        for (resource, v) in breakers {
            let mut labels = lab();
            labels.push(("resource", resource.to_owned()));
            let n = format!("{p}circuit_breakers.remaining_{resource}");
            self.add(n, Some("cluster_circuit_breakers_remaining"), labels, v);
        }
    }

    /// Keeps the samples and histograms whose dotted name matches.
    pub(super) fn retain(&mut self, filter: &regex::Regex) {
        self.samples.retain(|s| filter.is_match(&s.name));
        self.histograms.retain(|h| filter.is_match(&h.name));
    }

    /// `name: value` lines, sorted; histograms as Envoy prints them, by quantile.
    pub(super) fn to_text(&self) -> String {
        let samples = self
            .samples
            .iter()
            .map(|s| (s.name.as_str(), s.value.to_string()));
        let histograms = self.histograms.iter().map(|h| {
            let q = |q| fmt_ms(h.snapshot.quantile_ms(q));
            let value = format!(
                "P50({}) P95({}) P99({}) count({}) sum_ms({:.3})",
                q(0.5),
                q(0.95),
                q(0.99),
                h.snapshot.count(),
                h.snapshot.sum_ms()
            );
            (h.name.as_str(), value)
        });
        let mut lines: Vec<(&str, String)> = samples.chain(histograms).collect();
        lines.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = String::with_capacity(lines.len() * 48);
        for (name, value) in lines {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(&value);
            out.push('\n');
        }
        out
    }

    /// `{"stats":[{"name","value"}], "histograms":[...]}`; each histogram
    /// carries its cumulative buckets so a client can compute quantiles over
    /// any window from two scrapes.
    pub(super) fn to_json(&self) -> Value {
        let stats: Vec<Value> = self
            .samples
            .iter()
            .map(|s| json!({ "name": s.name, "value": s.value }))
            .collect();
        let histograms: Vec<Value> = self
            .histograms
            .iter()
            .map(|h| {
                let s = &h.snapshot;
                let buckets: Vec<Value> = s
                    .cumulative_ms()
                    .into_iter()
                    .map(|(le, n)| json!({ "le_ms": if le.is_finite() { json!(le) } else { json!("+Inf") }, "count": n }))
                    .collect();
                json!({
                    "name": h.name,
                    "cluster": h.cluster,
                    "count": s.count(),
                    "sum_ms": s.sum_ms(),
                    "p50_ms": s.quantile_ms(0.5),
                    "p95_ms": s.quantile_ms(0.95),
                    "p99_ms": s.quantile_ms(0.99),
                    "buckets": buckets,
                })
            })
            .collect();
        json!({ "stats": stats, "histograms": histograms })
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "nan".to_owned(), |v| format!("{v:.3}"))
}
