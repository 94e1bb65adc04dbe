//! Distributed tracing: W3C / B3 propagation and one span per hop exported
//! over OTLP (gRPC or HTTP/protobuf).
//!
//! The exporter runs behind the SDK's batch processor, on its own thread,
//! with a queue bounded twice, at 2,048 spans and at [`QUEUE_BYTE_BUDGET`]
//! bytes (an estimate per span, kept in one atomic): a collector that is
//! down or slow never blocks a request or grows memory; spans beyond either
//! bound are dropped and counted.
//! Without an OTLP endpoint the proxy does not participate: trace headers
//! pass through unchanged (as a non-tracing Envoy does).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};

use crate::config::{OtlpProtocol, Propagation, TracingSpec};

/// Trace headers removed before the current context is injected, so no
/// stale header of a format we do not write survives.
const TRACE_HEADERS: [&str; 8] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TextMapCompositePropagator,
    pub spans_started: AtomicU64,
    /// Spans exported, failed to export, and dropped because the queue was full.
    pub export: Arc<ExportStats>,
}

/// Export counters (`tracing.spans_*` in /stats).
#[derive(Debug, Default)]
pub struct ExportStats {
    pub exported: AtomicU64,
    pub failed: AtomicU64,
    /// Dropped because the queue held 2,048 spans.
    pub dropped: AtomicU64,
    /// Dropped because the queue held its byte budget.
    pub dropped_over_budget: AtomicU64,
    /// Ended spans handed to the exporter queue and not yet exported or failed.
    queued: AtomicU64,
    /// Their estimated bytes.
    queued_bytes: AtomicU64,
}

const MAX_QUEUE: u64 = 2048;

/// Bytes of spans the export queue may hold (besides its 2,048 spans).
pub const QUEUE_BYTE_BUDGET: u64 = 16 * 1024 * 1024;

/// What an ended span holds in memory, estimated cheaply: its own size,
/// its name, and its attributes' and events' keys and string values.
fn estimated_size(span: &SpanData) -> u64 {
    fn value_len(v: &opentelemetry::Value) -> usize {
        match v {
            opentelemetry::Value::String(s) => s.as_str().len(),
            _ => 16,
        }
    }
    fn kv_len(kv: &KeyValue) -> usize {
        std::mem::size_of::<KeyValue>() + kv.key.as_str().len() + value_len(&kv.value)
    }
    let attributes: usize = span.attributes.iter().map(kv_len).sum();
    let events: usize = span
        .events
        .iter()
        .map(|e| {
            std::mem::size_of::<opentelemetry::trace::Event>()
                + e.name.len()
                + e.attributes.iter().map(kv_len).sum::<usize>()
        })
        .sum();
    (std::mem::size_of::<SpanData>() + span.name.len() + attributes + events) as u64
}

/// Counts what the exporter did with each batch.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    stats: Arc<ExportStats>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let n = batch.len() as u64;
        let bytes: u64 = batch.iter().map(estimated_size).sum();
        let stats = Arc::clone(&self.stats);
        let fut = self.inner.export(batch);
        async move {
            let result = fut.await;
            let counter = if result.is_ok() {
                &stats.exported
            } else {
                &stats.failed
            };
            counter.fetch_add(n, Ordering::Relaxed);
            stats.release(n, bytes);
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl ExportStats {
    /// Takes a place in the queue for one span of `bytes`, or counts why not.
    fn admit(&self, bytes: u64, budget: u64) -> bool {
        let fits = self
            .queued_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                (q + bytes <= budget).then_some(q + bytes)
            })
            .is_ok();
        if !fits {
            self.dropped_over_budget.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let counted = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                (q < MAX_QUEUE).then(|| q + 1)
            })
            .is_ok();
        if !counted {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        counted
    }

    /// Gives back the places of `n` spans of `bytes` in all (exported or failed).
    fn release(&self, n: u64, bytes: u64) {
        for (counter, by) in [(&self.queued, n), (&self.queued_bytes, bytes)] {
            let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(by))
            });
        }
    }
}

/// Drops (and counts) spans itself when the export queue is full, by count
/// or by bytes, so the drop is visible; the batch processor behind it never
/// sees more than its queue holds.
#[derive(Debug)]
struct Bounded<P = BatchSpanProcessor> {
    inner: P,
    stats: Arc<ExportStats>,
    budget: u64,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.stats.admit(estimated_size(&span), self.budget) {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl Tracing {
    /// Builds the exporter and tracer; `None` without an OTLP endpoint.
    /// `service` becomes `service.name` unless `OTEL_SERVICE_NAME` is set.
    /// Must run inside the tokio runtime (the gRPC channel lives there).
    pub fn init(spec: &TracingSpec, service: &str) -> anyhow::Result<Option<Self>> {
        let Some(endpoint) = spec.otlp_endpoint.as_deref() else {
            return Ok(None);
        };
        let stats = Arc::new(ExportStats::default());
        let exporter = match spec.protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(Duration::from_secs(3))
                .build()?,
            OtlpProtocol::Http => {
                // A programmatic endpoint is used verbatim: add the path.
                let url = if endpoint.ends_with("/v1/traces") {
                    endpoint.to_owned()
                } else {
                    format!("{}/v1/traces", endpoint.trim_end_matches('/'))
                };
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_endpoint(url)
                    .with_timeout(Duration::from_secs(3))
                    .with_headers(Default::default())
                    .build()?
            }
        };
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(2048)
            .with_scheduled_delay(Duration::from_millis(500))
            .build();
        let exporter = CountingExporter {
            inner: exporter,
            stats: Arc::clone(&stats),
        };
        let processor = Bounded {
            inner: BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build(),
            stats: Arc::clone(&stats),
            budget: QUEUE_BYTE_BUDGET,
        };
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service.to_owned());
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                spec.sampling,
            ))))
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("mesh-proxy");
        let mut propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
        for p in &spec.propagation {
            match p {
                Propagation::W3c => propagators.push(Box::new(
                    opentelemetry_sdk::propagation::TraceContextPropagator::new(),
                )),
                Propagation::B3 => propagators.push(Box::new(
                    opentelemetry_propagator_b3::Propagator::with_encoding(
                        opentelemetry_propagator_b3::B3Encoding::SingleAndMultiHeader,
                    ),
                )),
            }
        }
        Ok(Some(Self {
            provider,
            tracer,
            propagator: TextMapCompositePropagator::new(propagators),
            spans_started: AtomicU64::new(0),
            export: stats,
        }))
    }

    /// Starts this hop's span as a child of the context the request carries
    /// (a new trace when it carries none; an incoming sampled flag is obeyed).
    pub fn start(
        &self,
        headers: &HeaderMap,
        name: String,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Context {
        let parent = self.propagator.extract(&HeaderExtractor(headers));
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        self.spans_started.fetch_add(1, Ordering::Relaxed);
        parent.with_span(span)
    }

    /// Writes `cx` into outgoing headers, replacing any trace headers.
    pub fn inject(&self, cx: &Context, headers: &mut HeaderMap) {
        for h in TRACE_HEADERS {
            headers.remove(h);
        }
        self.propagator
            .inject_context(cx, &mut HeaderInjector(headers));
    }

    /// Flushes queued spans (bounded by the exporter timeout).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "trace exporter shutdown");
        }
    }
}

/// The trace id of `cx`'s span as 32 hex digits, or `None` when unsampled
/// or invalid.
pub fn trace_id(cx: &Context) -> Option<String> {
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TracingSpec;

    fn spec(propagation: Vec<Propagation>) -> TracingSpec {
        TracingSpec {
            // Nothing listens there; spans are queued and dropped.
            otlp_endpoint: Some("http://127.0.0.1:9/".to_owned()),
            protocol: OtlpProtocol::Http,
            sampling: 1.0,
            propagation,
        }
    }

    #[tokio::test]
    async fn a_hop_continues_the_incoming_w3c_trace_and_writes_both_formats() {
        let t = Tracing::init(&spec(vec![Propagation::W3c, Propagation::B3]), "svc")
            .expect("init")
            .expect("some");
        let mut incoming = HeaderMap::new();
        incoming.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("hv"),
        );
        let cx = t.start(&incoming, "GET".into(), SpanKind::Server, vec![]);
        assert_eq!(
            trace_id(&cx).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let mut out = incoming.clone();
        out.insert("x-b3-flags", "1".parse().expect("hv"));
        t.inject(&cx, &mut out);
        let tp = out["traceparent"].to_str().expect("ascii");
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-01"),
            "{tp}"
        );
        assert!(
            !tp.contains("00f067aa0ba902b7"),
            "the parent id is now this hop's span: {tp}"
        );
        assert_eq!(out["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(
            out["b3"]
                .to_str()
                .expect("ascii")
                .starts_with("4bf92f3577b34da6a3ce929d0e0e4736-")
        );
        assert!(
            !out.contains_key("x-b3-flags"),
            "stale trace headers are replaced"
        );
        t.shutdown();
    }

    #[tokio::test]
    async fn b3_single_header_is_read_and_unsampled_is_obeyed() {
        let t = Tracing::init(&spec(vec![Propagation::B3]), "svc")
            .expect("init")
            .expect("some");
        let mut h = HeaderMap::new();
        h.insert(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0"
                .parse()
                .expect("hv"),
        );
        let cx = t.start(&h, "GET".into(), SpanKind::Client, vec![]);
        assert!(!cx.span().span_context().is_sampled());
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "80f198ee56343ba864fe8b2a57d3eff7"
        );
        let fresh = t.start(&HeaderMap::new(), "GET".into(), SpanKind::Client, vec![]);
        assert!(
            fresh.span().span_context().is_sampled(),
            "sampling 1.0 starts sampled traces"
        );
        t.shutdown();
    }

    /// Holds every span it is given, as a batch processor whose collector
    /// never answers would.
    #[derive(Debug, Default)]
    struct Stalled(std::sync::Mutex<Vec<SpanData>>);

    impl SpanProcessor for Stalled {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.lock().expect("lock").push(span);
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    #[test]
    fn spans_beyond_the_byte_budget_are_dropped_and_counted() {
        let stats = Arc::new(ExportStats::default());
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: Stalled::default(),
                stats: Arc::clone(&stats),
                budget: 1024 * 1024,
            })
            .build();
        let tracer = provider.tracer("test");
        let big = "p".repeat(50 * 1024);
        for _ in 0..100 {
            let span = tracer
                .span_builder("GET")
                .with_attributes(vec![KeyValue::new("url.path", big.clone())])
                .start(&tracer);
            drop(span);
        }
        let held = stats.queued.load(Ordering::Relaxed);
        let bytes = stats.queued_bytes.load(Ordering::Relaxed);
        assert!(bytes <= 1024 * 1024, "{bytes} bytes queued");
        assert!(
            (15..=20).contains(&held),
            "1 MiB holds about 20 spans of 50 KiB: {held}"
        );
        assert_eq!(
            stats.dropped_over_budget.load(Ordering::Relaxed),
            100 - held
        );
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
        // An export (or a failed one) gives the places back.
        stats.release(held, bytes);
        assert_eq!(stats.queued_bytes.load(Ordering::Relaxed), 0);
        let span = tracer.start("after");
        drop(span);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn no_endpoint_means_no_tracing() {
        let mut s = spec(vec![Propagation::W3c]);
        s.otlp_endpoint = None;
        assert!(Tracing::init(&s, "svc").expect("init").is_none());
    }
}
