#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use http::{HeaderMap, Method};
use mesh_ca::SpiffeId;
use tokio::time::Instant;

use super::*;
use crate::config::{ListenerKind, load_str};
use crate::policy::{Policies, RoutePolicies};

/// The `fault:` of the only route of a one-listener config.
fn load(fault: &str) -> Result<FaultSpec, Vec<(String, String)>> {
    let yaml = format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:8000\n    routes:\n      - {{ cluster: app, fault: {fault} }}\nclusters:\n  - {{ name: app, endpoints: [127.0.0.1:9000] }}\n"
    );
    let config = load_str(&yaml, "proxy.yaml", Path::new("/nonexistent")).map_err(|e| {
        e.errors
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect::<Vec<_>>()
    })?;
    let ListenerKind::Http { routes } = &config.listeners[0].kind else {
        panic!("not http");
    };
    Ok(routes[0].policies.fault.clone().unwrap())
}

#[track_caller]
fn assert_error(fault: &str, path: &str, part: &str) {
    let errors = load(fault).expect_err("the fault should not validate");
    let path = format!("listeners[0].routes[0].fault{path}");
    assert!(
        errors.iter().any(|(p, m)| *p == path && m.contains(part)),
        "no error at {path} containing {part:?}: {errors:?}"
    );
}

#[test]
fn a_full_fault_validates_into_its_spec() {
    let spec = load(
        "{ delay: { fixed: 500ms, percent: 10 }, abort: { status: 503, percent: 0.5, grpc_status: 14 }, \
         from: [spiffe://mesh.local/web, spiffe://mesh.local/ns/*/sa/**], headers: { x-chaos: on } }",
    )
    .unwrap();
    assert_eq!(
        spec.delay,
        Some(FaultDelay {
            fixed: Duration::from_millis(500),
            percent: 10.0
        })
    );
    assert_eq!(
        spec.abort,
        Some(FaultAbort {
            status: StatusCode::SERVICE_UNAVAILABLE,
            grpc_status: Some(14),
            percent: 0.5
        })
    );
    let from: Vec<&str> = spec.from.iter().map(SpiffePattern::as_str).collect();
    assert_eq!(
        from,
        ["spiffe://mesh.local/web", "spiffe://mesh.local/ns/*/sa/**"]
    );
    assert_eq!(spec.headers.len(), 1);
    assert_eq!(spec.headers[0].0, "x-chaos");
    assert_eq!(spec.headers[0].1, "on");
    let dumped = serde_json::to_value(&spec).unwrap();
    assert_eq!(dumped["delay"]["fixed"], "500ms");
    assert_eq!(dumped["abort"]["grpc_status"], 14);
    assert_eq!(dumped["headers"]["x-chaos"], "on");
}

#[test]
fn percent_defaults_to_every_request_and_grpc_only_aborts_answer_503() {
    let spec = load("{ abort: { grpc_status: 14 } }").unwrap();
    let abort = spec.abort.unwrap();
    assert_eq!((abort.status.as_u16(), abort.percent), (503, 100.0));
    assert!(spec.delay.is_none() && spec.from.is_empty() && spec.headers.is_empty());
}

#[test]
fn a_fault_needs_delay_or_abort() {
    assert_error("{}", "", "needs delay, abort or both");
    assert_error("{ from: [spiffe://mesh.local/web] }", "", "needs delay");
}

#[test]
fn bad_fault_values_are_named_by_key_path() {
    assert_error("{ abort: { status: 200 } }", ".abort.status", "400-599");
    assert_error("{ abort: { status: 700 } }", ".abort.status", "400-599");
    assert_error("{ abort: { percent: 5 } }", ".abort", "needs status");
    assert_error(
        "{ abort: { status: 503, grpc_status: 17 } }",
        ".abort.grpc_status",
        "0-16",
    );
    assert_error(
        "{ abort: { status: 503, percent: 101 } }",
        ".abort.percent",
        "0 to 100",
    );
    assert_error(
        "{ delay: { fixed: 1s, percent: -1 } }",
        ".delay.percent",
        "0 to 100",
    );
    assert_error(
        "{ delay: { percent: 5 } }",
        ".delay.fixed",
        "required key is missing",
    );
    assert_error("{ delay: { fixed: 0 } }", ".delay.fixed", "greater than 0");
    assert_error(
        "{ delay: { fixed: soon } }",
        ".delay.fixed",
        "invalid duration",
    );
    assert_error(
        "{ abort: { status: 503 }, from: [spiffe://mesh.local/web-*] }",
        ".from[0]",
        "invalid SPIFFE ID",
    );
    assert_error(
        "{ abort: { status: 503 }, from: [] }",
        ".from",
        "matches no caller",
    );
    assert_error(
        "{ abort: { status: 503 }, headers: { \"bad header\": x } }",
        ".headers.bad header",
        "invalid header name",
    );
    assert_error(
        "{ abort: { status: 503, percnt: 5 } }",
        ".abort.percnt",
        "unknown key \"percnt\" (did you mean \"percent\"?)",
    );
}

fn spec(delay: Option<(u64, f64)>, abort: Option<(u16, f64)>) -> FaultSpec {
    FaultSpec {
        delay: delay.map(|(ms, percent)| FaultDelay {
            fixed: Duration::from_millis(ms),
            percent,
        }),
        abort: abort.map(|(status, percent)| FaultAbort {
            status: StatusCode::from_u16(status).unwrap(),
            grpc_status: None,
            percent,
        }),
        from: Vec::new(),
        headers: Vec::new(),
    }
}

fn policies(spec: FaultSpec) -> Policies {
    Policies::build(&RoutePolicies {
        fault: Some(spec),
        ..Default::default()
    })
}

fn counters(p: &Policies) -> Vec<(&'static str, u64)> {
    let mut out = Vec::new();
    p.counters(&mut |name, v| {
        let name = ["fault.aborted", "fault.delayed"]
            .into_iter()
            .find(|known| *known == name)
            .unwrap_or_else(|| panic!("unexpected counter {name}"));
        out.push((name, v));
    });
    out
}

fn view<'a>(headers: &'a HeaderMap, peer: Option<&'a SpiffeId>) -> RequestView<'a> {
    RequestView {
        route: "test",
        method: &Method::GET,
        path: "/",
        headers,
        peer,
    }
}

#[tokio::test(start_paused = true)]
async fn a_delay_sleeps_before_the_request_goes_on_and_is_counted() {
    let p = policies(spec(Some((500, 100.0)), None));
    assert!(p.is_configured());
    let headers = HeaderMap::new();
    let start = Instant::now();
    p.apply(&view(&headers, None)).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert_eq!(counters(&p), [("fault.aborted", 0), ("fault.delayed", 1)]);
}

#[tokio::test(start_paused = true)]
async fn the_delay_comes_before_the_abort_which_is_a_local_reply_flagged_fi() {
    let p = policies(spec(Some((300, 100.0)), Some((418, 100.0))));
    let headers = HeaderMap::new();
    let start = Instant::now();
    let err = p.apply(&view(&headers, None)).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(err.status().as_u16(), 418);
    assert_eq!(err.flag(), ResponseFlag::FaultInjected);
    let resp = err.into_response();
    assert_eq!(resp.headers()[crate::router::X_MESH_ERROR.clone()], "FI");
    assert_eq!(counters(&p), [("fault.aborted", 1), ("fault.delayed", 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_delay_longer_than_the_deadline_runs_out_the_route_timeout() {
    let p = policies(spec(Some((300, 100.0)), None));
    let headers = HeaderMap::new();
    let req = view(&headers, None);
    let applied = tokio::time::timeout(Duration::from_millis(100), p.apply(&req));
    assert!(applied.await.is_err(), "the delay outlived the timeout");
}

#[tokio::test]
async fn zero_percent_never_injects_and_a_share_is_rolled_per_request() {
    let p = policies(spec(Some((0, 0.0)), Some((503, 0.0))));
    let headers = HeaderMap::new();
    for _ in 0..1000 {
        p.apply(&view(&headers, None)).await.unwrap();
    }
    assert_eq!(counters(&p), [("fault.aborted", 0), ("fault.delayed", 0)]);
    fastrand::seed(13);
    let p = policies(spec(None, Some((503, 20.0))));
    let mut aborted = 0;
    for _ in 0..10_000 {
        aborted += usize::from(p.apply(&view(&headers, None)).await.is_err());
    }
    assert!((1800..=2200).contains(&aborted), "{aborted} of 10000");
    assert_eq!(counters(&p)[0], ("fault.aborted", aborted as u64));
}

#[tokio::test]
async fn from_and_headers_limit_the_fault_to_some_requests() {
    let mut s = spec(None, Some((503, 100.0)));
    s.from = vec![SpiffePattern::parse("spiffe://mesh.local/web").unwrap()];
    s.headers = vec![(
        HeaderName::from_static("x-chaos"),
        HeaderValue::from_static("on"),
    )];
    let p = policies(s);
    let web = SpiffeId::parse("spiffe://mesh.local/web").unwrap();
    let other = SpiffeId::parse("spiffe://mesh.local/other").unwrap();
    let mut chaos = HeaderMap::new();
    chaos.append("x-chaos", HeaderValue::from_static("off"));
    chaos.append("x-chaos", HeaderValue::from_static("on"));
    let plain = HeaderMap::new();
    assert!(p.apply(&view(&chaos, Some(&web))).await.is_err());
    assert!(p.apply(&view(&plain, Some(&web))).await.is_ok());
    assert!(p.apply(&view(&chaos, Some(&other))).await.is_ok());
    assert!(p.apply(&view(&chaos, None)).await.is_ok());
    assert_eq!(counters(&p)[0], ("fault.aborted", 1));
}

#[tokio::test]
async fn a_live_override_replaces_the_file_fault_and_costs_nothing_when_none_is_active() {
    let registry = std::sync::Arc::new(crate::policy::FaultOverrides::default());
    let mut unconfigured = Policies::build(&RoutePolicies::default());
    unconfigured.attach_fault_overrides(&registry, "edge/live".into());
    let mut configured = policies(spec(None, Some((500, 100.0))));
    configured.attach_fault_overrides(&registry, "edge/chaos".into());
    assert!(
        !unconfigured.is_configured(),
        "no override: the stages are skipped"
    );
    let headers = HeaderMap::new();
    assert_eq!(
        configured
            .apply(&view(&headers, None))
            .await
            .unwrap_err()
            .status(),
        500
    );
    let ttl = Duration::from_secs(60);
    let abort = |status: u16| spec(None, Some((status, 100.0))).abort;
    registry.install("edge/live", None, abort(503), ttl);
    registry.install("edge/chaos", None, abort(429), ttl);
    assert!(unconfigured.is_configured());
    let err = unconfigured.apply(&view(&headers, None)).await.unwrap_err();
    assert_eq!(
        (err.status().as_u16(), err.flag()),
        (503, ResponseFlag::FaultInjected)
    );
    let err = configured.apply(&view(&headers, None)).await.unwrap_err();
    assert_eq!(
        err.status().as_u16(),
        429,
        "the override replaces the file's fault"
    );
    assert_eq!(
        counters(&unconfigured),
        [("fault.aborted", 1), ("fault.delayed", 0)]
    );
    assert_eq!(
        counters(&configured),
        [("fault.aborted", 2), ("fault.delayed", 0)]
    );
    registry.clear("edge/live");
    assert!(unconfigured.apply(&view(&headers, None)).await.is_ok());
}
