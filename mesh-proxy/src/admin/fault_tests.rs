//! `/fault` through the admin's own dispatch, against a real (unserved)
//! runtime.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;

use super::super::{Admin, Body};
use crate::{app, config};

const YAML: &str = "
node: { name: unit }
listeners:
  - name: main
    address: 127.0.0.1:0
    routes:
      - match: { prefix: /chaos }
        cluster: backend
        fault: { abort: { status: 503, percent: 5 } }
      - match: { prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: [127.0.0.1:1]
";

fn admin() -> Admin {
    let cfg = config::load_str(YAML, "unit.yaml", Path::new(".")).unwrap();
    let bound = app::bind_all(&cfg).unwrap();
    let runtime = app::start(&cfg, bound, None).unwrap();
    Admin::new(
        runtime.admin_handle(),
        None,
        SocketAddr::from(([127, 0, 0, 1], 9901)),
    )
}

async fn call(admin: &Admin, method: &str, target: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "127.0.0.1:9901")
        .body(())
        .unwrap();
    let resp: Response<Body> = admin.handle(req);
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn json(admin: &Admin, method: &str, target: &str) -> serde_json::Value {
    let (status, body) = call(admin, method, target).await;
    assert_eq!(status, StatusCode::OK, "{method} {target}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn an_override_is_installed_listed_and_cleared_by_route_id() {
    let admin = admin();
    assert_eq!(json(&admin, "GET", "/fault").await, serde_json::json!([]));
    let installed = json(
        &admin,
        "POST",
        "/fault?route=main%2F1&abort_status=503&abort_percent=50&delay=200ms&ttl=2s",
    )
    .await;
    assert_eq!(installed["route"], "main/1");
    assert_eq!(
        installed["abort"],
        serde_json::json!({ "status": 503, "percent": 50.0 })
    );
    assert_eq!(
        installed["delay"],
        serde_json::json!({ "fixed": "200ms", "percent": 100.0 })
    );
    assert_eq!(installed["seconds_left"], 2.0);
    let listed = json(&admin, "GET", "/fault").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["route"], "main/1");
    // abort_percent alone aborts with 503; the default TTL is 60s.
    let only_percent = json(&admin, "POST", "/fault?route=main/0&abort_percent=10").await;
    assert_eq!(only_percent["abort"]["status"], 503);
    assert_eq!(only_percent["seconds_left"], 60.0);
    assert!(only_percent["delay"].is_null());
    let cleared = json(&admin, "POST", "/fault/clear?route=main/1").await;
    assert_eq!(
        cleared,
        serde_json::json!({ "route": "main/1", "cleared": true })
    );
    let again = json(&admin, "POST", "/fault/clear?route=main/1").await;
    assert_eq!(again["cleared"], false);
    let listed = json(&admin, "GET", "/fault").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["route"], "main/0");
}

#[tokio::test]
async fn bad_fault_requests_are_400_saying_what_is_wrong() {
    let admin = admin();
    for (target, part) in [
        (
            "/fault?route=main/9&abort_status=503",
            "unknown route \"main/9\" (routes: main/0, main/1)",
        ),
        ("/fault?abort_status=503", "route is missing"),
        ("/fault?route=main/0", "give abort_status and/or delay"),
        (
            "/fault?route=main/0&abort_status=200",
            "abort_status: invalid status 200",
        ),
        (
            "/fault?route=main/0&abort_status=x",
            "abort_status: \"x\" is not a status code",
        ),
        (
            "/fault?route=main/0&abort_percent=150",
            "abort_percent: 150 is invalid",
        ),
        (
            "/fault?route=main/0&delay=0s",
            "delay: must be greater than 0",
        ),
        ("/fault?route=main/0&delay=soon", "delay: invalid duration"),
        (
            "/fault?route=main/0&delay_percent=5",
            "delay_percent needs delay",
        ),
        (
            "/fault?route=main/0&abort_status=503&ttl=2h",
            "ttl: 2h is too long (at most 1h)",
        ),
        (
            "/fault?route=main/0&abort_status=503&ttl=0s",
            "ttl: must be greater than 0",
        ),
        (
            "/fault?route=main/0&abort=503",
            "unknown parameter \"abort\"",
        ),
        ("/fault/clear?route=nope", "unknown route \"nope\""),
    ] {
        let (status, body) = call(&admin, "POST", target).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{target}: {body}");
        assert!(body.contains(part), "{target}: {body:?} lacks {part:?}");
    }
    assert_eq!(json(&admin, "GET", "/fault").await, serde_json::json!([]));
    assert_eq!(
        call(&admin, "GET", "/fault/clear?route=main/0").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&admin, "PUT", "/fault").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn fault_counters_of_routes_are_in_stats() {
    let admin = admin();
    let (_, stats) = call(&admin, "GET", "/stats").await;
    assert!(stats.contains("route.main.0.fault.aborted: 0\n"), "{stats}");
    assert!(stats.contains("route.main.0.fault.delayed: 0\n"), "{stats}");
    // A route without fault config shows no counters until one is injected.
    assert!(!stats.contains("route.main.1."), "{stats}");
}
