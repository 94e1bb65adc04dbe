//! End-to-end: the admin API of the real `mesh-proxy` (SPEC §3 "Admin API"
//! and "Metrics", RELIABILITY O17): its surface, its numbers against the
//! traffic driven through the proxy, the Prometheus text through a real
//! parser (PyPI `prometheus-client`), live log levels, drain on
//! `/quitquitquit`, and the dashboard in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mesh_ca::testing::TestPki;
use mesh_tests::{
    ConfigBuilder, LedgerUpstream, ProxyProcess, curl, free_port, route_prefix, wait_until_async,
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const SPIFFE_ID: &str = "spiffe://mesh.test/ns/default/sa/orders";

/// A response as curl saw it: status, lower-cased head, body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

async fn http(method: &str, url: &str, extra: &[&str]) -> Reply {
    let mut args = vec!["-s", "-i"];
    if method == "HEAD" {
        args.push("-I");
    } else {
        args.extend_from_slice(&["-X", method]);
    }
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args).await.expect("curl runs");
    let (head, body) = out
        .stdout
        .split_once("\r\n\r\n")
        .unwrap_or((out.stdout.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

async fn get(url: &str) -> Reply {
    http("GET", url, &[]).await
}

/// The value of one dotted stat from `/stats` text.
fn stat(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.parse().ok())
        .unwrap_or_else(|| panic!("no stat {name} in\n{text}"))
}

/// Ports and upstreams of one proxy under test.
struct Setup {
    proxy: ProxyProcess,
    ledger: LedgerUpstream,
    port: u16,
    tls_port: u16,
    admin: u16,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }
}

/// A proxy with a workload identity (so `/certs` and `/config_dump` have
/// certificate data to leak, if they would), listener `main` routing
/// `/app/` and `/stats` to the ledger and `/dead` to a closed port, and a
/// server-TLS listener `secure` (its handshake counters).
async fn setup(args: &[&str]) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::new("mesh.test");
    let files = pki.write(dir.path(), "orders", &pki.leaf(SPIFFE_ID));
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let (port, tls_port, admin) = (free_port(), free_port(), free_port());
    let cfg = ConfigBuilder::new()
        .node("orders-sidecar")
        .admin(admin)
        .set(
            "identity",
            json!({ "cert": files.cert, "key": files.key, "trust_bundle": dir.path().join("ca.crt") }),
        )
        .http_listener(
            "main",
            port,
            vec![
                route_prefix("/app/", "app"),
                route_prefix("/stats", "app"),
                route_prefix("/dead", "dead"),
            ],
        )
        .http_listener_with(
            "secure",
            tls_port,
            vec![route_prefix("/", "app")],
            json!({ "tls": { "mode": "server" } }),
        )
        .cluster("app", &[ledger.addr()])
        .cluster_with(
            "dead",
            &[format!("127.0.0.1:{}", free_port())],
            json!({ "connect_timeout": "1s" }),
        );
    // The start-up wait probes `secure` too: one handshake failure (`io`).
    let proxy = ProxyProcess::start_and_wait(&cfg.build(), args, &[port, tls_port, admin])
        .await
        .expect("proxy starts");
    Setup {
        proxy,
        ledger,
        port,
        tls_port,
        admin,
        _dir: dir,
    }
}

/// `ok` requests to the ledger, one 503 from it, one `UF` and one `NR`.
async fn drive(s: &Setup, ok: usize) {
    for i in 0..ok {
        assert_eq!(get(&s.url(&format!("/app/{i}"))).await.status, 200);
    }
    assert_eq!(get(&s.url("/app/status/503")).await.status, 503);
    let dead = get(&s.url("/dead")).await;
    assert_eq!(dead.status, 503);
    assert!(dead.head.contains("x-mesh-error: uf"), "{}", dead.head);
    assert_eq!(get(&s.url("/nothing")).await.status, 404);
}

const MUTATIONS: [&str; 4] = [
    "/healthcheck/fail",
    "/healthcheck/ok",
    "/logging?level=trace",
    "/quitquitquit",
];
const READS: [&str; 11] = [
    "/",
    "/help",
    "/stats",
    "/stats?format=json",
    "/stats/prometheus",
    "/config_dump",
    "/clusters",
    "/clusters?format=json",
    "/listeners?format=json",
    "/certs",
    "/local_replies",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o17_admin_surface() {
    let mut s = setup(&[]).await;

    // Bound on loopback only.
    let ss = std::process::Command::new("ss")
        .arg("-ltnp")
        .output()
        .expect("ss runs");
    let ss = String::from_utf8_lossy(&ss.stdout);
    let admin_lines: Vec<&str> = ss
        .lines()
        .filter(|l| l.contains(&format!(":{} ", s.admin)))
        .collect();
    assert!(
        admin_lines
            .iter()
            .any(|l| l.contains(&format!("127.0.0.1:{} ", s.admin))
                && l.contains(&format!("pid={},", s.proxy.pid()))),
        "admin socket not listed on 127.0.0.1:\n{ss}"
    );
    assert!(
        admin_lines
            .iter()
            .all(|l| l.contains(&format!("127.0.0.1:{} ", s.admin))),
        "admin bound beyond loopback: {admin_lines:?}"
    );

    // Every mutation refuses GET and HEAD with 405 and changes nothing.
    for path in MUTATIONS {
        for method in ["GET", "HEAD"] {
            let r = http(method, &s.admin_url(path), &[]).await;
            assert_eq!(r.status, 405, "{method} {path}");
            assert!(
                r.head.contains("allow: post"),
                "{method} {path}: {}",
                r.head
            );
        }
    }
    let ready = get(&s.admin_url("/ready")).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "LIVE\n"));
    assert!(
        s.proxy.is_running(),
        "GET /quitquitquit must not stop the proxy"
    );

    // A foreign Origin is refused, even on POST, and nothing happens.
    let evil = ["-H", "Origin: http://evil.example"];
    for path in MUTATIONS {
        let r = http("POST", &s.admin_url(path), &evil).await;
        assert_eq!(r.status, 403, "POST {path} with a foreign Origin");
    }
    let ready = get(&s.admin_url("/ready")).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "LIVE\n"));

    // Admin paths through the data plane are routed or 404, never admin.
    let routed = get(&s.url("/stats")).await;
    assert_eq!(routed.status, 200);
    assert!(!routed.body.contains("server.live"), "{}", routed.body);
    assert_eq!(s.ledger.count(|e| e.target == "/stats"), 1);
    for path in [
        "/",
        "/ready",
        "/config_dump",
        "/clusters",
        "/certs",
        "/listeners",
        "/help",
    ] {
        let r = get(&s.url(path)).await;
        assert_eq!(r.status, 404, "{path} on the data plane");
        assert!(r.head.contains("x-mesh-error: nr"), "{path}: {}", r.head);
    }
    for path in ["/quitquitquit", "/healthcheck/fail"] {
        assert_eq!(http("POST", &s.url(path), &[]).await.status, 404);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(s.proxy.is_running());
    assert_eq!(get(&s.admin_url("/ready")).await.status, 200);

    // No key material in anything the admin API shows.
    let mut all = String::new();
    for path in READS {
        let r = get(&s.admin_url(path)).await;
        assert_eq!(r.status, 200, "GET {path}");
        all.push_str(&r.body);
    }
    assert!(
        all.contains(SPIFFE_ID),
        "the certificate is shown as metadata"
    );
    assert!(!all.contains("PRIVATE KEY"), "key material in admin output");
    assert!(
        !all.contains("BEGIN CERTIFICATE"),
        "whole certificates in admin output"
    );
    // Unknown paths are 404 on the admin side too.
    assert_eq!(get(&s.admin_url("/nope")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_the_traffic_driven() {
    let s = setup(&[]).await;
    // The start-up wait probed the listener once: count from here.
    let before = get(&s.admin_url("/stats")).await.body;
    let cx_before = stat(&before, "http.main.downstream_cx_total");
    drive(&s, 5).await;
    let text = get(&s.admin_url("/stats")).await.body;
    assert_eq!(
        stat(&text, "http.main.downstream_cx_total") - cx_before,
        8,
        "one per curl"
    );
    let expect = [
        ("http.main.downstream_rq_total", 8),
        ("http.main.downstream_rq_2xx", 5),
        ("http.main.downstream_rq_4xx", 1),
        ("http.main.downstream_rq_5xx", 2),
        ("http.main.downstream_rq_local", 2),
        ("cluster.app.upstream_rq_total", 6),
        ("cluster.app.upstream_rq_2xx", 5),
        ("cluster.app.upstream_rq_5xx", 1),
        ("cluster.app.membership_healthy", 1),
        ("cluster.app.membership_total", 1),
        ("cluster.dead.upstream_rq_total", 1),
        ("cluster.dead.upstream_rq_5xx", 1),
        ("cluster.dead.upstream_cx_connect_fail", 1),
        ("server.live", 1),
    ];
    for (name, want) in expect {
        assert_eq!(stat(&text, name), want, "{name}");
    }
    assert!(stat(&text, "server.cert_expiry_seconds") > 3600);
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split(':').next().unwrap_or(""))
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "sorted by name");

    // ?filter= keeps the matching names only.
    let filtered =
        get(&s.admin_url("/stats?filter=%5Ecluster%5C.app%5C.upstream_rq_%5B0-9%5D")).await;
    let lines: Vec<&str> = filtered.body.lines().collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("cluster.app.upstream_rq_"))
    );
    assert_eq!(get(&s.admin_url("/stats?filter=(")).await.status, 400);

    // ?format=json has the same numbers, and the latency histogram.
    let v: Value =
        serde_json::from_str(&get(&s.admin_url("/stats?format=json")).await.body).expect("json");
    let value = |name: &str| {
        v["stats"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == name))
            .map(|x| x["value"].clone())
    };
    assert_eq!(value("cluster.app.upstream_rq_total"), Some(json!(6)));
    assert_eq!(value("http.main.downstream_rq_2xx"), Some(json!(5)));
    let hist = v["histograms"]
        .as_array()
        .and_then(|a| a.iter().find(|h| h["cluster"] == "app"))
        .expect("app histogram");
    assert_eq!(hist["count"], 6);
    assert!(hist["p99_ms"].as_f64().is_some_and(|p| p > 0.0));

    // The local replies the dashboard lists.
    let replies: Value =
        serde_json::from_str(&get(&s.admin_url("/local_replies")).await.body).expect("json");
    let flags: Vec<(&str, &str)> = replies["local_replies"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["flag"].as_str().unwrap_or(""),
                        r["path"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(flags, vec![("NR", "/nothing"), ("UF", "/dead")]);

    let clusters = get(&s.admin_url("/clusters")).await.body;
    assert!(
        clusters.contains(&format!("app::{}::health_flags::healthy", s.ledger.addr())),
        "{clusters}"
    );
    let listeners = get(&s.admin_url("/listeners")).await.body;
    assert_eq!(
        listeners,
        format!(
            "main::127.0.0.1:{}\nsecure::127.0.0.1:{}\n",
            s.port, s.tls_port
        )
    );

    // TLS handshakes by outcome: the start-up probe failed (`io`), curl succeeds.
    let tls_url = format!("https://127.0.0.1:{}/app/tls", s.tls_port);
    assert_eq!(http("GET", &tls_url, &["-k"]).await.status, 200);
    let text = get(&s.admin_url("/stats?filter=%5Etls%5C.")).await.body;
    assert_eq!(stat(&text, "tls.secure.handshakes"), 1, "{text}");
    assert!(stat(&text, "tls.secure.handshake_fail.io") >= 1, "{text}");
    assert_eq!(stat(&text, "tls.secure.handshake_fail.expired"), 0);
    let certs: Value = serde_json::from_str(&get(&s.admin_url("/certs")).await.body).expect("json");
    assert_eq!(certs["certificates"][0]["spiffe_id"], SPIFFE_ID);
    assert!(
        certs["certificates"][0]["days_until_expiration"]
            .as_i64()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_text_passes_a_real_parser() {
    let s = setup(&[]).await;
    drive(&s, 4).await;
    let scrape = get(&s.admin_url("/stats/prometheus")).await;
    assert!(
        scrape
            .head
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{}",
        scrape.head
    );
    // prometheus_client's OpenMetrics parser is strict: it rejects a counter
    // sample without `_total`, a histogram without `+Inf`, a missing `# EOF`.
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
out = {"types": {n: f.type for n, f in fams.items()}, "samples": {}}
for f in fams.values():
    for s in f.samples:
        if f.type == "counter":
            assert s.name.endswith("_total"), s.name
        key = s.name + "|" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out["samples"][key] = s.value
print(json.dumps(out))
"#;
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(scrape.body.as_bytes())
        .await
        .expect("write");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("python in time")
        .expect("python output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named"),
        "the PyPI package prometheus-client is missing: python3 -m pip install prometheus-client (scripts/test does)\n{stderr}"
    );
    assert!(
        out.status.success(),
        "parser refused the exposition: {stderr}\n{}",
        scrape.body
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("parser json");
    let types = &v["types"];
    for (family, kind) in [
        ("mesh_http_downstream_rq", "counter"),
        ("mesh_http_downstream_cx_active", "gauge"),
        ("mesh_http_downstream_rq_rejected", "counter"),
        ("mesh_cluster_upstream_rq", "counter"),
        ("mesh_cluster_upstream_cx_active", "gauge"),
        ("mesh_cluster_membership_healthy", "gauge"),
        ("mesh_cluster_outlier_detection_ejections_active", "gauge"),
        ("mesh_cluster_circuit_breakers_remaining", "gauge"),
        ("mesh_cluster_upstream_rq_time_seconds", "histogram"),
        ("mesh_server_live", "gauge"),
        ("mesh_server_config_reload", "counter"),
        ("mesh_server_config_reload_failed", "counter"),
        ("mesh_server_cert_expiry_seconds", "gauge"),
        ("mesh_tls_handshakes", "counter"),
        ("mesh_tls_handshake_failures", "counter"),
    ] {
        assert_eq!(types[family], kind, "{family}");
    }
    let sample = |key: &str| v["samples"][key].as_f64();
    assert!(
        sample("mesh_tls_handshake_failures_total|listener=secure,reason=io")
            .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(
        sample("mesh_http_downstream_rq_total|code_class=2xx,listener=main"),
        Some(4.0)
    );
    assert_eq!(
        sample("mesh_cluster_upstream_rq_total|cluster=app,code_class=5xx"),
        Some(1.0)
    );
    // The histogram: seconds, `le` buckets up to +Inf, `_sum` and `_count`.
    assert_eq!(
        sample("mesh_cluster_upstream_rq_time_seconds_count|cluster=app"),
        Some(5.0)
    );
    assert_eq!(
        sample("mesh_cluster_upstream_rq_time_seconds_bucket|cluster=app,le=+Inf"),
        Some(5.0)
    );
    assert!(sample("mesh_cluster_upstream_rq_time_seconds_bucket|cluster=app,le=0.005").is_some());
    let sum = sample("mesh_cluster_upstream_rq_time_seconds_sum|cluster=app").unwrap_or(-1.0);
    assert!((0.0..5.0).contains(&sum), "sum in seconds: {sum}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_healthcheck_and_quitquitquit_drains_and_exits_0() {
    let mut s = setup(&[]).await;
    assert_eq!(get(&s.admin_url("/ready")).await.body, "LIVE\n");
    assert_eq!(
        http("POST", &s.admin_url("/healthcheck/fail"), &[])
            .await
            .status,
        200
    );
    let r = get(&s.admin_url("/ready")).await;
    assert_eq!((r.status, r.body.as_str()), (503, "DRAINING\n"));
    assert!(
        get(&s.admin_url("/stats"))
            .await
            .body
            .contains("server.live: 0")
    );
    assert_eq!(
        http("POST", &s.admin_url("/healthcheck/ok"), &[])
            .await
            .status,
        200
    );
    let r = get(&s.admin_url("/ready")).await;
    assert_eq!((r.status, r.body.as_str()), (200, "LIVE\n"));

    let own = format!("Origin: http://127.0.0.1:{}", s.admin);
    let quit = http("POST", &s.admin_url("/quitquitquit"), &["-H", &own]).await;
    assert_eq!(quit.status, 200);
    let status = s.proxy.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.and_then(|st| st.code()),
        Some(0),
        "exit after /quitquitquit"
    );
    assert!(s.proxy.stderr_text().contains("draining"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_levels_change_live() {
    let s = setup(&["-l", "info"]).await;
    assert_eq!(get(&s.url("/nothing-1")).await.status, 404);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !s.proxy.stderr_text().contains("local reply"),
        "debug line at info"
    );

    let r = http("POST", &s.admin_url("/logging?router=debug"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("mesh_proxy::router=debug"), "{}", r.body);
    assert_eq!(get(&s.url("/nothing-2")).await.status, 404);
    let proxy = &s.proxy;
    let logged = wait_until_async(Duration::from_secs(3), Duration::from_millis(20), || {
        proxy.stderr_text().contains("local reply")
    })
    .await;
    assert!(
        logged,
        "router debug lines after POST /logging?router=debug"
    );

    let r = http("POST", &s.admin_url("/logging?level=warn"), &[]).await;
    assert!(r.body.starts_with("active: warn"), "{}", r.body);
    assert!(
        !r.body.contains("router=debug"),
        "level= resets components: {}",
        r.body
    );
    assert_eq!(
        http("POST", &s.admin_url("/logging?level=loud"), &[])
            .await
            .status,
        400
    );
    assert_eq!(
        http("POST", &s.admin_url("/logging?nosuch=debug"), &[])
            .await
            .status,
        400
    );
    let listed = http("POST", &s.admin_url("/logging"), &[]).await;
    assert!(
        listed.body.contains("components: config"),
        "{}",
        listed.body
    );
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Where test artifacts are kept: `$CARGO_TARGET_DIR/artifacts`, else the
/// `target/artifacts` folder above this test executable.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(std::env::temp_dir);
    target.join("artifacts")
}

/// Runs headless Chromium on `url` with its own profile: `--dump-dom` when
/// `screenshot` is None. Returns (stdout, stderr).
async fn run_chromium(bin: &Path, url: &str, screenshot: Option<&Path>) -> (String, String) {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--window-size=1280,900",
        "--virtual-time-budget=5000",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(40), out)
        .await
        .expect("chromium finishes in time")
        .expect("chromium runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `data-value` of the element with `id` in serialized DOM.
fn data_value(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[at..];
    let end = rest.find('>').unwrap_or(rest.len());
    rest[..end]
        .split("data-value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or_else(|| panic!("#{id} has no data-value"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_shows_the_stats() {
    let bin = chromium().expect("Debian's chromium is needed (scripts/test installs it)");
    let s = setup(&[]).await;
    drive(&s, 5).await;
    let text = get(&s.admin_url("/stats")).await.body;
    let (total, errors) = (
        stat(&text, "cluster.app.upstream_rq_total"),
        stat(&text, "cluster.app.upstream_rq_5xx"),
    );
    let done: i64 = ["1xx", "2xx", "3xx", "4xx", "5xx"]
        .iter()
        .map(|c| stat(&text, &format!("cluster.app.upstream_rq_{c}")))
        .sum();
    let success = format!("{:.2}", 100.0 * (1.0 - errors as f64 / done as f64));

    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let png = dir.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let url = s.admin_url("/");
    let ((dom, dom_log), (_, shot_log)) = tokio::join!(
        run_chromium(&bin, &url, None),
        run_chromium(&bin, &url, Some(&png))
    );
    println!("dashboard screenshot: {}", png.display());

    assert_eq!(data_value(&dom, "total-app"), total.to_string());
    assert_eq!(
        data_value(&dom, "success-app"),
        success,
        "success rate of app"
    );
    assert_eq!(data_value(&dom, "total-dead"), "1");
    assert_eq!(data_value(&dom, "success-dead"), "0.00");
    assert_eq!(
        data_value(&dom, "kpi-requests"),
        stat(&text, "http.main.downstream_rq_total").to_string()
    );
    assert_eq!(data_value(&dom, "kpi-local"), "2");
    assert!(dom.contains(SPIFFE_ID), "identity shown");
    assert!(dom.contains(&s.ledger.addr().to_string()), "endpoint shown");
    assert!(
        dom.contains("GET /dead") && dom.contains(">UF<"),
        "local reply listed"
    );
    assert!(dom.contains(">LIVE<"), "readiness shown");
    assert!(dom.contains(">orders-sidecar<"), "node name shown");

    for log in [&dom_log, &shot_log] {
        let console: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
            .collect();
        assert!(
            console.is_empty(),
            "console output from the page: {console:#?}"
        );
    }
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "a real screenshot"
    );
}
