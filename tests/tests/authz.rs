//! End-to-end: authorization by identity (SPEC §7) with the real binary and
//! real mTLS clients holding certificates of the bundled test CA (web, ops,
//! a stranger): the decision matrix over HTTP/1.1 and HTTP/2 (listener
//! rules, and route rules that replace them on /admin), the 403 `UAEX`
//! body naming the caller and the request but never the rules, the access
//! log's `authz_rule`, audit mode, the per-listener counters, and a reload
//! whose new policy applies to the next request of an open connection.

use std::path::Path;
use std::time::Duration;

use mesh_ca::testing::TestPki;
use mesh_tests::mtls::{get_h2, h2};
use mesh_tests::{ConfigBuilder, LedgerUpstream, ProxyProcess, admin_stat, curl, free_port};
use serde_json::{Value, json};

const TD: &str = "mesh.test";
const DEADLINE: Duration = Duration::from_secs(10);

struct Ports {
    ingress: u16,
    audited: u16,
    admin: u16,
}

/// The listener rule of the matrix: web reads /api/* and /healthz.
fn web_reads() -> Value {
    json!({ "name": "web-reads", "from": [format!("spiffe://{TD}/web")], "methods": ["GET", "HEAD"], "paths": ["/api/*", "/healthz"] })
}

/// `ingress` (enforce: `web_reads` on the listener; /admin is ops-only)
/// and `audited` (audit mode, web reads only), both mutual TLS for the
/// whole trust domain, with a json access log.
fn config(d: &Path, p: &Ports, ledger: &str, web_reads: Value) -> String {
    let tls = json!({ "mode": "mutual", "allow": [format!("spiffe://{TD}/**")] });
    let ingress = json!({
        "name": "ingress", "address": format!("127.0.0.1:{}", p.ingress), "tls": tls,
        "authz": { "mode": "enforce", "default": "deny", "rules": [web_reads] },
        "routes": [
            { "name": "admin", "match": { "prefix": "/admin" }, "cluster": "app",
              "authz": { "rules": [ { "name": "ops-only", "from": [format!("spiffe://{TD}/ops")] } ] } },
            { "name": "main", "match": { "prefix": "/" }, "cluster": "app" },
        ],
    });
    let audited = json!({
        "name": "audited", "address": format!("127.0.0.1:{}", p.audited), "tls": tls,
        "authz": { "mode": "audit", "rules": [ { "name": "web-reads", "from": [format!("spiffe://{TD}/web")], "methods": ["GET"] } ] },
        "routes": [ { "name": "main", "match": { "prefix": "/" }, "cluster": "app" } ],
    });
    ConfigBuilder::new()
        .admin(p.admin)
        .set("identity", json!({ "cert": d.join("server.crt"), "key": d.join("server.key"), "trust_bundle": d.join("ca.crt") }))
        .set("listeners", json!([ingress, audited]))
        .set("access_log", json!([{ "path": "access.json", "format": "json" }]))
        .cluster("app", &[ledger])
        .build()
}

fn write_pki(d: &Path) -> TestPki {
    let pki = TestPki::new(TD);
    pki.write(
        d,
        "server",
        &pki.leaf_with_sans(&format!("spiffe://{TD}/api"), &["svc.mesh.test"], &[]),
    );
    for who in ["web", "ops", "stranger"] {
        pki.write(d, who, &pki.leaf(&format!("spiffe://{TD}/{who}")));
    }
    pki
}

/// A folder with the test CA's certificates, the ledger upstream and free
/// ports: what every test here starts from.
async fn fixture() -> (tempfile::TempDir, TestPki, LedgerUpstream, Ports) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = write_pki(dir.path());
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let p = Ports {
        ingress: free_port(),
        audited: free_port(),
        admin: free_port(),
    };
    (dir, pki, ledger, p)
}

/// (status, lower-case head, body) of one request as `who`.
async fn call(
    d: &Path,
    port: u16,
    who: &str,
    method: &str,
    path: &str,
    extra: &[&str],
) -> (u16, String, String) {
    let (ca, cert, key) = (
        d.join("ca.crt"),
        d.join(format!("{who}.crt")),
        d.join(format!("{who}.key")),
    );
    let resolve = format!("svc.mesh.test:{port}:127.0.0.1");
    let url = format!("https://svc.mesh.test:{port}{path}");
    let mut args = vec![
        "-s",
        "-D",
        "/dev/stderr",
        "-w",
        "\n%{http_code}",
        "--resolve",
        &resolve,
    ];
    let (ca, cert, key) = (
        ca.display().to_string(),
        cert.display().to_string(),
        key.display().to_string(),
    );
    args.extend(["--cacert", &ca, "--cert", &cert, "--key", &key]);
    if method == "HEAD" {
        args.push("-I");
    } else {
        args.extend(["-X", method]);
    }
    args.extend_from_slice(extra);
    args.push(&url);
    let out = curl(&args).await.expect("curl");
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or_default();
    (
        code.parse().unwrap_or(0),
        out.stderr.to_ascii_lowercase(),
        body.to_owned(),
    )
}

const MATRIX: &[(&str, &str, &str, u16, &str)] = &[
    ("web", "GET", "/api/orders", 200, "web-reads"),
    ("web", "HEAD", "/api/orders", 200, "web-reads"),
    ("web", "GET", "/healthz", 200, "web-reads"),
    ("web", "POST", "/api/orders", 403, "-"),
    ("web", "GET", "/other", 403, "-"),
    ("web", "GET", "/admin/users", 403, "-"),
    ("ops", "GET", "/admin/users", 200, "ops-only"),
    ("ops", "DELETE", "/admin/users/7", 200, "ops-only"),
    ("ops", "GET", "/api/orders", 403, "-"),
    ("stranger", "GET", "/api/orders", 403, "-"),
    ("stranger", "GET", "/admin/users", 403, "-"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_of_the_decision_matrix_over_http1_and_http2() {
    let (dir, _pki, ledger, p) = fixture().await;
    let d = dir.path();
    let cfg = config(d, &p, &ledger.addr().to_string(), web_reads());
    let proxy = ProxyProcess::start_and_wait(&cfg, &[], &[p.ingress, p.audited, p.admin])
        .await
        .expect("proxy starts");
    for proto in ["--http1.1", "--http2"] {
        for (who, method, path, want, _) in MATRIX {
            let rid = format!(
                "x-request-id: m{proto}-{who}-{method}-{}",
                path.replace('/', "_")
            );
            let (code, head, body) =
                call(d, p.ingress, who, method, path, &[proto, "-H", &rid]).await;
            assert_eq!(code, *want, "{proto} {who} {method} {path}: {head}{body}");
            if *want == 403 {
                assert!(
                    head.contains("x-mesh-error: uaex"),
                    "{proto} {who} {method} {path}: {head}"
                );
                let caller = format!("spiffe://{TD}/{who} may not {method} {path}");
                if *method != "HEAD" {
                    assert!(body.contains(&caller), "{proto}: {body}");
                }
                assert!(
                    !body.contains("web-reads") && !body.contains("ops-only"),
                    "{body}"
                );
            }
        }
    }
    // The access log names the rule that allowed each request, `-` else.
    let path = proxy.dir().join("access.json");
    let records = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let all = MATRIX.len() * 2;
    let logged = mesh_tests::wait_until_ok(DEADLINE, Duration::from_millis(20), || async {
        records(&path).len() >= all
    })
    .await;
    assert!(logged, "{} of {all} records", records(&path).len());
    for rec in records(&path) {
        let rid = rec["request_id"].as_str().unwrap_or_default().to_owned();
        let row = MATRIX.iter().find(|(who, m, p, _, _)| {
            rid.ends_with(&format!("-{who}-{m}-{}", p.replace('/', "_")))
        });
        if let Some((_, _, _, _, rule)) = row {
            assert_eq!(rec["authz_rule"], *rule, "{rec}");
        }
    }
    // `mesh-cli authz check` answers the same cases offline, from the
    // running proxy's own config file, exactly as the proxy did.
    let cli = mesh_tests::bin_path("mesh-cli").expect("mesh-cli");
    for (who, method, path, want, rule) in MATRIX {
        let out = std::process::Command::new(&cli)
            .arg("authz")
            .arg("check")
            .arg(proxy.config_path())
            .args([
                "--listener",
                "ingress",
                "--from",
                &format!("spiffe://{TD}/{who}"),
            ])
            .args(["--method", method, "--path", path])
            .output()
            .expect("mesh-cli authz check");
        let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let expected = if *want == 200 {
            format!("ALLOW (rule {rule})")
        } else {
            "DENY (no rule matched; default deny)".to_owned()
        };
        assert_eq!(
            said,
            expected,
            "{who} {method} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(if *want == 200 { 0 } else { 1 }),
            "{who} {method} {path}"
        );
    }
    let denied = admin_stat(p.admin, "authz.ingress.denied").await;
    assert_eq!(denied, Some(2 * 6), "six denied cells, twice");
    assert_eq!(
        admin_stat(p.admin, "authz.ingress.allowed.ops-only").await,
        Some(4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_lets_a_would_be_denial_through_and_counts_it() {
    let (dir, _pki, ledger, p) = fixture().await;
    let d = dir.path();
    let cfg = config(d, &p, &ledger.addr().to_string(), web_reads());
    let proxy = ProxyProcess::start_and_wait(&cfg, &[], &[p.ingress, p.audited, p.admin])
        .await
        .expect("proxy starts");
    for _ in 0..2 {
        let (code, head, _) = call(d, p.audited, "stranger", "POST", "/api/audit", &[]).await;
        assert_eq!(code, 200, "{head}");
    }
    assert_eq!(
        call(d, p.audited, "web", "GET", "/api/audit", &[]).await.0,
        200
    );
    assert_eq!(
        ledger.entries().len(),
        3,
        "audit mode sends every request on"
    );
    assert_eq!(
        admin_stat(p.admin, "authz.audited.would_deny").await,
        Some(2)
    );
    assert_eq!(
        admin_stat(p.admin, "authz.audited.allowed.web-reads").await,
        Some(1)
    );
    let logged = proxy.stderr_text();
    assert_eq!(
        logged.matches("authz audit: would deny").count(),
        1,
        "once a minute per caller, route and method: {logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_the_new_policy_to_the_next_request_of_an_open_connection() {
    let (dir, pki, ledger, p) = fixture().await;
    let d = dir.path();
    let addr = ledger.addr().to_string();
    let cfg = config(d, &p, &addr, web_reads());
    let proxy = ProxyProcess::start_and_wait(&cfg, &[], &[p.ingress, p.audited, p.admin])
        .await
        .expect("proxy starts");
    let web = pki.leaf(&format!("spiffe://{TD}/web"));
    let mut open = h2(p.ingress, &pki, &web).await;
    // mtls::request() asks for GET /x, which web_reads does not cover:
    // denied; a reload that lets web GET anything admits the next request
    // on the same connection, and one that admits nobody denies it again.
    assert_eq!(get_h2(&mut open).await, (403, "UAEX".to_owned()));
    let any_get =
        json!({ "name": "web-gets", "from": [format!("spiffe://{TD}/web")], "methods": ["GET"] });
    let everywhere = config(d, &p, &addr, any_get);
    proxy.write_config(&everywhere).expect("write config");
    proxy.signal("HUP").expect("HUP");
    let applied = mesh_tests::wait_until_ok(DEADLINE, Duration::from_millis(20), || async {
        admin_stat(p.admin, "server.config_reload_total").await >= Some(1)
    })
    .await;
    assert!(applied, "reload not applied: {}", proxy.stderr_text());
    assert_eq!(
        get_h2(&mut open).await,
        (200, "-".to_owned()),
        "the same connection meets the new policy"
    );
    let nobody = config(
        d,
        &p,
        &addr,
        json!({ "name": "nobody", "from": [format!("spiffe://{TD}/nobody")] }),
    );
    proxy.write_config(&nobody).expect("write config");
    proxy.signal("HUP").expect("HUP");
    let applied = mesh_tests::wait_until_ok(DEADLINE, Duration::from_millis(20), || async {
        admin_stat(p.admin, "server.config_reload_total").await >= Some(2)
    })
    .await;
    assert!(
        applied,
        "second reload not applied: {}",
        proxy.stderr_text()
    );
    assert_eq!(
        get_h2(&mut open).await,
        (403, "UAEX".to_owned()),
        "revoked on the open connection"
    );
}
