//! `mesh-cli stat` (the real binary) against stand-in admin APIs serving
//! canned `/stats?format=json` in mesh-proxy's shape: two scrapes with
//! different counters give a rate, a success rate and window latencies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const RUN_LIMIT: Duration = Duration::from_secs(30);

/// One scrape as mesh-proxy's admin serves it. `total`/`fives` for the
/// cluster `payments`; `slow` requests in the (10ms, 100ms] bucket.
fn stats(total: u64, fives: u64, slow: u64, downstream: u64, down_fives: u64) -> Value {
    let s = |name: &str, value: u64| json!({ "name": name, "value": value });
    let fast = 1000;
    json!({
        "stats": [
            s("cluster.payments.upstream_rq_total", total),
            s("cluster.payments.upstream_rq_2xx", total - fives),
            s("cluster.payments.upstream_rq_5xx", fives),
            s("cluster.payments.upstream_rq_active", 2),
            s("cluster.payments.upstream_cx_active", 4),
            s("cluster.payments.membership_healthy", 2),
            s("cluster.payments.membership_total", 3),
            s("cluster.payments.outlier_detection.ejections_active", 1),
            s("cluster.payments.outlier_detection.ejections_total", 5),
            s("http.ingress.downstream_rq_total", downstream),
            s("http.ingress.downstream_rq_2xx", downstream - down_fives),
            s("http.ingress.downstream_rq_5xx", down_fives),
            s("http.ingress.downstream_cx_active", 7),
            s("server.live", 1),
        ],
        "histograms": [{
            "name": "cluster.payments.upstream_rq_time",
            "cluster": "payments",
            "count": fast + slow,
            "sum_ms": 1234.5,
            "p50_ms": 0.75, "p95_ms": 9.0, "p99_ms": 9.9,
            "buckets": [
                { "le_ms": 0.5, "count": 0 },
                { "le_ms": 1.0, "count": fast },
                { "le_ms": 10.0, "count": fast },
                { "le_ms": 100.0, "count": fast + slow },
                { "le_ms": "+Inf", "count": fast + slow }
            ]
        }]
    })
}

/// Serves `/stats?format=json`: the first scrape `first`, then `later`.
async fn stand_in(first: Value, later: Value) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let bodies = Arc::new([first.to_string(), later.to_string()]);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (counter, bodies) = (Arc::clone(&counter), Arc::clone(&bodies));
            let service = hyper::service::service_fn(move |req: Request<_>| {
                let wanted = req.uri() == "/stats?format=json";
                let resp = if wanted {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    Response::new(Full::new(Bytes::from(bodies[n.min(1)].clone())))
                } else {
                    let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
                    *r.status_mut() = StatusCode::NOT_FOUND;
                    r
                };
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

/// A port with no listener.
fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// The whitespace-separated cells of the line containing `needle`.
fn row<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
        .split_whitespace()
        .collect()
}

fn rps(cell: &str) -> f64 {
    cell.parse().unwrap_or_else(|_| panic!("rps {cell:?}"))
}

#[tokio::test]
async fn two_scrapes_give_rates_success_and_latency() {
    let (proxy, seen) = stand_in(stats(1000, 10, 0, 500, 0), stats(1100, 15, 100, 550, 1)).await;
    let dead = closed_port();
    let (proxy_s, dead_s) = (proxy.to_string(), dead.to_string());
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .args(["stat", "--admin", &proxy_s, "--admin", &dead_s])
        .args(["--interval", "500ms"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .expect("in time")
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}{out:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 2, "two scrapes");

    let header = row(&text, "CLUSTER");
    assert_eq!(
        header,
        [
            "PROXY",
            "CLUSTER",
            "RPS",
            "SUCCESS",
            "P50",
            "P95",
            "P99",
            "ACTIVE",
            "RQ",
            "ACTIVE",
            "CX",
            "ENDPOINTS",
            "EJECTED"
        ]
    );
    let payments = row(&text, "payments");
    assert_eq!(payments[0], proxy_s);
    // 100 requests in the measured time between the two answers (>= 0.5 s).
    let r = rps(payments[2]);
    assert!((120.0..=200.5).contains(&r), "rps {r} in:\n{text}");
    assert_eq!(payments[3], "95.00%", "5 of 100 were 5xx");
    // All 100 window requests fell in (10ms, 100ms]: interpolated quantiles.
    assert_eq!(payments[4], "55ms");
    assert_eq!(payments[6], "99ms");
    assert_eq!(&payments[7..], ["2", "4", "2/3", "1"]);

    let dead_row = row(&text, &dead_s);
    assert_eq!(
        dead_row[1..].join(" "),
        "(no answer: connection refused) - - - - - - - - -",
        "{text}"
    );

    let ingress = row(&text, "ingress");
    let r = rps(ingress[2]);
    assert!((60.0..=100.5).contains(&r), "listener rps {r} in:\n{text}");
    assert_eq!(&ingress[3..], ["98.00%", "7"]);
}

#[tokio::test]
async fn no_proxy_answering_exits_1_after_the_table() {
    let dead = closed_port().to_string();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .args(["stat", "--admin", &dead, "--interval", "100ms"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .expect("in time")
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(no answer: connection refused)"), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no proxy answered\n"
    );
}

#[tokio::test]
async fn watch_redraws_every_interval() {
    let (proxy, _) = stand_in(stats(1000, 0, 0, 10, 0), stats(1000, 0, 0, 10, 0)).await;
    let proxy_s = proxy.to_string();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .args([
            "stat",
            "--admin",
            &proxy_s,
            "--watch",
            "--interval",
            "200ms",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut frames = 0;
    let mut payments_rows = Vec::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("every 200ms") {
                frames += 1;
            }
            if line.contains("payments") {
                payments_rows.push(line);
            }
            if payments_rows.len() == 3 {
                break;
            }
        }
    };
    tokio::time::timeout(RUN_LIMIT, read)
        .await
        .expect("three frames in time");
    child.kill().await.expect("stop mesh-cli stat --watch");
    assert_eq!(frames, 3);
    // The first frame has one scrape: no rate yet; later ones have a window.
    let first: Vec<&str> = payments_rows[0].split_whitespace().collect();
    assert_eq!(first[2], "-");
    let later: Vec<&str> = payments_rows[2].split_whitespace().collect();
    assert_eq!(later[2], "0.0", "{later:?}");
    assert_eq!(later[3], "-", "no requests in the window: {later:?}");
}

#[test]
fn help_has_an_example() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .args(["stat", "--help"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("mesh-cli stat --admin 127.0.0.1:9901"),
        "{text}"
    );
    assert!(text.contains("--watch"), "{text}");
}
