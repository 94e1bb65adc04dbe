//! One scrape of `GET /stats?format=json` (mesh-proxy's admin, SPEC §3
//! "Metrics"), read tolerantly: unknown keys are ignored and a missing
//! stat shows as `-` rather than failing the whole table.
//!
//! The admin serves
//! `{"stats":[{"name":"cluster.payments.upstream_rq_total","value":5},...],
//!   "histograms":[{"name":"cluster.payments.upstream_rq_time","cluster":"payments",
//!   "count":5,"sum_ms":12.5,"p50_ms":1.2,"p95_ms":3.0,"p99_ms":4.1,
//!   "buckets":[{"le_ms":0.5,"count":0},...,{"le_ms":"+Inf","count":5}]}]}`
//! with cumulative buckets, so quantiles over a window come from the
//! difference of two scrapes. A `"stats"` object of `name: value` is read
//! too.

use std::collections::{BTreeSet, HashMap};

use mesh_proxy::telemetry::metrics::cumulative_quantile as quantile;
use serde_json::Value;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Dotted name → value.
    pub values: HashMap<String, f64>,
    /// Cluster name → its `upstream_rq_time` histogram.
    pub latency: HashMap<String, Latency>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    /// Cumulative `(upper bound in ms, count)`, the last bound `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    /// The quantiles over the proxy's lifetime, as the admin computed them.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn bound(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) if s.eq_ignore_ascii_case("+inf") || s.eq_ignore_ascii_case("inf") => {
            Some(f64::INFINITY)
        }
        other => number(other),
    }
}

impl Snapshot {
    /// Reads the JSON body; an error is a short phrase for the table.
    pub fn parse(body: &[u8]) -> Result<Snapshot, String> {
        let doc: Value = serde_json::from_slice(body).map_err(|_| "not JSON".to_owned())?;
        let mut snap = Snapshot::default();
        match doc.get("stats") {
            Some(Value::Array(items)) => {
                for item in items {
                    let name = item.get("name").and_then(Value::as_str);
                    let value = item.get("value").and_then(number);
                    if let (Some(name), Some(value)) = (name, value) {
                        snap.values.insert(name.to_owned(), value);
                    }
                }
            }
            Some(Value::Object(map)) => {
                for (name, value) in map {
                    if let Some(value) = number(value) {
                        snap.values.insert(name.clone(), value);
                    }
                }
            }
            _ => return Err("no \"stats\" in the JSON".to_owned()),
        }
        let histograms = doc.get("histograms").and_then(Value::as_array);
        for h in histograms.into_iter().flatten() {
            let name = h.get("name").and_then(Value::as_str).unwrap_or("");
            let from_name = name
                .strip_prefix("cluster.")
                .and_then(|n| n.strip_suffix(".upstream_rq_time"));
            let cluster = h.get("cluster").and_then(Value::as_str).or(from_name);
            let Some(cluster) = cluster else { continue };
            let buckets = h
                .get("buckets")
                .and_then(Value::as_array)
                .map(|bs| {
                    bs.iter()
                        .filter_map(|b| {
                            let le = b.get("le_ms").or_else(|| b.get("le")).and_then(bound)?;
                            Some((le, b.get("count").and_then(number)?))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let q = |key: &str| h.get(key).and_then(number);
            snap.latency.insert(
                cluster.to_owned(),
                Latency {
                    buckets,
                    p50_ms: q("p50_ms"),
                    p95_ms: q("p95_ms"),
                    p99_ms: q("p99_ms"),
                },
            );
        }
        Ok(snap)
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// The `<name>` of every `<prefix><name><suffix>` stat (names may hold
    /// dots, so they are cut by the known suffixes), sorted.
    pub fn names(&self, prefix: &str, suffixes: &[&str]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for key in self.values.keys() {
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            for suffix in suffixes {
                if let Some(name) = rest.strip_suffix(suffix)
                    && !name.is_empty()
                {
                    out.insert(name.to_owned());
                }
            }
        }
        out
    }
}

/// The `q` quantile (0..=1) in ms of the requests between two cumulative
/// bucket lists, by the proxy's own quantile code (interpolated inside its
/// bucket like Prometheus' `histogram_quantile`; the `+Inf` bucket reports
/// the highest finite bound). `None` without requests or when the bucket
/// layouts differ.
pub fn window_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let same_layout = before.is_empty()
        || (before.len() == after.len() && before.iter().zip(after).all(|(a, b)| a.0 == b.0));
    if !same_layout {
        return None;
    }
    let delta: Vec<(f64, f64)> = after
        .iter()
        .enumerate()
        .map(|(i, &(le, n))| {
            let was = before.get(i).map_or(0.0, |b| b.1);
            // A restarted proxy counts from zero again.
            (le, if n >= was { n - was } else { n })
        })
        .collect();
    quantile(&delta, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{
      "stats": [
        {"name": "cluster.pay.ments.upstream_rq_total", "value": 10},
        {"name": "cluster.pay.ments.upstream_rq_5xx", "value": 1},
        {"name": "http.ingress.downstream_rq_total", "value": 3},
        {"name": "server.live", "value": 1},
        {"name": "odd", "value": "x"},
        {"value": 4}
      ],
      "histograms": [
        {"name": "cluster.pay.ments.upstream_rq_time", "p50_ms": 2.5,
         "buckets": [{"le_ms": 1, "count": 4}, {"le_ms": 10, "count": 10}, {"le_ms": "+Inf", "count": 10}]}
      ],
      "extra": true
    }"#;

    #[test]
    fn the_admin_json_is_read_tolerantly() {
        let s = Snapshot::parse(BODY.as_bytes()).expect("parse");
        assert_eq!(s.get("cluster.pay.ments.upstream_rq_total"), Some(10.0));
        assert_eq!(s.get("odd"), None);
        assert_eq!(
            s.names("cluster.", &[".upstream_rq_total"]),
            BTreeSet::from(["pay.ments".to_owned()])
        );
        assert_eq!(
            s.names("http.", &[".downstream_rq_total"]),
            BTreeSet::from(["ingress".to_owned()])
        );
        let lat = &s.latency["pay.ments"];
        assert_eq!(lat.p50_ms, Some(2.5));
        assert_eq!(lat.buckets.len(), 3);
        assert!(lat.buckets[2].0.is_infinite());

        let map = Snapshot::parse(br#"{"stats":{"a.b":2}}"#).expect("map form");
        assert_eq!(map.get("a.b"), Some(2.0));
        assert!(Snapshot::parse(b"<html>").is_err());
        assert!(Snapshot::parse(b"{}").is_err());
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let b = [(1.0, 4.0), (10.0, 10.0), (f64::INFINITY, 10.0)];
        // rank 5 of 10: the second bucket (4..10], 1/6 of the way from 1 to 10.
        assert_eq!(quantile(&b, 0.5), Some(2.5));
        assert_eq!(quantile(&b, 0.2), Some(0.5));
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        let slow = [(1.0, 0.0), (10.0, 0.0), (f64::INFINITY, 2.0)];
        assert_eq!(quantile(&slow, 0.99), Some(10.0));
    }

    #[test]
    fn window_quantiles_use_only_the_new_requests() {
        let before = [(1.0, 100.0), (10.0, 100.0), (f64::INFINITY, 100.0)];
        let after = [(1.0, 100.0), (10.0, 110.0), (f64::INFINITY, 110.0)];
        assert_eq!(window_quantile(&before, &after, 0.5), Some(5.5));
        assert_eq!(window_quantile(&after, &after, 0.5), None);
        assert_eq!(window_quantile(&[(2.0, 1.0)], &after, 0.5), None);
        assert_eq!(window_quantile(&[], &after, 0.5), Some(1.0 * 55.0 / 100.0));
    }
}
