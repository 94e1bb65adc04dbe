//! `mesh-cli wait` (the real binary) against a stand-in admin API that
//! answers `/ready` as mesh-proxy does, and against nothing at all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Bounds every run of the binary.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Answers `GET /ready` with `answer(n)` for the n-th request (from 0) and
/// counts the requests; also checks the Host header names the admin.
async fn stand_in(
    answer: fn(usize) -> (StatusCode, &'static str),
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            let service = hyper::service::service_fn(move |req: Request<_>| {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let host_ok = req
                    .headers()
                    .get("host")
                    .is_some_and(|h| h == addr.to_string().as_str());
                let (status, body) = if req.uri().path() != "/ready" || !host_ok {
                    (StatusCode::NOT_FOUND, "wrong request\n")
                } else {
                    answer(n)
                };
                let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *resp.status_mut() = status;
                async move { Ok::<_, hyper::Error>(resp) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    (addr, seen)
}

async fn wait(args: &[&str]) -> (std::process::Output, Duration) {
    let start = Instant::now();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .arg("wait")
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .expect("mesh-cli wait finished in time")
        .expect("run mesh-cli");
    (out, start.elapsed())
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn exits_0_quietly_once_ready_turns_200() {
    let (addr, seen) = stand_in(|n| {
        if n < 3 {
            (StatusCode::SERVICE_UNAVAILABLE, "NO_IDENTITY\n")
        } else {
            (StatusCode::OK, "LIVE\n")
        }
    })
    .await;
    let admin = addr.to_string();
    let (out, _) = wait(&["--admin", &admin, "--timeout", "20s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 4, "three 503s, then the 200");
}

#[tokio::test]
async fn says_what_it_last_saw_at_the_timeout() {
    let (addr, seen) = stand_in(|n| {
        if n < 2 {
            (StatusCode::SERVICE_UNAVAILABLE, "NO_IDENTITY\n")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n")
        }
    })
    .await;
    let admin = format!("http://{addr}/");
    let (out, took) = wait(&["--admin", &admin, "--timeout", "1s"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("error: the proxy at {addr} was not ready within 1s (last seen: 503 DRAINING)\n")
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(seen.load(Ordering::SeqCst) >= 3, "polled repeatedly");
}

#[tokio::test]
async fn nothing_listening_is_connection_refused() {
    // A port that was free a moment ago and has no listener now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let admin = addr.to_string();
    let (out, took) = wait(&["--admin", &admin, "--timeout", "1s"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(
        err,
        format!(
            "error: the proxy at {addr} was not ready within 1s (last seen: connection refused)\n"
        )
    );
    assert!(took >= Duration::from_millis(900), "kept trying: {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn help_has_an_example() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .args(["wait", "--help"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("mesh-cli wait --admin 127.0.0.1:9901"),
        "{text}"
    );
    assert!(text.contains("--timeout"), "{text}");
}
