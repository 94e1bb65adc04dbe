//! The admin API against a real (unserved) runtime: methods, paths,
//! Origin, stats names and formats.

use std::path::Path;

use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt as _;

use super::*;
use crate::{app, config};

const YAML: &str = "
node: { name: unit }
listeners:
  - name: main
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: [127.0.0.1:1, 127.0.0.1:2]
";

fn admin() -> Admin {
    let cfg = config::load_str(YAML, "unit.yaml", Path::new(".")).expect("valid config");
    let bound = app::bind_all(&cfg).expect("bind port 0");
    let runtime = app::start(&cfg, bound, None).expect("start");
    let local: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9901));
    Admin::new(runtime.admin_handle(), None, local)
}

fn call(admin: &Admin, method: &str, target: &str, headers: &[(&str, &str)]) -> Response<Body> {
    let mut req = Request::builder().method(method).uri(target);
    req = req.header("host", "127.0.0.1:9901");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    admin.handle(req.body(()).expect("request"))
}

async fn body(resp: Response<Body>) -> String {
    let bytes = resp.into_body().collect().await.map(|c| c.to_bytes());
    String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
}

#[tokio::test]
async fn mutations_answer_get_with_405_and_change_nothing() {
    let admin = admin();
    for path in [
        "/healthcheck/fail",
        "/quitquitquit",
        "/logging",
        "/healthcheck/ok",
    ] {
        for method in ["GET", "HEAD", "PUT"] {
            let resp = call(&admin, method, path, &[]);
            assert_eq!(
                resp.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(
                resp.headers().get("allow").map(|v| v.as_bytes()),
                Some(&b"POST"[..])
            );
        }
    }
    assert_eq!(admin.readiness(), Readiness::Live);
    assert!(!admin.proxy.drain.is_draining());
    let resp = call(&admin, "POST", "/stats", &[]);
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        resp.headers().get("allow").map(|v| v.as_bytes()),
        Some(&b"GET, HEAD"[..])
    );
}

#[tokio::test]
async fn healthcheck_fail_and_ok_flip_ready() {
    let admin = admin();
    let ready = |a: &Admin| call(a, "GET", "/ready", &[]);
    assert_eq!(ready(&admin).status(), StatusCode::OK);
    assert_eq!(body(ready(&admin)).await, "LIVE\n");
    assert_eq!(
        call(&admin, "POST", "/healthcheck/fail", &[]).status(),
        StatusCode::OK
    );
    assert_eq!(ready(&admin).status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body(ready(&admin)).await, "DRAINING\n");
    assert_eq!(
        call(&admin, "POST", "/healthcheck/ok", &[]).status(),
        StatusCode::OK
    );
    assert_eq!(body(ready(&admin)).await, "LIVE\n");
    assert_eq!(
        call(&admin, "POST", "/quitquitquit", &[]).status(),
        StatusCode::OK
    );
    assert!(admin.proxy.drain.is_draining());
    assert_eq!(body(ready(&admin)).await, "DRAINING\n");
}

#[tokio::test]
async fn foreign_origin_and_rebound_host_are_refused() {
    let admin = admin();
    let resp = call(
        &admin,
        "POST",
        "/quitquitquit",
        &[("origin", "http://evil.example")],
    );
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(!admin.proxy.drain.is_draining());
    let resp = call(
        &admin,
        "GET",
        "/stats",
        &[("origin", "http://evil.example")],
    );
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let own = call(
        &admin,
        "POST",
        "/healthcheck/ok",
        &[("origin", "http://127.0.0.1:9901")],
    );
    assert_eq!(own.status(), StatusCode::OK);
    let mut req = Request::get("/stats").body(()).expect("request");
    req.headers_mut()
        .insert("host", HeaderValue::from_static("evil.example:9901"));
    assert_eq!(admin.handle(req).status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let admin = admin();
    assert_eq!(
        call(&admin, "GET", "/nope", &[]).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&admin, "GET", "/stats/", &[]).status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn stats_are_sorted_dotted_lines_with_the_spec_names() {
    let admin = admin();
    let cluster = &admin.proxy.topology().clusters[0];
    cluster
        .stats()
        .upstream_rq_total
        .fetch_add(5, Ordering::Relaxed);
    cluster.stats().upstream_rq_class[1].fetch_add(5, Ordering::Relaxed);
    cluster
        .stats()
        .upstream_rq_time
        .record(Duration::from_millis(3));
    let text = body(call(&admin, "GET", "/stats", &[])).await;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("upstream_rq_time"))
        .collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "sorted by name");
    for want in [
        "cluster.backend.upstream_rq_total: 5",
        "cluster.backend.upstream_rq_2xx: 5",
        "cluster.backend.upstream_cx_active: 0",
        "cluster.backend.membership_healthy: 2",
        "cluster.backend.membership_total: 2",
        "cluster.backend.outlier_detection.ejections_active: 0",
        "cluster.backend.circuit_breakers.remaining_rq: 1024",
        "http.main.downstream_rq_total: 0",
        "http.main.downstream_rq_5xx: 0",
        "http.main.downstream_cx_active: 0",
        "http.main.downstream_rq_rejected.headers: 0",
        "server.live: 1",
        "server.config_reload_total: 0",
        "server.config_reload_failed: 0",
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "missing {want:?} in\n{text}"
        );
    }
    assert!(
        text.contains("cluster.backend.upstream_rq_time: P50("),
        "{text}"
    );
    assert!(
        !text.contains("cert_expiry"),
        "no identity, no expiry gauge"
    );
}

#[tokio::test]
async fn stats_filter_and_json() {
    let admin = admin();
    let text = body(call(
        &admin,
        "GET",
        "/stats?filter=%5Ehttp%5C.main%5C.downstream_rq_%5B0-9%5Dxx",
        &[],
    ))
    .await;
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("http.main.downstream_rq_"))
    );
    let bad = call(&admin, "GET", "/stats?filter=(", &[]);
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let resp = call(&admin, "GET", "/stats?format=json&filter=backend", &[]);
    assert_eq!(
        resp.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let v: serde_json::Value = serde_json::from_str(&body(resp).await).expect("json");
    let stats = v["stats"].as_array().expect("stats array");
    assert!(
        stats
            .iter()
            .all(|s| s["name"].as_str().is_some_and(|n| n.contains("backend")))
    );
    assert!(
        stats
            .iter()
            .any(|s| s["name"] == "cluster.backend.upstream_rq_total" && s["value"] == 0)
    );
    assert_eq!(v["histograms"][0]["cluster"], "backend");
    assert_eq!(
        v["histograms"][0]["buckets"].as_array().map(Vec::len),
        Some(17)
    );
}

#[tokio::test]
async fn prometheus_families_follow_the_conventions() {
    let admin = admin();
    let cluster = &admin.proxy.topology().clusters[0];
    cluster
        .stats()
        .upstream_rq_time
        .record(Duration::from_millis(3));
    cluster.stats().upstream_rq_class[1].fetch_add(1, Ordering::Relaxed);
    let resp = call(&admin, "GET", "/stats/prometheus", &[]);
    assert_eq!(
        resp.headers().get("content-type").map(|v| v.as_bytes()),
        Some(prometheus::CONTENT_TYPE.as_bytes())
    );
    let text = body(resp).await;
    assert!(text.ends_with("# EOF\n"));
    for want in [
        "# TYPE mesh_http_downstream_rq counter",
        "mesh_http_downstream_rq_total{listener=\"main\",code_class=\"2xx\"} 0",
        "mesh_cluster_upstream_rq_total{cluster=\"backend\",code_class=\"2xx\"} 1",
        "# TYPE mesh_cluster_upstream_cx_active gauge",
        "mesh_cluster_membership_healthy{cluster=\"backend\"} 2",
        "mesh_cluster_circuit_breakers_remaining{cluster=\"backend\",resource=\"rq\"} 1024",
        "# TYPE mesh_cluster_upstream_rq_time_seconds histogram",
        "mesh_cluster_upstream_rq_time_seconds_bucket{le=\"0.005\",cluster=\"backend\"} 1",
        "mesh_cluster_upstream_rq_time_seconds_bucket{le=\"0.0025\",cluster=\"backend\"} 0",
        "mesh_cluster_upstream_rq_time_seconds_count{cluster=\"backend\"} 1",
        "mesh_server_live 1",
        "mesh_server_config_reload_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "missing {want:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn views_answer_text_and_json() {
    let admin = admin();
    let clusters = body(call(&admin, "GET", "/clusters", &[])).await;
    assert!(
        clusters.contains("backend::127.0.0.1:1::health_flags::healthy"),
        "{clusters}"
    );
    assert!(
        clusters.contains("backend::127.0.0.1:2::rq_active::0"),
        "{clusters}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&body(call(&admin, "GET", "/clusters?format=json", &[])).await)
            .expect("json");
    assert_eq!(v["clusters"][0]["endpoints"][1]["address"], "127.0.0.1:2");
    let listeners = body(call(&admin, "GET", "/listeners", &[])).await;
    assert!(listeners.starts_with("main::127.0.0.1:"), "{listeners}");
    let certs = body(call(&admin, "GET", "/certs", &[])).await;
    let v: serde_json::Value = serde_json::from_str(&certs).expect("json");
    assert_eq!(v["certificates"], serde_json::json!([]));
    let dump = body(call(&admin, "GET", "/config_dump", &[])).await;
    let v: serde_json::Value = serde_json::from_str(&dump).expect("json");
    assert_eq!(v["node"]["name"], "unit");
    assert_eq!(v["clusters"][0]["endpoints"][0], "127.0.0.1:1");
    let page = call(&admin, "GET", "/", &[]);
    assert!(page.headers().contains_key("content-security-policy"));
    assert!(body(page).await.contains("<title>mesh-proxy</title>"));
}

#[tokio::test]
async fn logging_without_a_log_control_is_unavailable() {
    let admin = admin();
    let resp = call(&admin, "POST", "/logging?level=debug", &[]);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let _ = HeaderMap::new();
}
