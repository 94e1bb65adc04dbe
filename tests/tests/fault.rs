//! End-to-end: fault injection (SPEC §8) with the real binary: aborts by
//! percent as local replies flagged `FI` (never reaching the upstream),
//! delays that count against the route timeout, faults limited to some
//! callers (mTLS identities of the bundled test CA) or headers, the
//! `route.<listener>.<route>.fault.*` counters, the access log flag, and
//! live overrides through the admin API that revert by themselves.

use std::path::Path;
use std::time::{Duration, Instant};

use mesh_ca::testing::TestPki;
use mesh_tests::{
    ConfigBuilder, JsonExt, LedgerUpstream, ProxyProcess, admin_stat, curl, curl_status, free_port,
    route_prefix, wait_until_ok,
};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

struct Setup {
    proxy: ProxyProcess,
    ledger: LedgerUpstream,
    port: u16,
    admin: u16,
}

impl Setup {
    /// Listener `edge` with `routes` (to the ledger), a json access log
    /// (`access.json` in the proxy's folder) and a known admin port.
    async fn start(routes: Vec<Value>) -> Self {
        let ledger = LedgerUpstream::start().await.expect("ledger");
        let (port, admin) = (free_port(), free_port());
        let cfg = config(port, admin, &ledger, routes);
        let proxy = ProxyProcess::start_and_wait(&cfg, &[], &[port, admin])
            .await
            .expect("proxy starts");
        Self {
            proxy,
            ledger,
            port,
            admin,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    async fn stat(&self, name: &str) -> Option<u64> {
        admin_stat(self.admin, name).await
    }

    /// `POST` (or `GET`) on the admin: (status, body).
    async fn admin_call(&self, method: &str, path: &str) -> (u16, String) {
        let out = curl(&[
            "-s",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            &self.admin_url(path),
        ])
        .await
        .expect("curl admin");
        let (body, code) = out.stdout.rsplit_once('\n').unwrap_or_default();
        (code.parse().unwrap_or(0), body.to_owned())
    }
}

fn config(port: u16, admin: u16, ledger: &LedgerUpstream, routes: Vec<Value>) -> String {
    ConfigBuilder::new()
        .admin(admin)
        .set(
            "access_log",
            json!([{ "path": "access.json", "format": "json" }]),
        )
        .http_listener("edge", port, routes)
        .cluster("app", &[ledger.addr()])
        .build()
}

fn route_with_fault(prefix: &str, fault: Value) -> Value {
    route_prefix(prefix, "app").with("fault", fault)
}

/// Status codes of `n` sequential requests on one keep-alive connection.
async fn statuses(url: &str, n: usize, extra: &[&str]) -> Vec<u16> {
    let mut args = vec!["-s", "-w", "%{http_code}\\n"];
    args.extend_from_slice(extra);
    for _ in 0..n {
        args.extend_from_slice(&["-o", "/dev/null", url]);
    }
    let out = curl(&args).await.expect("curl");
    out.stdout.lines().map(|l| l.parse().unwrap_or(0)).collect()
}

/// (status, lower-case response head, body) of one request.
async fn request(url: &str, extra: &[&str]) -> (u16, String, String) {
    let mut args = vec!["-s", "-D", "/dev/stderr", "-w", "\n%{http_code}"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args).await.expect("curl");
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or_default();
    (
        code.parse().unwrap_or(0),
        out.stderr.to_ascii_lowercase(),
        body.to_owned(),
    )
}

fn count(codes: &[u16], code: u16) -> usize {
    codes.iter().filter(|c| **c == code).count()
}

/// The access-log records (json lines) of the proxy, once `n` are written.
async fn access_log(proxy: &ProxyProcess, n: usize) -> Vec<Value> {
    let path = proxy.dir().join("access.json");
    let read = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let written = wait_until_ok(DEADLINE, POLL, || async { read(&path).len() >= n }).await;
    assert!(written, "fewer than {n} access-log records");
    read(&path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_a_share_of_requests_as_local_replies_flagged_fi_and_counts_them() {
    let s = Setup::start(vec![
        route_with_fault(
            "/abort",
            json!({ "abort": { "status": 503, "percent": 50 } }),
        ),
        route_prefix("/", "app"),
    ])
    .await;
    let codes = statuses(&s.url("/abort/x"), 400, &[]).await;
    let (aborted, passed) = (count(&codes, 503), count(&codes, 200));
    assert_eq!(aborted + passed, 400, "only 200 and 503: {codes:?}");
    // 50 % of 400: mean 200, sd 10; the band is 6 sd wide on each side.
    assert!(
        (140..=260).contains(&aborted),
        "{aborted} of 400 aborted at 50 %"
    );
    assert_eq!(
        s.ledger.entries().len(),
        passed,
        "an aborted request never reaches the upstream"
    );
    assert_eq!(
        s.stat("route.edge.0.fault.aborted").await,
        Some(aborted as u64)
    );
    assert_eq!(s.stat("route.edge.0.fault.delayed").await, Some(0));
    assert_eq!(
        s.stat("route.edge.1.fault.aborted").await,
        None,
        "a route without fault shows no fault counters"
    );
    let flagged = access_log(&s.proxy, 400)
        .await
        .iter()
        .filter(|r| r["response_flags"] == "FI" && r["response_code"] == 503)
        .count();
    assert_eq!(flagged, aborted, "each abort is logged with flag FI");

    let mut fi = request(&s.url("/abort/one"), &[]).await;
    for _ in 0..100 {
        if fi.0 == 503 {
            break;
        }
        fi = request(&s.url("/abort/one"), &[]).await;
    }
    assert_eq!(fi.0, 503, "no abort in 100 tries at 50 %");
    assert!(fi.1.contains("x-mesh-error: fi\r\n"), "{}", fi.1);
    assert_eq!(fi.2, "fault injected: abort\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_comes_before_the_upstream_and_counts_against_the_route_timeout() {
    let delay = json!({ "delay": { "fixed": "300ms", "percent": 100 } });
    let s = Setup::start(vec![
        route_with_fault("/timeout", delay.clone()).with("timeout", "100ms"),
        route_with_fault("/slow", delay),
    ])
    .await;
    // curl's own clock: the time of the exchange, not of starting curl.
    let (code, took) = curl_status(&s.url("/timeout/x"), &[]).await.expect("curl");
    assert_eq!(code, 504);
    assert!(
        (0.1..0.3).contains(&took),
        "the 100ms route timeout ends the 300ms delay: {took}s"
    );
    let (code, head, _) = request(&s.url("/timeout/y"), &[]).await;
    assert_eq!(code, 504, "{head}");
    assert!(head.contains("x-mesh-error: ut\r\n"), "{head}");
    assert_eq!(
        s.ledger.entries().len(),
        0,
        "the upstream was never contacted"
    );

    let (code, took) = curl_status(&s.url("/slow/x"), &[]).await.expect("curl");
    assert_eq!(code, 200);
    assert!(took >= 0.3, "delayed 300ms: {took}s");
    assert_eq!(s.ledger.entries().len(), 1);
    assert_eq!(s.stat("route.edge.0.fault.delayed").await, Some(2));
    assert_eq!(s.stat("route.edge.1.fault.delayed").await, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_limit_the_fault_to_requests_carrying_all_of_them() {
    let s = Setup::start(vec![route_with_fault(
        "/",
        json!({ "abort": { "status": 418 }, "headers": { "x-chaos": "on", "x-team": "qa" } }),
    )])
    .await;
    let both = ["-H", "x-chaos: on", "-H", "x-team: qa"];
    assert_eq!(statuses(&s.url("/x"), 3, &both).await, [418, 418, 418]);
    assert_eq!(
        statuses(&s.url("/x"), 1, &["-H", "x-chaos: on"]).await,
        [200]
    );
    assert_eq!(
        statuses(&s.url("/x"), 1, &["-H", "x-chaos: off", "-H", "x-team: qa"]).await,
        [200]
    );
    assert_eq!(statuses(&s.url("/x"), 1, &[]).await, [200]);
    assert_eq!(s.stat("route.edge.0.fault.aborted").await, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_limits_the_fault_to_one_caller_identity_over_mtls() {
    const TD: &str = "mesh.test";
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    pki.write(
        d,
        "server",
        &pki.leaf_with_sans("spiffe://mesh.test/api", &["api.mesh.test"], &[]),
    );
    pki.write(d, "web", &pki.leaf("spiffe://mesh.test/web"));
    pki.write(d, "other", &pki.leaf("spiffe://mesh.test/other"));
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let (port, admin) = (free_port(), free_port());
    let fault =
        json!({ "abort": { "status": 503, "percent": 100 }, "from": ["spiffe://mesh.test/web"] });
    let tls = json!({ "tls": { "mode": "mutual", "allow": ["spiffe://mesh.test/web", "spiffe://mesh.test/other"] } });
    let cfg = ConfigBuilder::new()
        .admin(admin)
        .set("identity", json!({ "cert": d.join("server.crt"), "key": d.join("server.key"), "trust_bundle": d.join("ca.crt") }))
        .http_listener_with("secure", port, vec![route_with_fault("/", fault)], tls)
        .cluster("app", &[ledger.addr()])
        .build();
    let _proxy = ProxyProcess::start_and_wait(&cfg, &[], &[port, admin])
        .await
        .expect("proxy starts");
    let as_caller = |name: &str| {
        let (cert, key) = (d.join(format!("{name}.crt")), d.join(format!("{name}.key")));
        vec![
            "--cacert".to_owned(),
            d.join("ca.crt").display().to_string(),
            "--cert".to_owned(),
            cert.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
            "--resolve".to_owned(),
            format!("api.mesh.test:{port}:127.0.0.1"),
        ]
    };
    let url = format!("https://api.mesh.test:{port}/pay");
    let web = as_caller("web");
    let web: Vec<&str> = web.iter().map(String::as_str).collect();
    let (code, head, _) = request(&url, &web).await;
    assert_eq!(code, 503, "{head}");
    assert!(head.contains("x-mesh-error: fi\r\n"), "{head}");
    let other = as_caller("other");
    let other: Vec<&str> = other.iter().map(String::as_str).collect();
    assert_eq!(request(&url, &other).await.0, 200);
    assert_eq!(
        ledger.entries().len(),
        1,
        "only other's request went upstream"
    );
    assert_eq!(
        admin_stat(admin, "route.secure.0.fault.aborted").await,
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_override_applies_is_listed_survives_a_reload_and_reverts_by_itself() {
    let routes = |timeout: &str| {
        vec![
            route_with_fault(
                "/filed",
                json!({ "abort": { "status": 500, "percent": 100 } }),
            ),
            route_prefix("/live", "app")
                .with("timeout", timeout)
                .with("name", "live"),
        ]
    };
    let s = Setup::start(routes("15s")).await;
    assert_eq!(statuses(&s.url("/live/x"), 1, &[]).await, [200]);
    // Taken before the proxy installs it: the TTL runs from a later instant.
    let installed = Instant::now();
    let (code, body) = s
        .admin_call(
            "POST",
            "/fault?route=edge/live&abort_status=503&abort_percent=100&ttl=2s",
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(statuses(&s.url("/live/x"), 10, &[]).await, [503; 10]);
    let (_, listed) = s.admin_call("GET", "/fault").await;
    let listed: Value = serde_json::from_str(&listed).expect("json list");
    assert_eq!(listed[0]["route"], "edge/live", "{listed}");
    assert_eq!(listed[0]["abort"]["status"], 503);

    // Reverts by itself: the list empties and requests pass, without help.
    let gone = wait_until_ok(DEADLINE, POLL, || async {
        s.admin_call("GET", "/fault").await.1.trim() == "[]"
    })
    .await;
    assert!(gone, "the override is still listed");
    assert!(installed.elapsed() >= Duration::from_secs(2));
    assert_eq!(statuses(&s.url("/live/x"), 5, &[]).await, [200; 5]);
    assert_eq!(s.stat("route.edge.live.fault.aborted").await, Some(10));

    // An override replaces the route's own fault, outlives a reload, and
    // `/fault/clear` ends it at once.
    let (code, body) = s
        .admin_call("POST", "/fault?route=edge/0&abort_status=429&ttl=60s")
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(statuses(&s.url("/filed"), 2, &[]).await, [429, 429]);
    s.proxy
        .write_config(&config(s.port, s.admin, &s.ledger, routes("10s")))
        .expect("write config");
    s.proxy.signal("HUP").expect("HUP");
    let reloaded = wait_until_ok(DEADLINE, POLL, || async {
        s.stat("server.config_reload_total").await == Some(1)
    })
    .await;
    assert!(reloaded, "no reload: {}", s.proxy.stderr_text());
    assert_eq!(statuses(&s.url("/filed"), 1, &[]).await, [429]);
    let (code, body) = s.admin_call("POST", "/fault/clear?route=edge/0").await;
    assert_eq!(
        (code, body.contains("\"cleared\": true")),
        (200, true),
        "{body}"
    );
    assert_eq!(statuses(&s.url("/filed"), 1, &[]).await, [500]);
    let (code, body) = s
        .admin_call("POST", "/fault?route=edge/7&abort_status=503")
        .await;
    assert_eq!(code, 400);
    assert!(body.contains("unknown route \"edge/7\""), "{body}");
}
