//! Spans as `traces` prints them, made from OTLP `ExportTraceServiceRequest`s,
//! and the [`Collector`] that groups them by trace id until a trace has
//! been quiet for `--idle`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde::Serialize;
use serde_json::Value;

/// One span of the `--json` output (field order is the output's order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    #[serde(skip)]
    pub trace_id: String,
    pub span_id: String,
    /// `null` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    /// The resource attribute `service.name` (`unknown_service` without one).
    pub service: String,
    /// `SERVER`, `CLIENT`, `INTERNAL`, `PRODUCER`, `CONSUMER` or `UNSPECIFIED`.
    pub kind: &'static str,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: BTreeMap<String, Value>,
    pub status: Status,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// `UNSET`, `OK` or `ERROR`.
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub name: String,
    pub time_unix_nano: u64,
    pub attributes: BTreeMap<String, Value>,
}

impl Span {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// The HTTP status code attribute (new or old semantic conventions).
    pub fn http_status(&self) -> Option<&Value> {
        ["http.response.status_code", "http.status_code"]
            .iter()
            .find_map(|k| self.attributes.get(*k))
    }
}

/// A finished trace: spans in the order they are printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    pub trace_id: String,
    pub spans: Vec<Span>,
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// A valid (right length, not all zero) id as hex.
fn id(bytes: &[u8], len: usize) -> Option<String> {
    (bytes.len() == len && bytes.iter().any(|b| *b != 0)).then(|| hex(bytes))
}

pub fn value(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(value).collect()),
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(
            attributes(&kv.values)
                .into_iter()
                .collect::<serde_json::Map<_, _>>(),
        ),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
        Some(any_value::Value::StringValueStrindex(_)) | None => Value::Null,
    }
}

pub fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, value)))
        .collect()
}

fn kind(k: i32) -> &'static str {
    match k {
        1 => "INTERNAL",
        2 => "SERVER",
        3 => "CLIENT",
        4 => "PRODUCER",
        5 => "CONSUMER",
        _ => "UNSPECIFIED",
    }
}

fn status_code(c: i32) -> &'static str {
    match c {
        1 => "OK",
        2 => "ERROR",
        _ => "UNSET",
    }
}

/// The spans of a request, and how many were unusable (bad ids).
pub fn spans_of(request: ExportTraceServiceRequest) -> (Vec<Span>, usize) {
    let mut spans = Vec::new();
    let mut rejected = 0;
    for rs in request.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "unknown_service".to_owned());
        for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
            let (Some(trace_id), Some(span_id)) = (id(&s.trace_id, 16), id(&s.span_id, 8)) else {
                rejected += 1;
                continue;
            };
            let status = s.status.as_ref();
            spans.push(Span {
                trace_id,
                span_id,
                parent_span_id: id(&s.parent_span_id, 8),
                name: s.name,
                service: service.clone(),
                kind: kind(s.kind),
                start_unix_nano: s.start_time_unix_nano,
                end_unix_nano: s.end_time_unix_nano.max(s.start_time_unix_nano),
                attributes: attributes(&s.attributes),
                status: Status {
                    code: status_code(status.map_or(0, |st| st.code)),
                    message: status.map(|st| st.message.clone()).unwrap_or_default(),
                },
                events: s
                    .events
                    .iter()
                    .map(|e| Event {
                        name: e.name.clone(),
                        time_unix_nano: e.time_unix_nano,
                        attributes: attributes(&e.attributes),
                    })
                    .collect(),
            });
        }
    }
    (spans, rejected)
}

/// Spans waiting for their trace to go quiet.
pub struct Collector {
    idle: Duration,
    pending: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    spans: Vec<Span>,
    last: Instant,
}

/// At most this many spans wait at once (a debugging tool must not grow
/// without bound when fed a firehose); beyond it spans are dropped.
pub const MAX_PENDING_SPANS: usize = 200_000;

impl Collector {
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Adds spans (a span sent twice is kept once); returns how many were
    /// dropped because too many are waiting.
    pub fn add(&self, spans: Vec<Span>, now: Instant) -> usize {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut waiting: usize = pending.values().map(|p| p.spans.len()).sum();
        let mut dropped = 0;
        for span in spans {
            let entry = pending.entry(span.trace_id.clone()).or_insert(Pending {
                spans: Vec::new(),
                last: now,
            });
            entry.last = now;
            if let Some(same) = entry.spans.iter_mut().find(|s| s.span_id == span.span_id) {
                *same = span;
            } else if waiting >= MAX_PENDING_SPANS {
                dropped += 1;
            } else {
                entry.spans.push(span);
                waiting += 1;
            }
        }
        pending.retain(|_, p| !p.spans.is_empty());
        dropped
    }

    /// Removes and returns the traces quiet for `idle` at `now` (all of
    /// them with `flush`), the longest-quiet first.
    pub fn take_finished(&self, now: Instant, flush: bool) -> Vec<(String, Vec<Span>)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let done: Vec<String> = pending
            .iter()
            .filter(|(_, p)| flush || now.saturating_duration_since(p.last) >= self.idle)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out: Vec<(Instant, String, Vec<Span>)> = done
            .into_iter()
            .filter_map(|id| pending.remove(&id).map(|p| (p.last, id, p.spans)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        out.into_iter().map(|(_, id, spans)| (id, spans)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn attribute_values_become_json() {
        use any_value::Value as V;
        let attrs = attributes(&[
            kv("s", V::StringValue("x".into())),
            kv("i", V::IntValue(-3)),
            kv("d", V::DoubleValue(1.5)),
            kv("b", V::BoolValue(true)),
            kv("bytes", V::BytesValue(vec![0xab, 0x01])),
            kv(
                "a",
                V::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(V::IntValue(1)),
                    }],
                }),
            ),
            kv(
                "kv",
                V::KvlistValue(KeyValueList {
                    values: vec![kv("k", V::StringValue("v".into()))],
                }),
            ),
        ]);
        let json = serde_json::to_string(&attrs).expect("json");
        assert_eq!(
            json,
            r#"{"a":[1],"b":true,"bytes":"ab01","d":1.5,"i":-3,"kv":{"k":"v"},"s":"x"}"#
        );
    }

    fn span(trace: &str, id: &str) -> Span {
        Span {
            trace_id: trace.to_owned(),
            span_id: id.to_owned(),
            parent_span_id: None,
            name: id.to_owned(),
            service: "s".to_owned(),
            kind: "SERVER",
            start_unix_nano: 0,
            end_unix_nano: 1,
            attributes: BTreeMap::new(),
            status: Status {
                code: "UNSET",
                message: String::new(),
            },
            events: Vec::new(),
        }
    }

    #[test]
    fn traces_finish_after_the_idle_time_since_their_last_span() {
        let c = Collector::new(Duration::from_secs(2));
        let t0 = Instant::now();
        c.add(vec![span("t1", "a"), span("t2", "x")], t0);
        c.add(
            vec![span("t1", "b"), span("t1", "a")],
            t0 + Duration::from_secs(1),
        );
        assert!(
            c.take_finished(t0 + Duration::from_millis(1999), false)
                .is_empty()
        );
        let done = c.take_finished(t0 + Duration::from_secs(2), false);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, "t2");
        assert!(
            c.take_finished(t0 + Duration::from_millis(2999), false)
                .is_empty()
        );
        let done = c.take_finished(t0 + Duration::from_secs(3), false);
        assert_eq!(done[0].0, "t1");
        assert_eq!(done[0].1.len(), 2, "the repeated span is kept once");
        c.add(vec![span("t3", "a")], t0);
        assert_eq!(c.take_finished(t0, true).len(), 1);
    }
}
