//! `/stats/prometheus`: the samples of [`Stats`] as OpenMetrics text,
//! encoded by prometheus-client through a collector that runs per scrape
//! (the request path only ever touches atomics). Names follow the
//! Prometheus conventions: a `mesh_` prefix, base units (seconds), counters
//! ending in `_total`, histograms as `_bucket{le}` / `_sum` / `_count`.

use std::collections::HashMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::registry::Registry;

use super::families::{FAMILIES, HISTOGRAM_FAMILY, Kind};
use super::stats::Stats;
use crate::telemetry::metrics::LATENCY_BOUNDS_MS;

/// What Prometheus asks for and gets: OpenMetrics 1.0 text.
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct StatsCollector(Stats);

impl std::fmt::Debug for StatsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsCollector").finish_non_exhaustive()
    }
}

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0;
        for family in FAMILIES {
            let mut samples = stats
                .samples
                .iter()
                .filter(|s| s.family == Some(family.name))
                .peekable();
            if samples.peek().is_none() {
                continue;
            }
            let metric_type = match family.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
            for s in samples {
                let labels: Vec<(&str, &str)> =
                    s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                // Without labels the sample is written bare, not as `name{}`.
                if labels.is_empty() {
                    write_value(&mut metric, family.kind, s.value)?;
                } else {
                    let mut one = metric.encode_family(&labels)?;
                    write_value(&mut one, family.kind, s.value)?;
                }
            }
        }
        if stats.histograms.is_empty() {
            return Ok(());
        }
        let (name, help) = HISTOGRAM_FAMILY;
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for h in &stats.histograms {
            let labels = [("cluster", h.cluster.as_str())];
            let mut one = metric.encode_family(&labels)?;
            // Non-cumulative counts with their bounds in seconds; the
            // encoder accumulates them.
            let buckets: Vec<(f64, u64)> = h
                .snapshot
                .counts
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let le = LATENCY_BOUNDS_MS
                        .get(i)
                        .map_or(f64::INFINITY, |ms| ms / 1000.0);
                    (le, n)
                })
                .collect();
            let sum_seconds = h.snapshot.sum_us as f64 / 1e6;
            let none: Option<&HashMap<usize, Exemplar<NoLabelSet, f64>>> = None;
            one.encode_histogram(sum_seconds, h.snapshot.count(), &buckets, none)?;
        }
        Ok(())
    }
}

fn write_value(metric: &mut MetricEncoder, kind: Kind, value: i64) -> std::fmt::Result {
    match kind {
        Kind::Counter => {
            let v = u64::try_from(value).unwrap_or(0);
            metric.encode_counter::<NoLabelSet, _, u64>(&v, None)
        }
        Kind::Gauge => metric.encode_gauge(&value),
    }
}

/// The exposition text, ending in `# EOF`.
pub(super) fn render(stats: Stats) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("mesh");
    registry.register_collector(Box::new(StatsCollector(stats)));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}
