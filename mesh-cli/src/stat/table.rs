//! The golden metrics of two scrapes of one proxy, per cluster and per
//! listener, and the tables that show them.

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};

use super::snapshot::{Snapshot, window_quantile};

/// One proxy's scrapes: the earlier (if any) and the latest.
pub struct Scrapes<'a> {
    pub admin: &'a str,
    pub before: Option<(&'a Snapshot, std::time::Instant)>,
    pub after: Result<(&'a Snapshot, std::time::Instant), &'a str>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterRow {
    pub name: String,
    pub rps: Option<f64>,
    /// Non-5xx / total over the window, 0..=1.
    pub success: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub rq_active: Option<f64>,
    pub cx_active: Option<f64>,
    pub healthy: Option<f64>,
    pub endpoints: Option<f64>,
    pub ejected: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListenerRow {
    pub name: String,
    pub rps: Option<f64>,
    pub success: Option<f64>,
    pub cx_active: Option<f64>,
}

const CLUSTER_KEYS: &[&str] = &[
    ".upstream_rq_total",
    ".upstream_rq_active",
    ".upstream_cx_active",
    ".membership_total",
    ".membership_healthy",
];
const LISTENER_KEYS: &[&str] = &[".downstream_rq_total", ".downstream_cx_active"];

/// Growth of a counter per second; a counter that went down (the proxy
/// restarted) counts from zero.
fn rate(before: Option<f64>, after: Option<f64>, secs: f64) -> Option<f64> {
    let (b, a) = (before?, after?);
    if secs <= 0.0 {
        return None;
    }
    Some(if a >= b { a - b } else { a } / secs)
}

/// `1 - Δ5xx / Δanswered` over the window, where answered is the sum of
/// the status classes (`_total` also counts attempts still in flight; it
/// stands in when the classes are missing); `None` without answers.
fn success(prefix: &str, stem: &str, before: &Snapshot, after: &Snapshot) -> Option<f64> {
    let delta = |stat: String| {
        let key = format!("{prefix}{stem}_{stat}");
        let (b, a) = (before.get(&key).unwrap_or(0.0), after.get(&key)?);
        Some(if a >= b { a - b } else { a })
    };
    let failed = delta("5xx".to_owned())?;
    let classes: Vec<Option<f64>> = ["1xx", "2xx", "3xx", "4xx", "5xx"]
        .iter()
        .map(|c| delta((*c).to_owned()))
        .collect();
    let answered = if classes[1].is_some() {
        classes.iter().flatten().sum()
    } else {
        delta("total".to_owned())?
    };
    if answered <= 0.0 {
        return None;
    }
    Some(((answered - failed) / answered).clamp(0.0, 1.0))
}

pub fn cluster_rows(before: Option<&Snapshot>, after: &Snapshot, secs: f64) -> Vec<ClusterRow> {
    let mut names = after.names("cluster.", CLUSTER_KEYS);
    names.extend(after.latency.keys().cloned());
    names
        .into_iter()
        .map(|name| {
            let p = format!("cluster.{name}.");
            let now = |stat: &str| after.get(&format!("{p}{stat}"));
            let mut row = ClusterRow {
                rq_active: now("upstream_rq_active"),
                cx_active: now("upstream_cx_active"),
                healthy: now("membership_healthy"),
                endpoints: now("membership_total"),
                ejected: now("outlier_detection.ejections_active"),
                ..ClusterRow::default()
            };
            if let Some(before) = before {
                let total = format!("{p}upstream_rq_total");
                row.rps = rate(before.get(&total), after.get(&total), secs);
                row.success = success(&p, "upstream_rq", before, after);
                if let Some(lat) = after.latency.get(&name) {
                    let prev = before.latency.get(&name).map_or(&[][..], |l| &l.buckets);
                    if lat.buckets.is_empty() {
                        // No buckets: the admin's lifetime quantiles.
                        (row.p50_ms, row.p95_ms, row.p99_ms) = (lat.p50_ms, lat.p95_ms, lat.p99_ms);
                    } else {
                        let q = |q| window_quantile(prev, &lat.buckets, q);
                        (row.p50_ms, row.p95_ms, row.p99_ms) = (q(0.5), q(0.95), q(0.99));
                    }
                }
            }
            row.name = name;
            row
        })
        .collect()
}

pub fn listener_rows(before: Option<&Snapshot>, after: &Snapshot, secs: f64) -> Vec<ListenerRow> {
    after
        .names("http.", LISTENER_KEYS)
        .into_iter()
        .map(|name| {
            let p = format!("http.{name}.");
            let total = format!("{p}downstream_rq_total");
            ListenerRow {
                rps: before.and_then(|b| rate(b.get(&total), after.get(&total), secs)),
                success: before.and_then(|b| success(&p, "downstream_rq", b, after)),
                cx_active: after.get(&format!("{p}downstream_cx_active")),
                name,
            }
        })
        .collect()
}

fn dash<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

fn count(v: Option<f64>) -> String {
    dash(v, |v| format!("{v:.0}"))
}

pub fn fmt_rps(v: Option<f64>) -> String {
    dash(v, |v| format!("{v:.1}"))
}

pub fn fmt_success(v: Option<f64>) -> String {
    dash(v, |v| format!("{:.2}%", v * 100.0))
}

pub fn fmt_ms(v: Option<f64>) -> String {
    dash(v, |v| {
        if v >= 1000.0 {
            format!("{:.2}s", v / 1000.0)
        } else if v >= 10.0 {
            format!("{v:.0}ms")
        } else {
            format!("{v:.1}ms")
        }
    })
}

fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    for (i, col) in table.column_iter_mut().enumerate() {
        // kubectl-like: no borders, three spaces between columns.
        col.set_padding((0, 3));
        if i >= 2 {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// The cluster and listener tables for every proxy, in `--admin` order;
/// a proxy that did not answer is a row saying why.
pub fn render(proxies: &[Scrapes<'_>]) -> String {
    let mut clusters = new_table(&[
        "PROXY",
        "CLUSTER",
        "RPS",
        "SUCCESS",
        "P50",
        "P95",
        "P99",
        "ACTIVE RQ",
        "ACTIVE CX",
        "ENDPOINTS",
        "EJECTED",
    ]);
    let mut listeners = new_table(&["PROXY", "LISTENER", "RPS", "SUCCESS", "ACTIVE CX"]);
    let mut any_listener = false;
    for proxy in proxies {
        let (after, at) = match proxy.after {
            Ok(scrape) => scrape,
            Err(why) => {
                let mut row = vec![proxy.admin.to_owned(), format!("(no answer: {why})")];
                row.resize(11, "-".to_owned());
                clusters.add_row(row);
                continue;
            }
        };
        let before = proxy.before.map(|(s, _)| s);
        let secs = proxy
            .before
            .map_or(0.0, |(_, t)| at.saturating_duration_since(t).as_secs_f64());
        let rows = cluster_rows(before, after, secs);
        if rows.is_empty() {
            let mut row = vec![proxy.admin.to_owned(), "(no clusters)".to_owned()];
            row.resize(11, "-".to_owned());
            clusters.add_row(row);
        }
        for r in rows {
            let endpoints = match (r.healthy, r.endpoints) {
                (Some(h), Some(t)) => format!("{h:.0}/{t:.0}"),
                (None, Some(t)) => format!("?/{t:.0}"),
                _ => "-".to_owned(),
            };
            clusters.add_row(vec![
                proxy.admin.to_owned(),
                r.name,
                fmt_rps(r.rps),
                fmt_success(r.success),
                fmt_ms(r.p50_ms),
                fmt_ms(r.p95_ms),
                fmt_ms(r.p99_ms),
                count(r.rq_active),
                count(r.cx_active),
                endpoints,
                count(r.ejected),
            ]);
        }
        for r in listener_rows(before, after, secs) {
            any_listener = true;
            listeners.add_row(vec![
                proxy.admin.to_owned(),
                r.name,
                fmt_rps(r.rps),
                fmt_success(r.success),
                count(r.cx_active),
            ]);
        }
    }
    let mut out = clusters.trim_fmt();
    out.push('\n');
    if any_listener {
        out.push('\n');
        out.push_str(&listeners.trim_fmt());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(pairs: &[(&str, f64)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (k, v) in pairs {
            s.values.insert((*k).to_owned(), *v);
        }
        s
    }

    #[test]
    fn rates_and_success_come_from_the_window() {
        let before = snap(&[
            ("cluster.pay.upstream_rq_total", 100.0),
            ("cluster.pay.upstream_rq_5xx", 10.0),
            ("http.in.downstream_rq_total", 7.0),
        ]);
        let after = snap(&[
            ("cluster.pay.upstream_rq_total", 300.0),
            ("cluster.pay.upstream_rq_5xx", 20.0),
            ("cluster.pay.upstream_rq_active", 3.0),
            ("cluster.pay.membership_healthy", 2.0),
            ("cluster.pay.membership_total", 3.0),
            ("cluster.pay.outlier_detection.ejections_active", 1.0),
            ("http.in.downstream_rq_total", 7.0),
            ("http.in.downstream_cx_active", 4.0),
        ]);
        let rows = cluster_rows(Some(&before), &after, 2.0);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.name.as_str(), r.rps), ("pay", Some(100.0)));
        assert_eq!(r.success, Some(0.95));
        assert_eq!((r.rq_active, r.cx_active), (Some(3.0), None));
        assert_eq!(
            (r.healthy, r.endpoints, r.ejected),
            (Some(2.0), Some(3.0), Some(1.0))
        );
        assert_eq!(r.p50_ms, None);

        let l = listener_rows(Some(&before), &after, 2.0);
        assert_eq!(l[0].rps, Some(0.0));
        assert_eq!(l[0].success, None, "no requests in the window");
        assert_eq!(l[0].cx_active, Some(4.0));

        // One scrape: gauges only.
        let rows = cluster_rows(None, &after, 0.0);
        assert_eq!((rows[0].rps, rows[0].success), (None, None));
        // With the classes, requests still in flight are not counted.
        let before = snap(&[("http.in.downstream_rq_total", 0.0)]);
        let after = snap(&[
            ("http.in.downstream_rq_total", 12.0),
            ("http.in.downstream_rq_2xx", 6.0),
            ("http.in.downstream_rq_4xx", 2.0),
            ("http.in.downstream_rq_5xx", 2.0),
        ]);
        let l = listener_rows(Some(&before), &after, 1.0);
        assert_eq!((l[0].rps, l[0].success), (Some(12.0), Some(0.8)));
        // A restarted proxy counts from zero.
        assert_eq!(rate(Some(500.0), Some(20.0), 2.0), Some(10.0));
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(fmt_rps(Some(12.345)), "12.3");
        assert_eq!(fmt_success(Some(0.9512)), "95.12%");
        assert_eq!(fmt_ms(Some(0.75)), "0.8ms");
        assert_eq!(fmt_ms(Some(42.4)), "42ms");
        assert_eq!(fmt_ms(Some(2500.0)), "2.50s");
        assert_eq!(fmt_ms(None), "-");
    }

    #[test]
    fn a_silent_proxy_is_a_row() {
        let out = render(&[Scrapes {
            admin: "127.0.0.1:1",
            before: None,
            after: Err("connection refused"),
        }]);
        assert!(out.contains("127.0.0.1:1"), "{out}");
        assert!(out.contains("(no answer: connection refused)"), "{out}");
        assert!(!out.contains("LISTENER"), "{out}");
    }
}
