//! End-to-end: a request through edge → sidecar → app → the app's egress
//! sidecar → the next sidecar → app is one trace with one span per proxy
//! hop, correctly parented, collected by `mesh-cli traces`.

mod trace_common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mesh_ca::testing::TestPki;
use mesh_tests::{ConfigBuilder, JsonExt, ProxyProcess, curl, free_port, route_prefix};
use serde_json::{Value, json};
use trace_common::{Traces, app};

fn identity(dir: &Path, pki: &TestPki, name: &str) -> Value {
    let files = pki.write(dir, name, &pki.leaf(&format!("spiffe://mesh.test/{name}")));
    json!({"cert": files.cert, "key": files.key, "trust_bundle": dir.join("ca.crt")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_across_three_proxies_is_one_trace_with_a_span_per_hop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new("mesh.test");
    let mut traces = Traces::start().await;
    let (http_port, grpc_port) = (traces.http_port, traces.grpc_port);
    let http_tracing = json!({"otlp_endpoint": format!("http://127.0.0.1:{http_port}"), "protocol": "http", "sampling": 1.0});
    let grpc_tracing = json!({"otlp_endpoint": format!("http://127.0.0.1:{grpc_port}"), "protocol": "grpc", "sampling": 1.0});
    let (edge, ingress_a, egress_a, ingress_b) =
        (free_port(), free_port(), free_port(), free_port());

    let app_b = app("b", None).await;
    let sidecar_b = ConfigBuilder::new()
        .set("node", json!({"name": "sidecar-b", "service": "b"}))
        .admin(free_port())
        .set("identity", identity(d, &pki, "b"))
        .set("tracing", http_tracing.clone())
        .http_listener_with(
            "ingress",
            ingress_b,
            vec![route_prefix("/", "app")],
            json!({"tls": {"mode": "mutual", "allow": ["spiffe://mesh.test/a"]}}),
        )
        .cluster("app", &[app_b]);
    let _b = ProxyProcess::start_and_wait(&sidecar_b.build(), &[], &[ingress_b])
        .await
        .expect("sidecar b");

    let app_a = app("a", Some((egress_a, "b"))).await;
    let sidecar_a = ConfigBuilder::new()
        .set("node", json!({"name": "sidecar-a", "service": "a"}))
        .admin(free_port())
        .set("identity", identity(d, &pki, "a"))
        .set("tracing", http_tracing)
        .http_listener_with(
            "ingress",
            ingress_a,
            vec![route_prefix("/", "app")],
            json!({"tls": {"mode": "mutual", "allow": ["spiffe://mesh.test/edge"]}}),
        )
        .http_listener(
            "egress",
            egress_a,
            vec![route_prefix("/", "b").with_match("host", "b")],
        )
        .cluster("app", &[app_a])
        .cluster_with(
            "b",
            &[format!("127.0.0.1:{ingress_b}")],
            json!({"tls": {"mode": "mutual", "peer": "spiffe://mesh.test/b"}}),
        );
    let _a = ProxyProcess::start_and_wait(&sidecar_a.build(), &[], &[ingress_a, egress_a])
        .await
        .expect("sidecar a");

    let mut front_route = route_prefix("/", "a");
    front_route["name"] = json!("front");
    let edge_cfg = ConfigBuilder::new()
        .set("node", json!({"name": "edge", "service": "edge"}))
        .admin(free_port())
        .set("identity", identity(d, &pki, "edge"))
        .set("tracing", grpc_tracing)
        .http_listener("public", edge, vec![front_route])
        .cluster_with(
            "a",
            &[format!("127.0.0.1:{ingress_a}")],
            json!({"protocol": "http2", "tls": {"mode": "mutual", "peer": "spiffe://mesh.test/a"}}),
        );
    let _edge = ProxyProcess::start_and_wait(&edge_cfg.build(), &[], &[edge])
        .await
        .expect("edge");

    let out = curl(&[
        "-s",
        "-w",
        " %{http_code}",
        &format!("http://127.0.0.1:{edge}/chain"),
    ])
    .await
    .expect("curl");
    assert_eq!(out.stdout, "a -> b 200");

    // The trace arrives once no span came for the idle time.
    let trace = traces.next(Duration::from_secs(15)).await;
    let line = trace.to_string();
    let spans = trace["spans"].as_array().expect("spans");
    let by = |service: &str, kind: &str| {
        spans
            .iter()
            .find(|s| s["service"] == service && s["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} span of {service} in {line}"))
    };
    assert_eq!(spans.len(), 4, "{line}");
    let (e, ia, ea, ib) = (
        by("edge", "CLIENT"),
        by("a", "SERVER"),
        by("a", "CLIENT"),
        by("b", "SERVER"),
    );
    assert!(
        e["parent_span_id"].is_null(),
        "the edge starts the trace: {line}"
    );
    assert_eq!(ia["parent_span_id"], e["span_id"], "{line}");
    assert_eq!(
        ea["parent_span_id"], ia["span_id"],
        "the app forwarded the context: {line}"
    );
    assert_eq!(ib["parent_span_id"], ea["span_id"], "{line}");
    for s in spans {
        assert_eq!(s["attributes"]["http.response.status_code"], 200, "{s}");
    }
    assert_eq!(
        ia["attributes"]["mesh.peer_identity"],
        "spiffe://mesh.test/edge"
    );
    assert_eq!(
        ib["attributes"]["mesh.peer_identity"],
        "spiffe://mesh.test/a"
    );
    assert_eq!(e["attributes"]["mesh.cluster"], "a");
    // SPEC §6: `mesh.route` is the route's name, `http.route` its pattern.
    assert_eq!(e["attributes"]["mesh.route"], "front", "{e}");
    assert_eq!(ia["attributes"]["mesh.route"], "ingress/0", "{ia}");
    for s in [e, ia] {
        assert_eq!(s["attributes"]["http.route"], "/*", "{s}");
    }
}

async fn stat(admin: u16, name: &str) -> u64 {
    mesh_tests::admin_stat(admin, name).await.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_no_request_and_every_span_is_accounted_for() {
    let ledger = mesh_tests::LedgerUpstream::start().await.expect("ledger");
    let (port, admin, dead) = (free_port(), free_port(), mesh_tests::refusing_port());
    let cfg = ConfigBuilder::new()
        .admin(admin)
        .set(
            "tracing",
            json!({"otlp_endpoint": format!("http://127.0.0.1:{}", dead.port), "protocol": "http"}),
        )
        .http_listener("main", port, vec![route_prefix("/", "up")])
        .cluster("up", &[ledger.addr()]);
    let proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port, admin])
        .await
        .expect("proxy");
    let before = proxy.rss_kib().expect("rss");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect");
                let (mut tx, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(conn);
                let mut ok = 0;
                for _ in 0..1000 {
                    let req = hyper::Request::get("/")
                        .header("host", "t")
                        .body(Full::new(Bytes::new()))
                        .expect("req");
                    let resp = tx.send_request(req).await.expect("response");
                    ok += usize::from(resp.status() == 200);
                    resp.into_body().collect().await.expect("body");
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for w in workers {
        ok += w.await.expect("worker");
    }
    assert_eq!(ok, 4000, "every request succeeded with the collector down");
    assert_eq!(stat(admin, "tracing.spans_started").await, 4000);
    // Each span is eventually either dropped (queue full) or failed to export.
    let settled = mesh_tests::wait_until_ok(
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            stat(admin, "tracing.spans_dropped").await
                + stat(admin, "tracing.spans_export_failed").await
                == 4000
        },
    )
    .await;
    assert!(settled, "spans unaccounted for");
    assert_eq!(stat(admin, "tracing.spans_exported").await, 0);
    let growth = proxy.rss_kib().expect("rss").saturating_sub(before);
    assert!(
        growth < 16 * 1024,
        "RSS grew {growth} KiB with the collector down"
    );
}
