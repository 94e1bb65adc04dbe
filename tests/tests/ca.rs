//! End-to-end: the CA server (`mesh-ca serve`), `mesh-cli` online issuance,
//! and a proxy that obtains and renews its identity from the CA.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mesh_tests::{ConfigBuilder, LedgerUpstream, ProxyProcess, curl, free_port, route_prefix};
use serde_json::json;

mod ca_common;

use ca_common::{create_token as token, init_ca, mesh_cli, start_ca};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_server_signs_only_the_tokens_identity_and_serves_its_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init_ca(d);
    let port = free_port();
    let _ca = start_ca(d, port, &[]).await;
    let url = format!("https://localhost:{port}");
    let bundle = d.join("ca/ca.crt");
    let b = bundle.to_str().expect("utf8");

    let health = curl(&["-s", "--cacert", b, &format!("{url}/healthz")])
        .await
        .expect("curl");
    assert_eq!(health.stdout, "ok\n");
    let served = curl(&["-s", "--cacert", b, &format!("{url}/v1/bundle")])
        .await
        .expect("curl");
    assert_eq!(
        served.stdout,
        std::fs::read_to_string(&bundle).expect("bundle")
    );

    token(d, "orders", "orders.token");
    let out_dir = d.join("certs");
    let ok = mesh_cli(&[
        "issue",
        "orders",
        "--ca-url",
        &url,
        "--bundle",
        b,
        "--token-file",
        d.join("orders.token").to_str().expect("utf8"),
        "--out",
        out_dir.to_str().expect("utf8"),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let inspect = mesh_cli(&[
        "inspect",
        out_dir.join("orders.crt").to_str().expect("utf8"),
        "--bundle",
        b,
    ]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("spiffe://mesh.test/orders") && text.contains("chain: OK"),
        "{text}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(out_dir.join("orders.key"))
            .expect("key")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // The orders token cannot get a payments certificate: 403 with a JSON error.
    let refused = mesh_cli(&[
        "issue",
        "payments",
        "--ca-url",
        &url,
        "--bundle",
        b,
        "--token-file",
        d.join("orders.token").to_str().expect("utf8"),
        "--out",
        d.join("p").to_str().expect("utf8"),
    ]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("403") && err.contains("spiffe://mesh.test/orders"),
        "{err}"
    );
    assert!(
        !d.join("p/payments.key").exists(),
        "nothing is written on refusal"
    );
    let raw = curl(&[
        "-s",
        "--cacert",
        b,
        "-X",
        "POST",
        "-H",
        "authorization: Bearer not-a-token",
        "--data",
        "x",
        &format!("{url}/v1/sign"),
    ])
    .await
    .expect("curl");
    let v: serde_json::Value = serde_json::from_str(&raw.stdout).expect("json error body");
    assert_eq!(v["code"], "invalid_token");
}

/// The serial a new handshake with the proxy presents.
fn presented_serial(port: u16, dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -CAfile {} </dev/null 2>/dev/null | openssl x509 -noout -serial -ext subjectAltName",
            dir.join("ca/ca.crt").display()
        ))
        .output()
        .expect("sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_obtains_its_identity_from_the_ca_and_renews_it_over_mtls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init_ca(d);
    token(d, "spiffe://mesh.test/orders", "orders.token");
    let (ca_port, port, admin) = (free_port(), free_port(), free_port());
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let cfg = ConfigBuilder::new()
        .admin(admin)
        .set(
            "identity",
            json!({"ca": {"url": format!("https://localhost:{ca_port}"), "trust_bundle": d.join("ca/ca.crt"),
                          "token_file": d.join("orders.token"), "spiffe_id": "spiffe://mesh.test/orders", "ttl": "6s"}}),
        )
        .http_listener_with("ingress", port, vec![route_prefix("/", "app")], json!({"tls": {"mode": "server"}}))
        .cluster("app", &[ledger.addr()]);
    // The CA is down at first: the proxy starts anyway and keeps trying.
    let proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts without its CA");
    assert!(
        !presented_serial(port, d).contains("serial="),
        "no certificate before the CA answers"
    );
    let ready = |expect: &'static str| async move {
        curl(&["-s", &format!("http://127.0.0.1:{admin}/ready")])
            .await
            .map(|o| o.stdout)
            .unwrap_or_default()
            == expect
    };
    assert!(
        ready("NO_IDENTITY\n").await,
        "/ready says NO_IDENTITY until the first certificate"
    );
    let _ca = start_ca(d, ca_port, &["--max-ttl", "1h"]).await;
    let started = Instant::now();
    let mut first = String::new();
    while started.elapsed() < Duration::from_secs(40) {
        first = presented_serial(port, d);
        if first.contains("serial=") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        first.contains("URI:spiffe://mesh.test/orders"),
        "never got a certificate: {first}\n{}",
        proxy.stderr_text()
    );
    assert!(ready("LIVE\n").await, "/ready is LIVE with a certificate");
    // And it serves with it: a request over TLS verified against the CA
    // (openssl checks the chain, not a host name; SVIDs need none).
    let reply = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' | openssl s_client -quiet -verify_return_error -connect 127.0.0.1:{port} -CAfile {} 2>/dev/null",
            d.join("ca/ca.crt").display()
        ))
        .output()
        .expect("sh");
    let reply = String::from_utf8_lossy(&reply.stdout);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // Renewal at about half of the 6 s lifetime, without the token (mTLS).
    std::fs::remove_file(d.join("orders.token")).expect("remove token");
    let mut renewed = String::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        renewed = presented_serial(port, d);
        if renewed.contains("serial=") && renewed != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        renewed.contains("serial=") && renewed != first,
        "not renewed over mTLS:\n{}",
        proxy.stderr_text()
    );
}
