//! The two OTLP endpoints: HTTP `POST /v1/traces` (protobuf or JSON, as
//! OTLP/HTTP specifies) and gRPC `TraceService/Export` (the tonic service
//! generated in opentelemetry-proto, served over h2c by hyper).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;

use super::model::{Collector, spans_of};

/// The largest export accepted (the OTel SDKs batch 512 spans by default).
const MAX_BODY: usize = 32 << 20;

/// Adds a request's spans; returns how many spans were refused and why.
fn accept(collector: &Collector, request: ExportTraceServiceRequest) -> (i64, String) {
    let (spans, bad) = spans_of(request);
    let dropped = collector.add(spans, Instant::now());
    let mut why = Vec::new();
    if bad > 0 {
        why.push(format!("{bad} span(s) without a valid trace or span id"));
    }
    if dropped > 0 {
        why.push(format!("{dropped} span(s) dropped: too many spans waiting"));
        eprintln!("warning: {dropped} span(s) dropped: too many spans waiting");
    }
    let refused = i64::try_from(bad + dropped).unwrap_or(i64::MAX);
    (refused, why.join("; "))
}

fn response(refused: i64, why: String) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (refused > 0).then_some(ExportTracePartialSuccess {
            rejected_spans: refused,
            error_message: why,
        }),
    }
}

/// Serves OTLP/HTTP on `listener` for the life of the process.
pub fn spawn_http(listener: TcpListener, collector: Arc<Collector>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: let some close.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let collector = Arc::clone(&collector);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let collector = Arc::clone(&collector);
                    async move { Ok::<_, Infallible>(handle_http(req, &collector).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    reply(
        status,
        "text/plain; charset=utf-8",
        format!("{body}\n").into_bytes(),
    )
}

/// How the body is encoded, from its Content-Encoding and Content-Type;
/// the refusal when it is not one we read.
fn encoding_of(headers: &http::HeaderMap) -> Result<Encoding, Box<Response<Full<Bytes>>>> {
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
    if encoded {
        return Err(Box::new(text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed OTLP is not supported here: unset OTEL_EXPORTER_OTLP_COMPRESSION".into(),
        )));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let encoding = match mime.to_ascii_lowercase().as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        _ => {
            return Err(Box::new(text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported content-type {content_type:?}: send application/x-protobuf or application/json"
                ),
            )));
        }
    };
    Ok(encoding)
}

async fn handle_http(req: Request<Incoming>, collector: &Collector) -> Response<Full<Bytes>> {
    if req.uri().path() != "/v1/traces" {
        return text(
            StatusCode::NOT_FOUND,
            "not found: OTLP traces go to POST /v1/traces".into(),
        );
    }
    if req.method() != Method::POST {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST".into(),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let encoding = match encoding_of(req.headers()) {
        Ok(e) => e,
        Err(refusal) => return *refusal,
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the body: {e}"),
            );
        }
    };
    let request = match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice(&body).map_err(|e| e.to_string()),
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("not an OTLP ExportTraceServiceRequest: {e}"),
            );
        }
    };
    let (refused, why) = accept(collector, request);
    match encoding {
        Encoding::Protobuf => reply(
            StatusCode::OK,
            "application/x-protobuf",
            response(refused, why).encode_to_vec(),
        ),
        Encoding::Json if refused == 0 => reply(StatusCode::OK, "application/json", b"{}".to_vec()),
        Encoding::Json => {
            let body = serde_json::json!({
                "partialSuccess": { "rejectedSpans": refused.to_string(), "errorMessage": why }
            });
            reply(
                StatusCode::OK,
                "application/json",
                body.to_string().into_bytes(),
            )
        }
    }
}

struct Grpc(Arc<Collector>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let (refused, why) = accept(&self.0, request.into_inner());
        Ok(tonic::Response::new(response(refused, why)))
    }
}

/// Serves OTLP/gRPC (h2c) on `listener` for the life of the process.
pub fn spawn_grpc(listener: TcpListener, collector: Arc<Collector>) {
    let service = TraceServiceServer::new(Grpc(collector)).max_decoding_message_size(MAX_BODY);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: let some close.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
