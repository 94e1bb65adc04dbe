//! `mesh-cli traces` (the real binary) fed real OTLP in its three
//! encodings: OTLP/HTTP protobuf, OTLP/HTTP JSON and OTLP/gRPC.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;

/// The longest any one expected line may take.
const DEADLINE: Duration = Duration::from_secs(15);

struct Receiver {
    http: String,
    grpc: String,
    lines: mpsc::UnboundedReceiver<String>,
    _child: Child,
}

/// Starts `mesh-cli traces` on free ports and reads where it listens.
async fn receiver(extra: &[&str]) -> Receiver {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .args([
            "traces",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mesh-cli traces");
    let stderr = child.stderr.take().expect("stderr");
    let mut err_lines = BufReader::new(stderr).lines();
    let first = tokio::time::timeout(DEADLINE, err_lines.next_line())
        .await
        .expect("start-up line in time")
        .expect("read stderr")
        .expect("a start-up line");
    let rest = first
        .strip_prefix("listening for OTLP on http://")
        .unwrap_or_else(|| panic!("unexpected start-up line {first:?}"));
    let (http, rest) = rest.split_once(" and grpc://").expect("grpc address");
    let grpc = rest.split(';').next().expect("grpc address");
    let (tx, lines) = mpsc::unbounded_channel();
    let stdout = child.stdout.take().expect("stdout");
    tokio::spawn(async move {
        let mut out = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = out.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Receiver {
        http: http.to_owned(),
        grpc: grpc.to_owned(),
        lines,
        _child: child,
    }
}

impl Receiver {
    async fn line(&mut self) -> String {
        tokio::time::timeout(DEADLINE, self.lines.recv())
            .await
            .expect("a line in time")
            .expect("mesh-cli traces still running")
    }
}

const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const ROOT: [u8; 8] = [1, 1, 1, 1, 1, 1, 1, 1];
const CHILD: [u8; 8] = [2, 2, 2, 2, 2, 2, 2, 2];
const GRANDCHILD: [u8; 8] = [3, 3, 3, 3, 3, 3, 3, 3];
const T0: u64 = 1_764_000_000_000_000_000;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn otlp_span(
    trace: [u8; 16],
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: &str,
    kind: span::SpanKind,
    start_ms: u64,
    end_ms: u64,
    http_status: i64,
) -> Span {
    let error = http_status >= 500;
    Span {
        trace_id: trace.to_vec(),
        span_id: id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: name.to_owned(),
        kind: kind as i32,
        start_time_unix_nano: T0 + start_ms * 1_000_000,
        end_time_unix_nano: T0 + end_ms * 1_000_000,
        attributes: vec![
            kv(
                "http.response.status_code",
                any_value::Value::IntValue(http_status),
            ),
            kv(
                "http.request.method",
                any_value::Value::StringValue("GET".into()),
            ),
        ],
        status: Some(Status {
            code: if error { 2 } else { 0 },
            message: if error {
                "upstream failed".into()
            } else {
                String::new()
            },
        }),
        ..Default::default()
    }
}

fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv(
                "service.name",
                any_value::Value::StringValue(service.into()),
            )],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// edge (SERVER, 0–100 ms) → web (CLIENT, 10–60 ms) → db (INTERNAL,
/// 20–40 ms, 503), sent deepest first and from three services.
fn three_spans(trace: [u8; 16]) -> Vec<ResourceSpans> {
    use span::SpanKind::{Client, Internal, Server};
    vec![
        resource_spans(
            "db",
            vec![otlp_span(
                trace,
                GRANDCHILD,
                Some(CHILD),
                "SELECT orders",
                Internal,
                20,
                40,
                503,
            )],
        ),
        resource_spans(
            "web",
            vec![otlp_span(
                trace,
                CHILD,
                Some(ROOT),
                "GET /orders",
                Client,
                10,
                60,
                200,
            )],
        ),
        resource_spans(
            "edge",
            vec![otlp_span(trace, ROOT, None, "GET /", Server, 0, 100, 200)],
        ),
    ]
}

fn request(resource_spans: Vec<ResourceSpans>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest { resource_spans }
}

/// POSTs to `/v1/traces`; returns the status, content type and body.
async fn post(addr: &str, content_type: &str, body: Vec<u8>) -> (u16, String, Bytes) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::post("/v1/traces")
        .header("host", addr)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, ct, body)
}

async fn send_protobuf(addr: &str, req: &ExportTraceServiceRequest) {
    let (status, ct, body) = post(addr, "application/x-protobuf", req.encode_to_vec()).await;
    assert_eq!((status, ct.as_str()), (200, "application/x-protobuf"));
    let resp = ExportTraceServiceResponse::decode(body).expect("protobuf response");
    assert_eq!(resp.partial_success, None);
}

/// The checks every encoding must pass: one trace, three spans, in tree order.
fn check_json_trace(line: &str) {
    let v: Value = serde_json::from_str(line).expect("one JSON object");
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let spans = v["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 3, "{line}");
    let got: Vec<(&str, &Value, &str, &str, &str)> = spans
        .iter()
        .map(|s| {
            (
                s["span_id"].as_str().unwrap_or(""),
                &s["parent_span_id"],
                s["service"].as_str().unwrap_or(""),
                s["name"].as_str().unwrap_or(""),
                s["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("0101010101010101", &Value::Null, "edge", "GET /", "SERVER"),
            (
                "0202020202020202",
                &Value::from("0101010101010101"),
                "web",
                "GET /orders",
                "CLIENT"
            ),
            (
                "0303030303030303",
                &Value::from("0202020202020202"),
                "db",
                "SELECT orders",
                "INTERNAL"
            ),
        ]
    );
    assert_eq!(spans[0]["start_unix_nano"], T0);
    assert_eq!(spans[0]["end_unix_nano"], T0 + 100_000_000);
    assert_eq!(spans[0]["attributes"]["http.response.status_code"], 200);
    assert_eq!(spans[0]["attributes"]["http.request.method"], "GET");
    assert_eq!(spans[0]["status"]["code"], "UNSET");
    assert_eq!(spans[2]["status"]["code"], "ERROR");
    assert_eq!(spans[2]["status"]["message"], "upstream failed");
}

#[tokio::test]
async fn otlp_http_protobuf() {
    let mut rx = receiver(&["--json", "--idle", "300ms"]).await;
    send_protobuf(&rx.http, &request(three_spans(TRACE))).await;
    check_json_trace(&rx.line().await);
}

#[tokio::test]
async fn otlp_http_json() {
    let mut rx = receiver(&["--json", "--idle", "300ms"]).await;
    // The OTLP/JSON encoding as the SDKs write it (hex ids, camelCase,
    // 64-bit integers as strings), made by opentelemetry-proto's serde.
    let body = serde_json::to_vec(&request(three_spans(TRACE))).expect("otlp json");
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(
        text.contains("\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\""),
        "{text}"
    );
    let (status, ct, body) = post(&rx.http, "application/json", body).await;
    assert_eq!(
        (status, ct.as_str(), &body[..]),
        (200, "application/json", &b"{}"[..])
    );
    check_json_trace(&rx.line().await);

    // Hand-written OTLP/JSON (the spec's example shape, numbers as strings).
    let literal = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"curl"}}]},
      "scopeSpans":[{"scope":{"name":"manual"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
      "spanId":"eee19b7ec3c1b174","parentSpanId":"","name":"hand-made","kind":2,
      "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
      "attributes":[{"key":"n","value":{"intValue":"42"}}],"status":{"code":1}}]}]}]}"#;
    let (status, _, _) = post(&rx.http, "application/json; charset=utf-8", literal.into()).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&rx.line().await).expect("json");
    assert_eq!(v["trace_id"], "5b8efff798038103d269b633813fc60c");
    let s = &v["spans"][0];
    assert_eq!(
        (&s["service"], &s["kind"], &s["status"]["code"]),
        (&"curl".into(), &"SERVER".into(), &"OK".into())
    );
    assert_eq!(s["attributes"]["n"], 42);
    assert_eq!(s["parent_span_id"], Value::Null);
}

#[tokio::test]
async fn otlp_grpc() {
    let mut rx = receiver(&["--json", "--idle", "300ms"]).await;
    let mut client = tokio::time::timeout(
        DEADLINE,
        TraceServiceClient::connect(format!("http://{}", rx.grpc)),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    let resp = client
        .export(request(three_spans(TRACE)))
        .await
        .expect("export");
    assert_eq!(resp.into_inner().partial_success, None);
    check_json_trace(&rx.line().await);
}

#[tokio::test]
async fn bad_requests_are_refused_in_words() {
    let rx = receiver(&["--json"]).await;
    let (status, _, body) =
        post(&rx.http, "application/x-protobuf", b"\xff\xff\xff".to_vec()).await;
    assert_eq!(status, 400, "{body:?}");
    let (status, _, _) = post(&rx.http, "text/plain", b"hi".to_vec()).await;
    assert_eq!(status, 415);
    // A span without a valid id is refused, the rest accepted.
    let mut req = request(three_spans(TRACE));
    req.resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
    let (status, _, body) = post(&rx.http, "application/x-protobuf", req.encode_to_vec()).await;
    assert_eq!(status, 200);
    let resp = ExportTraceServiceResponse::decode(body).expect("protobuf response");
    assert_eq!(resp.partial_success.map(|p| p.rejected_spans), Some(1));
}

#[tokio::test]
async fn the_waterfall_indents_by_depth() {
    let mut rx = receiver(&["-v", "--idle", "300ms"]).await;
    send_protobuf(&rx.http, &request(three_spans(TRACE))).await;
    let header = rx.line().await;
    assert_eq!(
        header,
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 (3 spans, 100.0ms)"
    );
    let mut lines = Vec::new();
    loop {
        let line = rx.line().await;
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let spans: Vec<&String> = lines.iter().filter(|l| l.contains('|')).collect();
    assert_eq!(spans.len(), 3, "{lines:#?}");
    assert!(spans[0].starts_with("edge GET /  "), "{lines:#?}");
    assert!(spans[1].starts_with("  web GET /orders  "), "{lines:#?}");
    assert!(spans[2].starts_with("    db SELECT orders  "), "{lines:#?}");
    assert!(spans[0].contains("SERVER") && spans[0].contains("100.0ms"));
    assert!(spans[0].ends_with("|  OK 200"), "{lines:#?}");
    assert!(
        spans[2].ends_with("|  ERROR 503 upstream failed"),
        "{lines:#?}"
    );
    // The bars: the root fills the width; the grandchild starts at 20%.
    let bar = |l: &str| l.split('|').nth(1).map(str::to_owned).unwrap_or_default();
    assert_eq!(bar(spans[0]), "█".repeat(40));
    assert_eq!(
        bar(spans[2]),
        format!("{}{}{}", " ".repeat(8), "█".repeat(8), " ".repeat(24))
    );
    // -v: attributes under each span, indented deeper than it.
    assert!(
        lines
            .iter()
            .any(|l| l == "        http.response.status_code=503"),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l == "    http.request.method=GET"),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_trace_in_two_batches_is_printed_once_after_the_idle_time() {
    let idle = Duration::from_millis(1000);
    let mut rx = receiver(&["--json", "--idle", "1s"]).await;
    let mut batches = three_spans(TRACE);
    let first = batches.split_off(1);
    send_protobuf(&rx.http, &request(first)).await;
    // The second batch through another encoding, before the trace is idle.
    let body = serde_json::to_vec(&request(batches)).expect("json");
    let (status, _, _) = post(&rx.http, "application/json", body).await;
    assert_eq!(status, 200);
    let sent = Instant::now();
    let line = rx.line().await;
    assert!(
        sent.elapsed() >= idle - Duration::from_millis(50),
        "printed after {:?}",
        sent.elapsed()
    );
    check_json_trace(&line);
    // Nothing more comes: the trace was printed once.
    let more = tokio::time::timeout(idle * 2, rx.lines.recv()).await;
    assert!(more.is_err(), "a second printout: {more:?}");
}

#[test]
fn help_documents_the_json_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .args(["traces", "--help"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "mesh-cli traces --listen",
        "\"trace_id\"",
        "\"parent_span_id\"",
        "start_unix_nano",
        "--grpc-listen",
        "--idle",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
