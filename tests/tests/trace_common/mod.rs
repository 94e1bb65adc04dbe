//! Shared by the tracing tests: a demo app that forwards trace headers, and
//! `mesh-cli traces --json` as the collector.

use std::convert::Infallible;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mesh_tests::{bin_path, free_port};
use serde_json::Value;

pub const TRACE_HEADERS: [&str; 7] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
];

/// A demo app: `/chain` calls `next` through its egress sidecar, forwarding
/// the trace headers as real apps must; anything else answers itself.
pub async fn app(name: &'static str, egress: Option<(u16, &'static str)>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = match egress {
                            Some((port, host)) if req.uri().path() == "/chain" => {
                                let mut out = hyper::Request::get("/hello").header("host", host);
                                for h in TRACE_HEADERS {
                                    if let Some(v) = req.headers().get(h) {
                                        out = out.header(h, v);
                                    }
                                }
                                let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                                    .await
                                    .expect("egress");
                                let (mut tx, conn) = hyper::client::conn::http1::handshake(
                                    hyper_util::rt::TokioIo::new(stream),
                                )
                                .await
                                .expect("handshake");
                                tokio::spawn(conn);
                                let resp = tx
                                    .send_request(out.body(Full::new(Bytes::new())).expect("req"))
                                    .await
                                    .expect("call");
                                let next =
                                    resp.into_body().collect().await.expect("body").to_bytes();
                                format!("{name} -> {}", String::from_utf8_lossy(&next))
                            }
                            _ => name.to_owned(),
                        };
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// `mesh-cli traces --json --idle 1s` on free ports; killed by PID on drop.
pub struct Traces {
    child: Child,
    stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
    pub http_port: u16,
    pub grpc_port: u16,
}

impl Traces {
    pub async fn start() -> Traces {
        let (http_port, grpc_port) = (free_port(), free_port());
        let child = Command::new(bin_path("mesh-cli").expect("mesh-cli"))
            .args(["traces", "--json", "--idle", "1s"])
            .args(["--listen", &format!("127.0.0.1:{http_port}")])
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc_port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mesh-cli traces");
        let up = mesh_tests::wait_until_async(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok()
                    && std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_ok()
            },
        )
        .await;
        assert!(up, "mesh-cli traces is not listening");
        Traces {
            child,
            stdout: None,
            http_port,
            grpc_port,
        }
    }

    /// The next finished trace (one JSON line).
    pub async fn next(&mut self, within: Duration) -> Value {
        let mut stdout = match self.stdout.take() {
            Some(s) => s,
            None => std::io::BufReader::new(self.child.stdout.take().expect("piped stdout")),
        };
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            stdout.read_line(&mut line).map(|_| (line, stdout))
        });
        let (line, stdout) = tokio::time::timeout(within, read)
            .await
            .expect("a trace in time")
            .expect("join")
            .expect("read");
        self.stdout = Some(stdout);
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
