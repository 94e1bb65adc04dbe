//! Per-request observation: the span of this hop and the access log record.
//! It exists only when tracing or an access log is configured, so a proxy
//! with neither pays nothing on the request path.
//!
//! A request is finished when its response body ends (or is dropped, for a
//! client that went away): only then are the bytes sent and the duration
//! known, and the span ended and the log record queued.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body::{Body, Frame, SizeHint};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::reply::{BoxError, ResponseBody};
use super::table::RouteName;
use crate::cluster::Outcome;
use crate::telemetry::access_log::{AccessLog, Record};
use crate::telemetry::trace::{Tracing, trace_id};

/// What a listener observes: its access logs and tracer, and the span kind
/// of its hops (SERVER for an mTLS ingress, CLIENT for egress and edge).
pub struct Observe {
    pub access_log: Option<Arc<AccessLog>>,
    pub tracing: Option<Arc<Tracing>>,
    pub span_kind: SpanKind,
}

/// One request being observed.
pub struct Exchange {
    obs: Arc<Observe>,
    start: SystemTime,
    started: Instant,
    method: http::Method,
    path: String,
    protocol: &'static str,
    headers: Vec<Option<HeaderValue>>,
    downstream: SocketAddr,
    listener: Arc<str>,
    peer_identity: Option<String>,
    cx: Option<Context>,
    pub route: Option<Arc<RouteName>>,
    /// The authz rule that allowed the request (`-` in logs when none did).
    pub authz_rule: Option<Arc<str>>,
    pub cluster: Option<Arc<str>>,
    pub upstream: Option<SocketAddr>,
    pub upstream_ms: Option<u64>,
    pub attempts: u32,
    pub retries: Vec<Outcome>,
    /// Request body bytes, counted as they stream (requests with a body).
    pub bytes_received: Option<Arc<std::sync::atomic::AtomicU64>>,
    status: u16,
    flag: &'static str,
}

impl Observe {
    pub fn begin(
        self: &Arc<Self>,
        req: &Request<hyper::body::Incoming>,
        downstream: SocketAddr,
        listener: &Arc<str>,
        peer_identity: Option<String>,
    ) -> Box<Exchange> {
        let headers = match &self.access_log {
            Some(log) => captured_headers(log, req),
            None => Vec::new(),
        };
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let cx = self.tracing.as_ref().map(|t| {
            let attrs = span_attributes(req, downstream, listener, peer_identity.as_deref());
            t.start(
                req.headers(),
                format!("{listener} {}", req.method()),
                self.span_kind.clone(),
                attrs,
            )
        });
        Box::new(Exchange {
            obs: Arc::clone(self),
            start: SystemTime::now(),
            started: Instant::now(),
            method: req.method().clone(),
            path,
            protocol: protocol(req.version()),
            headers,
            downstream,
            listener: Arc::clone(listener),
            peer_identity,
            cx,
            route: None,
            authz_rule: None,
            cluster: None,
            upstream: None,
            upstream_ms: None,
            attempts: 0,
            retries: Vec::new(),
            bytes_received: None,
            status: 0,
            flag: "-",
        })
    }
}

/// The request headers the access log formats name, in their order.
fn captured_headers(
    log: &AccessLog,
    req: &Request<hyper::body::Incoming>,
) -> Vec<Option<HeaderValue>> {
    log.wanted
        .iter()
        .map(|w| {
            let value = req.headers().get(w).map(Record::capture);
            // HTTP/2 carries the authority as `:authority`, not Host.
            match (value, w == http::header::HOST, req.uri().authority()) {
                (None, true, Some(a)) => HeaderValue::from_str(a.as_str()).ok(),
                (v, _, _) => v,
            }
        })
        .collect()
}

/// The span's attributes known when the request arrives.
fn span_attributes(
    req: &Request<hyper::body::Incoming>,
    downstream: SocketAddr,
    listener: &str,
    peer_identity: Option<&str>,
) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("http.request.method", req.method().to_string()),
        KeyValue::new("url.path", req.uri().path().to_owned()),
        KeyValue::new("network.peer.address", downstream.ip().to_string()),
        KeyValue::new("mesh.listener", listener.to_owned()),
    ];
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host = req
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            header(http::header::HOST).map(|h| h.split(':').next().unwrap_or(h).to_owned())
        });
    if let Some(host) = host {
        attrs.push(KeyValue::new("server.address", host));
    }
    if let Some(ua) = header(http::header::USER_AGENT) {
        attrs.push(KeyValue::new("user_agent.original", ua.to_owned()));
    }
    if let Some(id) = header(http::HeaderName::from_static("x-request-id")) {
        attrs.push(KeyValue::new("mesh.request_id", id.to_owned()));
    }
    if let Some(peer) = peer_identity {
        attrs.push(KeyValue::new("mesh.peer_identity", peer.to_owned()));
    }
    attrs
}

fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

impl Exchange {
    /// Writes this hop's trace context into the upstream request.
    pub fn inject(&self, headers: &mut http::HeaderMap) {
        if let (Some(t), Some(cx)) = (&self.obs.tracing, &self.cx) {
            t.inject(cx, headers);
        }
    }

    /// Records the response head (status and local-reply flag).
    pub fn respond(&mut self, status: u16, flag: Option<&'static str>) {
        self.status = status;
        self.flag = flag.unwrap_or("-");
    }

    fn finish(self: Box<Self>, bytes_sent: u64) {
        let trace = self.cx.as_ref().and_then(trace_id);
        if let Some(cx) = &self.cx {
            let span = cx.span();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(self.status),
            ));
            span.set_attribute(KeyValue::new(
                "mesh.retry_count",
                i64::from(self.attempts.saturating_sub(1)),
            ));
            if self.flag != "-" {
                span.set_attribute(KeyValue::new("mesh.response_flags", self.flag));
            }
            if let Some(rule) = &self.authz_rule {
                span.set_attribute(KeyValue::new("mesh.authz.rule", rule.to_string()));
            }
            if let Some(route) = &self.route {
                span.set_attribute(KeyValue::new("mesh.route", route.name.to_string()));
                span.set_attribute(KeyValue::new("http.route", route.pattern.to_string()));
            }
            if let Some(cluster) = &self.cluster {
                span.set_attribute(KeyValue::new("mesh.cluster", cluster.to_string()));
            }
            if let Some(up) = self.upstream {
                span.set_attribute(KeyValue::new("mesh.upstream.address", up.to_string()));
            }
            for (i, reason) in self.retries.iter().enumerate() {
                span.add_event(
                    "retry",
                    vec![
                        KeyValue::new("mesh.attempt", (i + 2) as i64),
                        KeyValue::new("mesh.retry.reason", format!("{reason:?}")),
                    ],
                );
            }
            if self.status >= 500 {
                span.set_status(Status::error(format!("{} {}", self.status, self.flag)));
            }
            span.end();
        }
        if let Some(log) = &self.obs.access_log {
            log.log(Record {
                start: self.start,
                duration: self.started.elapsed(),
                method: self.method,
                path: self.path,
                protocol: self.protocol,
                status: self.status,
                flag: self.flag,
                bytes_received: self
                    .bytes_received
                    .as_ref()
                    .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed)),
                bytes_sent,
                upstream_host: self.upstream,
                upstream_cluster: self.cluster,
                upstream_ms: self.upstream_ms,
                downstream: self.downstream,
                listener: self.listener,
                route: self.route.map(|r| Arc::clone(&r.name)),
                authz_rule: self.authz_rule,
                attempts: self.attempts,
                trace_id: trace,
                peer_identity: self.peer_identity,
                headers: self.headers,
            });
        }
    }
}

/// Finishes the exchange when dropped, whatever happened to the body.
struct Finisher {
    exchange: Option<Box<Exchange>>,
    bytes: u64,
}

impl Drop for Finisher {
    fn drop(&mut self) {
        if let Some(e) = self.exchange.take() {
            e.finish(self.bytes);
        }
    }
}

pin_project! {
    /// The body handed to hyper: the response body, counted and finished
    /// for observation when observation is on.
    pub struct ObservedBody {
        #[pin]
        inner: ResponseBody,
        finisher: Option<Finisher>,
    }
}

impl ObservedBody {
    pub fn new(inner: ResponseBody, exchange: Option<Box<Exchange>>) -> Self {
        let finisher = exchange.map(|e| Finisher {
            exchange: Some(e),
            bytes: 0,
        });
        Self { inner, finisher }
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Some(f) = this.finisher.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        f.bytes += d.len() as u64;
                    }
                }
                Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                    *this.finisher = None;
                }
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
