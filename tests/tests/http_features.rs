//! End-to-end: the HTTP data plane's features through the real binary —
//! protocols both ways, pooling, routing, rewrites, headers, DNS discovery.

use std::time::Duration;

use mesh_tests::{
    ConfigBuilder, JsonExt, LedgerUpstream, ProxyProcess, curl, curl_status, free_port,
    route_prefix,
};
use serde_json::json;

async fn start(cfg: &ConfigBuilder, port: u16) -> ProxyProcess {
    ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts")
}

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_and_h2c_clients_reach_h1_and_h2_upstreams() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener(
            "main",
            port,
            vec![route_prefix("/h2/", "up2"), route_prefix("/", "up1")],
        )
        .cluster("up1", &[ledger.addr()])
        .cluster_with("up2", &[ledger.addr()], json!({"protocol": "http2"}));
    let _proxy = start(&cfg, port).await;
    for client in ["--http1.1", "--http2-prior-knowledge"] {
        for path in ["/h1/x", "/h2/x"] {
            let out = curl(&[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                client,
                "-H",
                "host: svc.test",
                &url(port, path),
            ])
            .await
            .expect("curl");
            let want_version = if client == "--http1.1" { "1.1" } else { "2" };
            assert_eq!(out.stdout, format!("200 {want_version}"), "{client} {path}");
        }
    }
    let entries = ledger.entries();
    assert_eq!(entries.len(), 4);
    for e in &entries {
        let (version, host) = if e.target == "/h2/x" {
            ("HTTP/2.0", e.authority.clone())
        } else {
            ("HTTP/1.1", e.header("host").map(str::to_owned))
        };
        assert_eq!(e.version, version, "{e:?}");
        assert_eq!(host.as_deref(), Some("svc.test"), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_upstream_connections_are_pooled_and_reused() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "up")])
        .cluster("up", &[ledger.addr()]);
    let _proxy = start(&cfg, port).await;
    for _ in 0..10 {
        let (status, _) = mesh_tests::curl_status(&url(port, "/"), &[])
            .await
            .expect("curl");
        assert_eq!(status, 200);
    }
    assert_eq!(ledger.entries().len(), 10);
    assert_eq!(
        ledger.connections_accepted(),
        1,
        "ten sequential requests from ten clients share one upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstream_multiplexes_concurrent_requests_on_one_connection() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "up")])
        .cluster_with("up", &[ledger.addr()], json!({"protocol": "http2"}));
    let _proxy = start(&cfg, port).await;
    // Prime the connection, then 10 overlapping slow requests.
    assert_eq!(
        mesh_tests::curl_status(&url(port, "/"), &[])
            .await
            .expect("curl")
            .0,
        200
    );
    let reqs = (0..10).map(|_| {
        let u = url(port, "/slow?ms=300");
        tokio::spawn(async move { mesh_tests::curl_status(&u, &[]).await })
    });
    for r in futures_join(reqs).await {
        assert_eq!(r.expect("join").expect("curl").0, 200);
    }
    assert_eq!(ledger.entries().len(), 11);
    assert_eq!(ledger.connections_accepted(), 1);
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_match_host_path_regex_headers_and_methods_in_order() {
    let port = free_port();
    let direct = |status: u16| json!({"status": status, "body": format!("{status}\n")});
    let routes = vec![
        json!({"match": {"host": "pay.test", "path": "/pay", "methods": ["POST"], "headers": {"x-canary": "true"}}, "direct_response": direct(201)}),
        json!({"match": {"host": "*.example.com", "regex": "/v[0-9]+/.*"}, "direct_response": direct(202)}),
        json!({"match": {"host": "pay.test", "prefix": "/"}, "direct_response": direct(203)}),
        json!({"match": {"prefix": "/only-here"}, "direct_response": direct(204)}),
    ];
    let cfg = ConfigBuilder::new().http_listener("main", port, routes);
    let _proxy = start(&cfg, port).await;
    let cases: &[(&[&str], &str, u16)] = &[
        (
            &["-X", "POST", "-H", "host: pay.test", "-H", "x-canary: true"],
            "/pay",
            201,
        ),
        (
            &["-X", "GET", "-H", "host: pay.test", "-H", "x-canary: true"],
            "/pay",
            203,
        ),
        (&["-X", "POST", "-H", "host: PAY.test:8080"], "/pay", 203),
        (&["-H", "host: api.example.com"], "/v2/users", 202),
        (&["-H", "host: example.com"], "/v2/users", 404),
        (&["-H", "host: api.example.com"], "/x/v2/users", 404),
        (&["-H", "host: other"], "/only-here/x", 204),
    ];
    for (args, path, want) in cases {
        let mut a = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
        a.extend_from_slice(args);
        let u = url(port, path);
        a.push(&u);
        assert_eq!(
            curl(&a).await.expect("curl").stdout,
            want.to_string(),
            "{args:?} {path}"
        );
    }
    let out = curl(&["-s", "-i", "-H", "host: nowhere", &url(port, "/missing")])
        .await
        .expect("curl");
    assert!(out.stdout.starts_with("HTTP/1.1 404"), "{}", out.stdout);
    assert!(
        out.stdout.to_ascii_lowercase().contains("x-mesh-error: nr"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_clusters_split_traffic_by_weight() {
    let a = LedgerUpstream::start().await.expect("ledger a");
    let b = LedgerUpstream::start().await.expect("ledger b");
    let port = free_port();
    let route = json!({"match": {"prefix": "/"}, "weighted": [{"cluster": "a", "weight": 80}, {"cluster": "b", "weight": 20}]});
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route])
        .cluster("a", &[a.addr()])
        .cluster("b", &[b.addr()]);
    let _proxy = start(&cfg, port).await;
    // One curl process, 200 requests on one keep-alive connection.
    let urls: Vec<String> = (0..200).map(|i| url(port, &format!("/{i}"))).collect();
    let mut args = vec!["-s", "-o", "/dev/null"];
    args.extend(urls.iter().map(String::as_str));
    assert_eq!(curl(&args).await.expect("curl").exit_code, 0);
    let (na, nb) = (a.entries().len(), b.entries().len());
    assert_eq!(na + nb, 200);
    // Binomial(200, 0.8): mean 160, sd 5.7; ±30 is over 5 sd.
    assert!((130..=190).contains(&na), "a got {na}, b got {nb}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_over_endpoints() {
    let a = LedgerUpstream::start().await.expect("ledger a");
    let b = LedgerUpstream::start().await.expect("ledger b");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "up")])
        .cluster("up", &[a.addr(), b.addr()]);
    let _proxy = start(&cfg, port).await;
    let urls: Vec<String> = (0..10).map(|i| url(port, &format!("/{i}"))).collect();
    let mut args = vec!["-s", "-o", "/dev/null"];
    args.extend(urls.iter().map(String::as_str));
    assert_eq!(curl(&args).await.expect("curl").exit_code, 0);
    assert_eq!((a.entries().len(), b.entries().len()), (5, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_and_header_mutations_apply_both_ways() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let route = route_prefix("/api/", "up")
        .with("rewrite_prefix", "/v1/")
        .with("host_rewrite", "internal.svc")
        .with(
            "request_headers",
            json!({"add": {"x-env": "prod"}, "remove": ["x-debug"]}),
        )
        .with(
            "response_headers",
            json!({"add": {"x-served-by": "mesh"}, "remove": ["x-ledger-conn"]}),
        );
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route])
        .cluster("up", &[ledger.addr()]);
    let _proxy = start(&cfg, port).await;
    let out = curl(&[
        "-s",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "x-debug: 1",
        "-H",
        "x-request-id: keep-me",
        &url(port, "/api/users?id=7"),
    ])
    .await
    .expect("curl");
    let head = out.stdout.to_ascii_lowercase();
    assert!(head.contains("x-served-by: mesh"), "{head}");
    assert!(!head.contains("x-ledger-conn"), "{head}");
    assert!(head.contains("x-request-id: keep-me"), "{head}");
    assert!(head.contains("x-mesh-upstream-service-time: "), "{head}");
    let e = &ledger.entries()[0];
    assert_eq!(e.target, "/v1/users?id=7");
    assert_eq!(e.header("host"), Some("internal.svc"));
    assert_eq!(e.header("x-env"), Some("prod"));
    assert_eq!(e.header("x-debug"), None);
    assert_eq!(e.header("x-request-id"), Some("keep-me"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_without_host_goes_upstream_with_the_cluster_name_as_host() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "orders")])
        .cluster("orders", &[ledger.addr()]);
    let _proxy = start(&cfg, port).await;
    for _ in 0..2 {
        let reply = mesh_tests::raw_exchange(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            b"GET /x HTTP/1.0\r\n\r\n",
            Duration::from_secs(5),
        )
        .await
        .expect("exchange");
        assert_eq!(reply.status(), Some(200), "{}", reply.text());
    }
    let entries = ledger.entries();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.header("host") == Some("orders")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_generated_when_absent_and_sent_both_ways() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "up")])
        .cluster("up", &[ledger.addr()]);
    let _proxy = start(&cfg, port).await;
    let out = curl(&["-s", "-D", "-", "-o", "/dev/null", &url(port, "/")])
        .await
        .expect("curl");
    let id = out
        .stdout
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-request-id: ")
                .map(|v| v.trim().to_owned())
        })
        .expect("x-request-id on the response");
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(&id[14..15], "4", "uuid v4: {id}");
    assert_eq!(
        ledger.entries()[0].header("x-request-id"),
        Some(id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_cluster_resolves_names_and_unresolvable_ones_answer_503_uh() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener(
            "main",
            port,
            vec![route_prefix("/nx/", "nx"), route_prefix("/", "local")],
        )
        .cluster_with(
            "local",
            &[format!("localhost:{}", ledger.port())],
            json!({"discovery": "dns", "dns_refresh": "1s"}),
        )
        .cluster_with("nx", &["nosuch.invalid:80"], json!({"discovery": "dns"}));
    let _proxy = start(&cfg, port).await;
    // Resolution runs in the background; wait for it with a deadline.
    let ok = mesh_tests::wait_until_ok(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            mesh_tests::curl_status(&url(port, "/"), &[])
                .await
                .is_ok_and(|(s, _)| s == 200)
        },
    )
    .await;
    assert!(ok, "localhost never resolved");
    let out = curl(&["-s", "-i", &url(port, "/nx/")]).await.expect("curl");
    assert!(out.stdout.starts_with("HTTP/1.1 503"), "{}", out.stdout);
    assert!(
        out.stdout.to_ascii_lowercase().contains("x-mesh-error: uh"),
        "{}",
        out.stdout
    );
}

/// A route timeout longer than the clock can count (a config may say
/// `300000000000y`, and it validates) is "never", not a panic: the route
/// and a proxied one with a huge stream idle timeout still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_too_long_for_the_clock_is_never_not_a_panic() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener(
            "main",
            port,
            vec![
                json!({"match": {"prefix": "/direct"}, "direct_response": {"status": 200, "body": "ok"}, "timeout": "300000000000y"}),
                route_prefix("/", "up").with("timeout", "0"),
            ],
        )
        .cluster("up", &[ledger.addr()])
        .set("limits", json!({"stream_idle_timeout": "300000000000y", "body_idle_timeout": "300000000000y"}));
    let _proxy = start(&cfg, port).await;
    for (path, body) in [
        ("/direct", None),
        ("/proxied", Some("a body")),
        ("/direct", None),
    ] {
        let mut extra = vec![];
        if let Some(b) = body {
            extra.extend(["--data-binary", b]);
        }
        let (status, _) = curl_status(&url(port, path), &extra).await.expect("curl");
        assert_eq!(status, 200, "{path}");
    }
}
