//! `mesh-demo`: the demo service of `mesh-cli up examples/demo/`.
//!
//! - `GET /health` → `200 ok`
//! - `GET /calculate?a=1&b=2&op=add|sub|mul|div` → `{"a":1,"b":2,"op":"add","result":3}`,
//!   or `400 {"error": "..."}` on bad input and division by zero
//! - `GET /chain` → this service's name, then ` -> ` and what `--next`
//!   answered to its own `/chain`. The call goes through the sidecar's
//!   loopback egress (`--egress`) with `Host: <next>`, and carries the trace
//!   headers and `x-request-id` of the incoming request, so the mesh can tie
//!   the hops into one trace.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

/// Headers copied from the incoming request to the downstream call.
const FORWARDED: [&str; 8] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-request-id",
];

#[derive(Debug, Parser)]
#[command(
    name = "mesh-demo",
    version,
    about = "A tiny service for the demo mesh",
    after_help = "Example:\n  mesh-demo --name web --listen 127.0.0.1:8081 --egress 127.0.0.1:15001 --next api"
)]
struct Args {
    /// The service's name: it answers /chain with it.
    #[arg(long)]
    name: String,
    /// Where to serve HTTP.
    #[arg(long, value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// The sidecar's loopback egress listener, for calls to other services.
    #[arg(long, value_name = "HOST:PORT", requires = "next")]
    egress: Option<SocketAddr>,
    /// The service /chain calls next (sent as the Host header to --egress).
    #[arg(long, value_name = "SERVICE", requires = "egress")]
    next: Option<String>,
}

struct App {
    name: String,
    next: Option<(SocketAddr, String)>,
    client: Client<HttpConnector, Full<Bytes>>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let app = Arc::new(App {
        name: args.name,
        next: args.egress.zip(args.next),
        client: Client::builder(TokioExecutor::new()).build_http(),
    });
    eprintln!("mesh-demo {} listening on {}", app.name, args.listen);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let app = app.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(app.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            _ = shutdown() => return Ok(()),
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

impl App {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return json_reply(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "only GET is served"}),
            );
        }
        match req.uri().path() {
            "/health" => text(StatusCode::OK, "ok".to_owned()),
            "/calculate" => match calculate(req.uri().query().unwrap_or("")) {
                Ok(v) => json_reply(StatusCode::OK, v),
                Err(e) => json_reply(StatusCode::BAD_REQUEST, json!({ "error": e })),
            },
            "/chain" => self.chain(&req).await,
            _ => json_reply(
                StatusCode::NOT_FOUND,
                json!({"error": "not found; try /health, /calculate?a=1&b=2&op=add or /chain"}),
            ),
        }
    }

    async fn chain(&self, incoming: &Request<Incoming>) -> Response<Full<Bytes>> {
        let Some((egress, next)) = &self.next else {
            return text(StatusCode::OK, self.name.clone());
        };
        let mut out = Request::get(format!("http://{egress}/chain")).header("host", next.as_str());
        for name in FORWARDED {
            for value in incoming.headers().get_all(name) {
                out = out.header(name, value);
            }
        }
        let answer = match out.body(Full::new(Bytes::new())) {
            Ok(req) => self.client.request(req).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let resp = match answer {
            Ok(resp) => resp,
            Err(e) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("{} -> {next}: call failed: {e}", self.name),
                );
            }
        };
        let status = resp.status();
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("{} -> {next}: reading the answer failed: {e}", self.name),
                );
            }
        };
        let body = String::from_utf8_lossy(&body);
        text(status, format!("{} -> {}", self.name, body.trim_end()))
    }
}

/// `a=1&b=2&op=add` → the JSON answer, or why the input is bad.
fn calculate(query: &str) -> Result<serde_json::Value, String> {
    let params: HashMap<&str, &str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let number = |key: &str| -> Result<f64, String> {
        let raw = params
            .get(key)
            .ok_or_else(|| format!("missing parameter {key}"))?;
        match raw.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(n),
            _ => Err(format!("{key} must be a number, not {raw:?}")),
        }
    };
    let (a, b) = (number("a")?, number("b")?);
    let op = params.get("op").copied().unwrap_or("add");
    let result = match op {
        "add" => a + b,
        "sub" => a - b,
        "mul" => a * b,
        "div" if b == 0.0 => return Err("division by zero".to_owned()),
        "div" => a / b,
        other => return Err(format!("unknown op {other:?} (use add, sub, mul or div)")),
    };
    if !result.is_finite() {
        return Err("the result is too large".to_owned());
    }
    Ok(json!({"a": number_json(a), "b": number_json(b), "op": op, "result": number_json(result)}))
}

/// Whole numbers print as integers (`3`, not `3.0`).
fn number_json(n: f64) -> serde_json::Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() < EXACT {
        json!(n as i64)
    } else {
        json!(n)
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", format!("{body}\n"))
}

fn json_reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", format!("{body}\n"))
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_operations() {
        assert_eq!(
            calculate("a=1&b=2&op=add").expect("valid").to_string(),
            r#"{"a":1,"b":2,"op":"add","result":3}"#
        );
        assert_eq!(calculate("a=1&b=2&op=sub").expect("valid")["result"], -1);
        assert_eq!(calculate("a=3&b=2.5&op=mul").expect("valid")["result"], 7.5);
        assert_eq!(calculate("op=div&a=7&b=2").expect("valid")["result"], 3.5);
        assert_eq!(calculate("a=1&b=2").expect("valid")["op"], "add");
    }

    #[test]
    fn bad_input_says_why() {
        assert_eq!(
            calculate("a=1&b=0&op=div").expect_err("invalid"),
            "division by zero"
        );
        assert_eq!(
            calculate("b=2").expect_err("invalid"),
            "missing parameter a"
        );
        assert_eq!(
            calculate("a=x&b=2").expect_err("invalid"),
            "a must be a number, not \"x\""
        );
        assert_eq!(
            calculate("a=inf&b=2").expect_err("invalid"),
            "a must be a number, not \"inf\""
        );
        assert!(
            calculate("a=1&b=2&op=pow")
                .expect_err("invalid")
                .contains("unknown op")
        );
        assert!(calculate("").is_err());
        assert!(calculate("a=1e308&b=1e308&op=mul").is_err());
    }
}
