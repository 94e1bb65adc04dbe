//! The CA server against an attacker (issue 12, items 2, 3 and 13): its
//! identity is checked by clients and reserved, join tokens are single use
//! across restarts, the key must be private, connections are capped and
//! slow bodies are cut.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mesh_ca::testing::TestPki;
use mesh_tests::{ConfigBuilder, ProxyProcess, bin_path, curl, free_port, route_prefix};
use serde_json::json;
use tokio::io::AsyncWriteExt;

mod ca_common;

use ca_common::{Proc, create_token, init_ca, mesh_cli, s, start_ca, wait_port};

fn issue_online(
    dir: &Path,
    service: &str,
    port: u16,
    token: &str,
    out: &str,
) -> std::process::Output {
    mesh_cli(&[
        "issue",
        service,
        "--ca-url",
        &format!("https://localhost:{port}"),
        "--bundle",
        s(&dir.join("ca/ca.crt")),
        "--token-file",
        s(&dir.join(token)),
        "--out",
        s(&dir.join(out)),
    ])
}

/// `POST /v1/sign` by curl with `token` and a CSR for `id`; (status, body).
async fn curl_sign(dir: &Path, port: u16, token: &str, id: &str, query: &str) -> (String, String) {
    let (csr, _) = mesh_ca::generate_csr(&mesh_ca::SpiffeId::parse(id).expect("id")).expect("csr");
    std::fs::write(dir.join("req.csr"), csr).expect("csr");
    let out = curl(&[
        "-s",
        "-w",
        "\n%{http_code}",
        "--cacert",
        s(&dir.join("ca/ca.crt")),
        "-H",
        &format!("Authorization: Bearer {token}"),
        "--data-binary",
        &format!("@{}", s(&dir.join("req.csr"))),
        &format!("https://localhost:{port}/v1/sign{query}"),
    ])
    .await
    .expect("curl");
    let (body, code) = out.stdout.rsplit_once('\n').expect("status line");
    (code.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_token_is_single_use_even_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init_ca(d);
    let port = free_port();
    let ca = start_ca(d, port, &["--max-ttl", "1h"]).await;
    create_token(d, "orders", "orders.token");
    let first = issue_online(d, "orders", port, "orders.token", "first");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = issue_online(d, "orders", port, "orders.token", "second");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && err.contains("already used"),
        "{err}"
    );
    assert!(!d.join("second/orders.crt").exists());

    drop(ca);
    let _ca = start_ca(d, port, &["--max-ttl", "1h"]).await;
    let token = std::fs::read_to_string(d.join("orders.token")).expect("token");
    let (code, body) = curl_sign(d, port, token.trim(), "spiffe://mesh.test/orders", "").await;
    assert_eq!(code, "401", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
    assert_eq!(v["code"], "token_used", "{body}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("already used")),
        "{body}"
    );

    // A fresh token asking (form-urlencoded) for 100 h gets the 1 h cap.
    create_token(d, "billing", "billing.token");
    let token = std::fs::read_to_string(d.join("billing.token")).expect("token");
    let (code, chain) = curl_sign(
        d,
        port,
        token.trim(),
        "spiffe://mesh.test/billing",
        "?ttl=100%20h",
    )
    .await;
    assert_eq!(code, "200", "{chain}");
    let info = mesh_ca::inspect_pem(chain.as_bytes()).expect("chain");
    let life = info[0].not_after - time::OffsetDateTime::now_utc();
    assert!(
        life <= time::Duration::hours(1),
        "lifetime {life} is over the cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_identity_and_names_are_never_issued_to_a_workload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init_ca(d);
    let (ca_dir, certs) = (d.join("ca"), d.join("certs"));
    for args in [
        &["issue", "mesh-ca"][..],
        &["issue", "web", "--dns", "localhost"][..],
        &["issue", "web", "--dns", "ca"][..],
        &["issue", "web", "--dns", "mesh-ca"][..],
    ] {
        let mut all = args.to_vec();
        all.extend(["--ca-dir", s(&ca_dir), "--out", s(&certs)]);
        let out = mesh_cli(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was issued");
        assert!(
            err.contains("reserved for the CA server"),
            "{args:?}: {err}"
        );
    }
    assert!(!d.join("certs/web.crt").exists() && !d.join("certs/mesh-ca.crt").exists());

    // A token naming the CA (as an older mesh-cli could mint) gets 403.
    let pki = TestPki::new("mesh.test");
    pki.ca().save(&d.join("ca"), true).expect("replace the CA");
    let port = free_port();
    let _ca = start_ca(d, port, &[]).await;
    let token = pki.token_for_any("mesh-ca");
    let (code, body) = curl_sign(d, port, &token, "spiffe://mesh.test/mesh-ca", "").await;
    assert_eq!(code, "403", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("reserved")),
        "{body}"
    );
}

/// A workload certificate for `localhost` (made by the test PKI, which the
/// CA would refuse) cannot pose as the CA to the proxy's `identity.ca`
/// client: `openssl s_server` plays the impostor and must never see the
/// token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_sends_its_token_only_to_the_ca_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new("mesh.test");
    let imp = pki.leaf_with_sans(
        "impostor",
        &["localhost"],
        &["127.0.0.1".parse().expect("ip")],
    );
    std::fs::write(d.join("imp.crt"), &imp.chain_pem).expect("crt");
    std::fs::write(d.join("imp.key"), &imp.key_pem).expect("key");
    std::fs::write(d.join("ca.crt"), pki.bundle_pem()).expect("bundle");
    std::fs::write(d.join("orders.token"), pki.token_for_any("orders")).expect("token");
    let imp_port = free_port();
    let log = std::fs::File::create(d.join("impostor.log")).expect("log");
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &imp_port.to_string(),
            "-cert",
            s(&d.join("imp.crt")),
        ])
        .args(["-key", s(&d.join("imp.key")), "-ign_eof"])
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("openssl s_server");
    let _imp = Proc(child);
    wait_port(imp_port).await;

    let (port, admin) = (free_port(), free_port());
    let cfg = ConfigBuilder::new()
        .admin(admin)
        .set("identity", json!({"ca": {"url": format!("https://localhost:{imp_port}"), "trust_bundle": d.join("ca.crt"),
                                      "token_file": d.join("orders.token"), "spiffe_id": "spiffe://mesh.test/orders"}}))
        .http_listener_with("ingress", port, vec![route_prefix("/", "app")], json!({"tls": {"mode": "server"}}))
        .cluster("app", &["127.0.0.1:9"]);
    let proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts");
    let refused = mesh_tests::wait_until_async(Duration::from_secs(20), Duration::from_millis(100), || {
        proxy
            .stderr_text()
            .contains("the server is spiffe://mesh.test/impostor, not the CA (spiffe://mesh.test/mesh-ca)")
    })
    .await;
    assert!(
        refused,
        "the proxy did not refuse the impostor:\n{}",
        proxy.stderr_text()
    );
    let seen = std::fs::read_to_string(d.join("impostor.log")).unwrap_or_default();
    assert!(
        !seen.to_ascii_lowercase().contains("authorization"),
        "the impostor saw: {seen}"
    );
    assert!(!seen.contains("POST"), "the impostor got a request: {seen}");
    let ready = curl(&["-s", &format!("http://127.0.0.1:{admin}/ready")])
        .await
        .expect("curl");
    assert_eq!(ready.stdout, "NO_IDENTITY\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_refuses_to_start_with_a_key_others_can_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init_ca(d);
    let key = d.join("ca/ca.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .expect("chmod");
    let run = tokio::process::Command::new(bin_path("mesh-ca").expect("mesh-ca"))
        .args([
            "serve",
            "--ca-dir",
            s(&d.join("ca")),
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("mesh-ca exits at once instead of serving")
        .expect("mesh-ca runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {err}");
    assert!(
        err.contains(&format!("run `chmod 600 {}`", key.display())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_caps_connections_and_cuts_slow_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init_ca(d);
    let port = free_port();
    let _ca = start_ca(d, port, &["--max-connections", "2", "--body-timeout", "1s"]).await;
    // Two idle connections hold both slots; a third is closed at once.
    let hold: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = third.write_all(b"\x16\x03\x01\x00\x05hello");
    let mut buf = [0u8; 64];
    let n = third.read(&mut buf);
    assert!(
        matches!(n, Ok(0))
            || n.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the third connection was served: {n:?}"
    );
    drop(hold);
    let b = d.join("ca/ca.crt");
    let healthy = mesh_tests::wait_until_ok(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            curl(&[
                "-s",
                "--cacert",
                s(&b),
                &format!("https://localhost:{port}/healthz"),
            ])
            .await
            .is_ok_and(|o| o.stdout == "ok\n")
        },
    )
    .await;
    assert!(healthy, "slots were not given back");

    // A body that dribbles one byte every 200 ms is cut with 408 at 1 s.
    create_token(d, "slow", "slow.token");
    let token = std::fs::read_to_string(d.join("slow.token")).expect("token");
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-CAfile",
            s(&b),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().expect("stdin");
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /v1/sign HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\n",
            token.trim()
        );
        let _ = stdin.write_all(head.as_bytes()).await;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if stdin.write_all(b"x").await.is_err() {
                break;
            }
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("the CA cut the connection in time")
        .expect("output");
    writer.abort();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("HTTP/1.1 408") && text.contains("body_timeout"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut after {:?}",
        started.elapsed()
    );
}
