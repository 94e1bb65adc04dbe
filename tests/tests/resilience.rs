//! End-to-end: retries, circuit breakers, outlier detection, health checks
//! and rate limits against the fault upstream (RELIABILITY O13/O14, R1–R5).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mesh_tests::{
    ConfigBuilder, FaultUpstream, JsonExt, LedgerUpstream, ProxyProcess, curl, free_port,
    route_prefix,
};
use serde_json::json;

async fn start(cfg: &ConfigBuilder, port: u16) -> ProxyProcess {
    ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts")
}

fn retry_route(prefix: &str, cluster: &str) -> serde_json::Value {
    route_prefix(prefix, cluster).with("timeout", "2s").with(
        "retry",
        json!({"attempts": 2, "on": ["connect-failure", "reset", "5xx"], "per_try_timeout": "1s",
               "backoff": {"base": "5ms", "max": "20ms"}, "budget": {"ratio": 0.2, "min_per_second": 10}}),
    )
}

/// `(status, headers text)` of one request.
async fn request(url: &str, extra: &[&str]) -> (u16, String) {
    let mut args = vec!["-s", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args).await.expect("curl");
    let (head, code) = out.stdout.split_at(out.stdout.len().saturating_sub(3));
    (code.parse().unwrap_or(0), head.to_ascii_lowercase())
}

/// Status codes of `n` sequential requests on one keep-alive connection.
async fn statuses(url: &str, n: usize) -> Vec<u16> {
    let mut args = vec!["-s", "-w", "%{http_code}\\n"];
    for _ in 0..n {
        args.extend_from_slice(&["-o", "/dev/null", url]);
    }
    let out = curl(&args).await.expect("curl");
    out.stdout.lines().map(|l| l.parse().unwrap_or(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o14_post_is_never_retried_after_reaching_upstream_but_get_is() {
    let fault = FaultUpstream::start().await.expect("fault");
    let dead = mesh_tests::refusing_port();
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener(
            "main",
            port,
            vec![
                retry_route("/fault/", "fault"),
                retry_route("/dead", "dead"),
            ],
        )
        .cluster("fault", &[fault.addr()])
        .cluster("dead", &[format!("127.0.0.1:{}", dead.port)]);
    let _proxy = start(&cfg, port).await;
    let base = format!("http://127.0.0.1:{port}");

    let (status, _) = request(
        &format!("{base}/fault/reset-after-read"),
        &["-X", "POST", "--data", "x=1"],
    )
    .await;
    assert!(matches!(status, 502 | 503), "{status}");
    assert_eq!(
        fault.requests_by_method("reset-after-read", "POST"),
        1,
        "a POST that reached the upstream is not retried"
    );

    let (status, head) = request(&format!("{base}/fault/reset-after-read"), &[]).await;
    assert!(matches!(status, 502 | 503), "{status}");
    assert_eq!(
        fault.requests_by_method("reset-after-read", "GET"),
        3,
        "GET: 1 try + 2 retries"
    );
    assert!(head.contains("x-mesh-attempt-count: 3"), "{head}");

    // Nothing reaches a dead endpoint, so even POST may be retried.
    let (status, head) = request(&format!("{base}/dead"), &["-X", "POST", "--data", "x=1"]).await;
    assert_eq!(status, 503);
    assert!(head.contains("x-mesh-error: uf"), "{head}");
    assert!(head.contains("x-mesh-attempt-count: 3"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_503_succeeds_on_another_endpoint_and_reports_attempts() {
    let fault = FaultUpstream::start().await.expect("fault");
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![retry_route("/", "mixed")])
        .cluster("mixed", &[fault.addr(), ledger.addr()]);
    let _proxy = start(&cfg, port).await;
    for _ in 0..6 {
        let (status, head) = request(&format!("http://127.0.0.1:{port}/x/503"), &[]).await;
        assert_eq!(status, 200, "{head}");
    }
    let retried = fault.requests("503") as usize;
    assert!(
        retried >= 2,
        "round robin sends some first tries to the failing endpoint: {retried}"
    );
    assert_eq!(ledger.entries().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_flapping_endpoints_cost_zero_failed_requests() {
    let good = LedgerUpstream::start().await.expect("good");
    let flapping = FaultUpstream::start().await.expect("flapping");
    let dead = mesh_tests::refusing_port();
    let port = free_port();
    let route = route_prefix("/", "svc").with("timeout", "3s").with(
        "retry",
        json!({"attempts": 2, "on": ["connect-failure", "reset", "5xx"], "per_try_timeout": "1s",
               "backoff": {"base": "2ms", "max": "10ms"}, "budget": {"ratio": 1.0, "min_per_second": 50}}),
    );
    let cfg = ConfigBuilder::new().http_listener("main", port, vec![route]).cluster_with(
        "svc",
        &[good.addr().to_string(), flapping.addr().to_string(), format!("127.0.0.1:{}", dead.port)],
        json!({"outlier_detection": {"consecutive_5xx": 3, "consecutive_gateway_failure": 3, "base_ejection_time": "2s", "max_ejection_percent": 67},
               "circuit_breaker": {"max_retries": 16}}),
    );
    let _proxy = start(&cfg, port).await;

    // The flapping endpoint alternates between 503 and 200 every 150 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let stop = Arc::clone(&stop);
        let flapping = Arc::new(flapping);
        let f = Arc::clone(&flapping);
        tokio::spawn(async move {
            let mut up = false;
            while !stop.load(Ordering::Relaxed) {
                f.set_toggle(up);
                up = !up;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            flapping
        })
    };
    // Steady load: 4 workers, 3 s.
    let failures = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(3);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (failures, total) = (Arc::clone(&failures), Arc::clone(&total));
            let url = format!("http://127.0.0.1:{port}/svc/toggle");
            tokio::spawn(async move {
                let stream_addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
                let stream = tokio::net::TcpStream::connect(stream_addr)
                    .await
                    .expect("connect");
                let (mut tx, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(conn);
                while Instant::now() < deadline {
                    let req = hyper::Request::get(url.as_str())
                        .header("host", "svc")
                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                        .expect("req");
                    let resp = tx.send_request(req).await.expect("response");
                    total.fetch_add(1, Ordering::Relaxed);
                    if resp.status() != 200 {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    http_body_util::BodyExt::collect(resp.into_body())
                        .await
                        .expect("body");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flapper.await;
    let total = total.load(Ordering::Relaxed);
    assert!(total > 100, "too little load to judge: {total}");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed requests out of {total}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_fast_with_uo_while_capacity_keeps_serving() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "up")])
        .cluster_with(
            "up",
            &[ledger.addr()],
            json!({"circuit_breaker": {"max_requests": 2, "max_pending_requests": 2}}),
        );
    let _proxy = start(&cfg, port).await;
    let url = format!("http://127.0.0.1:{port}/slow?ms=800");
    let started = Instant::now();
    let reqs: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let r = request(&url, &[]).await;
                (r, t.elapsed())
            })
        })
        .collect();
    let mut ok = 0;
    let mut shed = 0;
    for r in reqs {
        let ((status, head), took) = r.await.expect("join");
        match status {
            200 => ok += 1,
            503 => {
                shed += 1;
                assert!(
                    head.contains("x-mesh-error: uo") && head.contains("x-mesh-overloaded: true"),
                    "{head}"
                );
                assert!(
                    took < Duration::from_millis(500),
                    "shedding must be fast, took {took:?}"
                );
            }
            other => panic!("unexpected {other}: {head}"),
        }
    }
    assert!(
        ok >= 2,
        "the healthy capacity keeps serving: {ok} ok, {shed} shed"
    );
    assert!(shed >= 1, "beyond capacity, requests are shed: {ok} ok");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_route_answers_429_rl_when_the_bucket_is_empty() {
    let port = free_port();
    let route = mesh_tests::route_prefix_direct("/", 200, "ok")
        .with("rate_limit", json!({"requests_per_second": 1, "burst": 3}));
    let cfg = ConfigBuilder::new().http_listener("main", port, vec![route]);
    let _proxy = start(&cfg, port).await;
    let codes = statuses(&format!("http://127.0.0.1:{port}/"), 5).await;
    assert_eq!(codes, vec![200, 200, 200, 429, 429]);
    let (status, head) = request(&format!("http://127.0.0.1:{port}/"), &[]).await;
    assert_eq!(status, 429);
    assert!(head.contains("x-mesh-error: rl"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_5xx_eject_an_endpoint_until_the_ejection_time_passes() {
    let fault = FaultUpstream::start().await.expect("fault");
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new().http_listener("main", port, vec![route_prefix("/", "svc")]).cluster_with(
        "svc",
        &[fault.addr(), ledger.addr()],
        json!({"outlier_detection": {"consecutive_5xx": 2, "base_ejection_time": "30s", "max_ejection_percent": 50}}),
    );
    let _proxy = start(&cfg, port).await;
    let codes = statuses(&format!("http://127.0.0.1:{port}/x/503"), 20).await;
    assert_eq!(
        fault.requests("503"),
        2,
        "ejected after two 503s: {codes:?}"
    );
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 2);
    assert_eq!(ledger.entries().len(), 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_checks_take_an_endpoint_out_of_rotation() {
    let fault = FaultUpstream::start().await.expect("fault");
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    // The fault upstream never answers /hang; the ledger echoes it.
    let cfg = ConfigBuilder::new().http_listener("main", port, vec![route_prefix("/", "svc")]).cluster_with(
        "svc",
        &[fault.addr(), ledger.addr()],
        json!({"health_check": {"path": "/hang", "interval": "200ms", "timeout": "100ms", "unhealthy_threshold": 2, "healthy_threshold": 1}}),
    );
    let _proxy = start(&cfg, port).await;
    let probed =
        mesh_tests::wait_until_async(Duration::from_secs(5), Duration::from_millis(50), || {
            fault.requests("hang") >= 2
        })
        .await;
    assert!(probed, "health checks never reached the endpoint");
    // Two failed probes later, ten requests in a row all land on the ledger.
    let drained = mesh_tests::wait_until_ok(
        Duration::from_secs(5),
        Duration::from_millis(100),
        || async {
            let before = fault.requests("ok");
            for _ in 0..10 {
                if mesh_tests::curl_status(&format!("http://127.0.0.1:{port}/ok"), &[])
                    .await
                    .map(|r| r.0)
                    .unwrap_or(0)
                    != 200
                {
                    return false;
                }
            }
            fault.requests("ok") == before
        },
    )
    .await;
    assert!(drained, "unhealthy endpoint still receives traffic");
}
