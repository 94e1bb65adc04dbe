//! End-to-end mTLS with the bundled CA's own certificates: the negative
//! matrix (RELIABILITY O11), HTTP/2 over ALPN (O1), upstream identity
//! checks, and rotation of leaves and roots without failed requests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mesh_ca::testing::{TestCert, TestPki};
use mesh_tests::{ConfigBuilder, LedgerUpstream, ProxyProcess, curl, free_port, route_prefix};
use serde_json::json;
use tokio::io::AsyncWriteExt;

const TD: &str = "mesh.test";
const SERVER: &str = "spiffe://mesh.test/ns/default/sa/server";
const CLIENT: &str = "spiffe://mesh.test/ns/default/sa/client";
const INTRUDER: &str = "spiffe://mesh.test/ns/default/sa/intruder";

fn write(dir: &Path, name: &str, data: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write");
    p
}

/// Writes `cert` as NAME.crt / NAME.key into `dir`.
fn write_cert(dir: &Path, name: &str, cert: &TestCert) -> (PathBuf, PathBuf) {
    (
        write(dir, &format!("{name}.crt"), &cert.chain_pem),
        write(dir, &format!("{name}.key"), &cert.key_pem),
    )
}

/// A proxy with an mTLS listener allowing CLIENT, routing to the ledger.
async fn mtls_proxy(dir: &Path, pki: &TestPki, ledger: &LedgerUpstream, port: u16) -> ProxyProcess {
    let server = pki.leaf_with_sans(SERVER, &["svc.mesh.test"], &[]);
    write_cert(dir, "server", &server);
    write(dir, "ca.crt", &pki.bundle_pem());
    let cfg = ConfigBuilder::new()
        .set("identity", json!({"cert": dir.join("server.crt"), "key": dir.join("server.key"), "trust_bundle": dir.join("ca.crt")}))
        .http_listener_with("ingress", port, vec![route_prefix("/", "app")], json!({"tls": {"mode": "mutual", "allow": [CLIENT]}}))
        .cluster("app", &[ledger.addr()]);
    ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts")
}

/// One request through `openssl s_client`; returns what it printed.
async fn s_client(port: u16, dir: &Path, cert: Option<(&Path, &Path)>) -> String {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-servername",
        "svc.mesh.test",
        "-quiet",
        "-ign_eof",
    ])
    .arg("-CAfile")
    .arg(dir.join("ca.crt"));
    if let Some((c, k)) = cert {
        cmd.arg("-cert").arg(c).arg("-key").arg(k);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin
        .write_all(b"GET / HTTP/1.1\r\nHost: svc.mesh.test\r\nConnection: close\r\n\r\n")
        .await;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("openssl in time")
        .expect("output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o11_mtls_negative_matrix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let proxy = mtls_proxy(d, &pki, &ledger, port).await;
    let cases: Vec<(&str, Option<TestCert>)> = vec![
        ("none", None),
        ("rogue", Some(pki.other_ca_leaf(CLIENT))),
        ("expired", Some(pki.expired(CLIENT))),
        ("future", Some(pki.future(CLIENT))),
        ("caleaf", Some(pki.ca_leaf(CLIENT))),
        ("twouri", Some(pki.two_uri(CLIENT, INTRUDER))),
        ("wrongid", Some(pki.leaf(INTRUDER))),
        ("ok", Some(pki.leaf(CLIENT))),
    ];
    for (name, cert) in &cases {
        let files = cert.as_ref().map(|c| write_cert(d, name, c));
        let out = s_client(
            port,
            d,
            files.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
        .await;
        match *name {
            "ok" => assert!(out.contains("HTTP/1.1 200"), "{name}: {out}"),
            "wrongid" => assert!(
                out.contains("HTTP/1.1 403") && out.contains("peer identity not allowed"),
                "{name}: {out}"
            ),
            _ => assert!(
                !out.contains("HTTP/1.1"),
                "{name} got an HTTP response: {out}"
            ),
        }
    }
    assert_eq!(
        ledger.entries().len(),
        1,
        "only the ok client reached the upstream: {}",
        ledger.to_jsonl()
    );
    // Every rejection is logged once, in words.
    let log = proxy.stderr_text();
    for words in [
        "no client certificate",
        "issued by an unknown CA",
        "peer certificate expired",
        "not valid for another",
        "not allowed",
    ] {
        assert!(log.contains(words), "missing {words:?} in\n{log}");
    }
    let rejected = log.lines().filter(|l| l.contains("tls: ")).count();
    assert_eq!(rejected, 7, "one log line per rejected client:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o1_bodies_cross_mtls_with_http2_negotiated_by_alpn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let _proxy = mtls_proxy(d, &pki, &ledger, port).await;
    let (cert, key) = write_cert(d, "client", &pki.leaf(CLIENT));
    let body: Vec<u8> = (0..1_048_576u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let file = write(d, "body", "");
    std::fs::write(&file, &body).expect("body");
    let base = [
        "-s",
        "--http2",
        "--resolve",
        &format!("svc.mesh.test:{port}:127.0.0.1"),
    ];
    let ca = d.join("ca.crt");
    let tls = [
        "--cacert",
        ca.to_str().expect("utf8"),
        "--cert",
        cert.to_str().expect("utf8"),
        "--key",
        key.to_str().expect("utf8"),
    ];
    let url = |p: &str| format!("https://svc.mesh.test:{port}{p}");
    let mut up: Vec<&str> = base.to_vec();
    up.extend_from_slice(&tls);
    let data = format!("@{}", file.display());
    let (u, w) = (url("/echo"), "%{http_code} %{http_version}".to_owned());
    up.extend_from_slice(&[
        "-X",
        "POST",
        "--data-binary",
        &data,
        "-o",
        "/dev/null",
        "-w",
        &w,
        &u,
    ]);
    assert_eq!(curl(&up).await.expect("curl").stdout, "200 2");
    let e = ledger
        .entries()
        .into_iter()
        .find(|e| e.target == "/echo")
        .expect("entry");
    assert_eq!(e.body_sha256, mesh_tests::sha256_hex(&body));
    assert_eq!(e.header("x-forwarded-proto"), Some("https"));
    let xfcc = e
        .header("x-forwarded-client-cert")
        .expect("xfcc")
        .to_owned();
    assert!(
        xfcc.starts_with(&format!("By={SERVER};Hash="))
            && xfcc.ends_with(&format!(";URI={CLIENT}")),
        "{xfcc}"
    );

    let mut down: Vec<&str> = base.to_vec();
    down.extend_from_slice(&tls);
    let out_file = d.join("down");
    let (u2, w2) = (
        url("/big?bytes=1048576"),
        "%{size_download} %{http_version}".to_owned(),
    );
    down.extend_from_slice(&["-o", out_file.to_str().expect("utf8"), "-w", &w2, &u2]);
    assert_eq!(curl(&down).await.expect("curl").stdout, "1048576 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_checks_the_peer_spiffe_id_and_clients_cannot_forge_xfcc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let (ingress, egress) = (free_port(), free_port());
    // One proxy plays both sidecars: its egress calls its own ingress, which
    // allows its own identity.
    write_cert(d, "server", &pki.leaf(SERVER));
    write(d, "ca.crt", &pki.bundle_pem());
    let routes = vec![
        route_prefix("/wrong/", "wrong_peer"),
        route_prefix("/", "mesh"),
    ];
    let cfg = ConfigBuilder::new()
        .set("identity", json!({"cert": d.join("server.crt"), "key": d.join("server.key"), "trust_bundle": d.join("ca.crt")}))
        .http_listener_with("ingress", ingress, vec![route_prefix("/", "app")], json!({"tls": {"mode": "mutual", "allow": ["spiffe://mesh.test/ns/*/sa/server"]}}))
        .http_listener("egress", egress, routes)
        .cluster("app", &[ledger.addr()])
        .cluster_with("mesh", &[format!("127.0.0.1:{ingress}")], json!({"protocol": "http2", "tls": {"mode": "mutual", "peer": SERVER}}))
        .cluster_with("wrong_peer", &[format!("127.0.0.1:{ingress}")], json!({"tls": {"mode": "mutual", "peer": "spiffe://mesh.test/ns/default/sa/other"}}));
    let _proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[ingress, egress])
        .await
        .expect("proxy");
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "x-forwarded-client-cert: URI=spiffe://mesh.test/admin",
        &format!("http://127.0.0.1:{egress}/hello"),
    ])
    .await
    .expect("curl");
    assert_eq!(out.stdout, "200");
    let e = &ledger.entries()[0];
    assert_eq!(e.version, "HTTP/1.1");
    let xfcc = e.header("x-forwarded-client-cert").expect("xfcc");
    assert!(
        xfcc.ends_with(&format!(";URI={SERVER}")) && !xfcc.contains("admin"),
        "{xfcc}"
    );
    let wrong = curl(&["-s", "-i", &format!("http://127.0.0.1:{egress}/wrong/x")])
        .await
        .expect("curl");
    assert!(wrong.stdout.starts_with("HTTP/1.1 503"), "{}", wrong.stdout);
    assert!(
        wrong
            .stdout
            .to_ascii_lowercase()
            .contains("x-mesh-error: uf"),
        "{}",
        wrong.stdout
    );
    assert_eq!(
        ledger.entries().len(),
        1,
        "the wrong peer never received the request"
    );
}

/// The serial of the certificate a new handshake presents.
async fn presented_serial(port: u16, dir: &Path) -> String {
    let out = s_client(
        port,
        dir,
        Some((&dir.join("client.crt"), &dir.join("client.key"))),
    )
    .await;
    let _ = out;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(format!(
        "openssl s_client -connect 127.0.0.1:{port} -CAfile {ca} -cert {c} -key {k} </dev/null 2>/dev/null | openssl x509 -noout -serial",
        ca = dir.join("ca.crt").display(),
        c = dir.join("client.crt").display(),
        k = dir.join("client.key").display()
    ));
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output())
        .await
        .expect("in time")
        .expect("sh");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

fn serial_of(cert: &TestCert) -> String {
    mesh_ca::inspect_pem(cert.cert_pem.as_bytes()).expect("inspect")[0]
        .serial_hex
        .to_ascii_lowercase()
}

/// Replaces `path` atomically (write aside, rename over), as editors and
/// secret managers do.
fn replace(path: &Path, data: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificates_serve_new_handshakes_within_two_seconds_without_dropping_connections()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let _proxy = mtls_proxy(d, &pki, &ledger, port).await;
    write_cert(d, "client", &pki.leaf(CLIENT));
    let before = presented_serial(port, d).await;
    assert!(!before.is_empty());

    // A slow request in flight on an established connection…
    let args: Vec<String> = [
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--resolve",
        &format!("svc.mesh.test:{port}:127.0.0.1"),
        "--cacert",
        d.join("ca.crt").to_str().expect("utf8"),
        "--cert",
        d.join("client.crt").to_str().expect("utf8"),
        "--key",
        d.join("client.key").to_str().expect("utf8"),
        &format!("https://svc.mesh.test:{port}/slow?ms=2500"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let inflight = tokio::spawn(async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&refs).await
    });
    ledger
        .wait_for_entries(1, Duration::from_secs(5))
        .await
        .expect("slow request reached the upstream");

    // …while the files are replaced by rename.
    let next = pki.leaf_with_sans(SERVER, &["svc.mesh.test"], &[]);
    replace(&d.join("server.crt"), &next.chain_pem);
    replace(&d.join("server.key"), &next.key_pem);
    let want = serial_of(&next);
    let started = std::time::Instant::now();
    let mut seen = String::new();
    while started.elapsed() < Duration::from_secs(4) {
        seen = presented_serial(port, d).await;
        if seen == want {
            break;
        }
    }
    assert_eq!(
        seen, want,
        "new handshakes still present {seen} (before: {before})"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "rotation took {:?}",
        started.elapsed()
    );
    assert_eq!(
        inflight.await.expect("join").expect("curl").stdout,
        "200",
        "the established connection carried on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_style_symlink_swap_rotates_the_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    let ledger = LedgerUpstream::start().await.expect("ledger");
    // secret/..2026_a/{tls.crt,tls.key,ca.crt}, secret/..data -> ..2026_a,
    // secret/tls.crt -> ..data/tls.crt: what a Secret volume looks like.
    let secret = d.join("secret");
    let version = |name: &str, cert: &TestCert| {
        let v = secret.join(name);
        std::fs::create_dir_all(&v).expect("mkdir");
        write(&v, "tls.crt", &cert.chain_pem);
        write(&v, "tls.key", &cert.key_pem);
        write(&v, "ca.crt", &pki.bundle_pem());
    };
    let first = pki.leaf(SERVER);
    version("..v1", &first);
    std::os::unix::fs::symlink("..v1", secret.join("..data")).expect("symlink");
    for f in ["tls.crt", "tls.key", "ca.crt"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), secret.join(f)).expect("symlink");
    }
    write(d, "ca.crt", &pki.bundle_pem());
    write_cert(d, "client", &pki.leaf(CLIENT));
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .set("identity", json!({"cert": secret.join("tls.crt"), "key": secret.join("tls.key"), "trust_bundle": secret.join("ca.crt")}))
        .http_listener_with("ingress", port, vec![route_prefix("/", "app")], json!({"tls": {"mode": "mutual", "allow": [CLIENT]}}))
        .cluster("app", &[ledger.addr()]);
    let _proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy");
    assert_eq!(presented_serial(port, d).await, serial_of(&first));

    let second = pki.leaf(SERVER);
    version("..v2", &second);
    std::os::unix::fs::symlink("..v2", secret.join("..data_tmp")).expect("symlink");
    std::fs::rename(secret.join("..data_tmp"), secret.join("..data")).expect("atomic swap");
    let want = serial_of(&second);
    let mut seen = String::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(4) && seen != want {
        seen = presented_serial(port, d).await;
    }
    assert_eq!(seen, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_under_traffic_fails_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let old = TestPki::new(TD);
    let new = TestPki::new(TD);
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let _proxy = mtls_proxy(d, &old, &ledger, port).await;
    // The client trusts both roots from the start (it was given the new
    // bundle first, step 1 of the procedure, on its side).
    let both = format!("{}{}", old.bundle_pem(), new.bundle_pem());
    write(d, "both.crt", &both);
    write_cert(d, "client", &old.leaf(CLIENT));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Which client key pair the traffic uses: "client" (old root), then
    // "fresh" (new root). Switching the pair at once keeps the client's own
    // rotation atomic (a key of one pair with the cert of the other would
    // fail in curl, not in the proxy).
    let generation = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let generation = Arc::clone(&generation);
        let d = d.to_path_buf();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let pair = if generation.load(Ordering::Relaxed) == 0 {
                    "client"
                } else {
                    "fresh"
                };
                let (cert, key) = (d.join(format!("{pair}.crt")), d.join(format!("{pair}.key")));
                // A new connection (new handshake) every request.
                let out = curl(&[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--resolve",
                    &format!("svc.mesh.test:{port}:127.0.0.1"),
                    "--cacert",
                    d.join("both.crt").to_str().unwrap_or(""),
                    "--cert",
                    cert.to_str().unwrap_or(""),
                    "--key",
                    key.to_str().unwrap_or(""),
                    &format!("https://svc.mesh.test:{port}/"),
                ])
                .await;
                match out {
                    Ok(o) if o.stdout == "200" => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let wait_requests = |n: usize| {
        let ok = Arc::clone(&ok);
        async move {
            let target = ok.load(Ordering::Relaxed) + n;
            assert!(
                mesh_tests::wait_until_async(
                    Duration::from_secs(10),
                    Duration::from_millis(20),
                    || ok.load(Ordering::Relaxed) >= target
                )
                .await
            );
        }
    };
    wait_requests(5).await;
    // Each step is checked to have taken effect before the next one.
    let fresh = new.leaf(CLIENT);
    write_cert(d, "fresh", &fresh);
    write_cert(d, "stale", &old.leaf(CLIENT));
    let accepted = |name: &'static str| {
        let d = d.to_path_buf();
        async move {
            let out = s_client(
                port,
                &d,
                Some((
                    &d.join(format!("{name}.crt")),
                    &d.join(format!("{name}.key")),
                )),
            )
            .await;
            out.contains("HTTP/1.1 200")
        }
    };
    assert!(
        !accepted("fresh").await,
        "a new-root client before the server trusts the new root"
    );
    // 1. The server trusts both roots.
    replace(&d.join("ca.crt"), &both);
    assert!(
        mesh_tests::wait_until_ok(Duration::from_secs(4), Duration::from_millis(100), || {
            accepted("fresh")
        })
        .await
    );
    wait_requests(10).await;
    // 2. Leaves are reissued by the new root: the server's…
    let server = new.leaf_with_sans(SERVER, &["svc.mesh.test"], &[]);
    replace(&d.join("server.crt"), &server.chain_pem);
    replace(&d.join("server.key"), &server.key_pem);
    let want = serial_of(&server);
    assert!(
        mesh_tests::wait_until_ok(
            Duration::from_secs(4),
            Duration::from_millis(100),
            || async { presented_serial(port, d).await == want }
        )
        .await
    );
    wait_requests(10).await;
    // …and the client's.
    generation.store(1, Ordering::Relaxed);
    wait_requests(10).await;
    // 3. The old root leaves the server's bundle: old leaves are refused.
    assert!(accepted("stale").await);
    replace(&d.join("ca.crt"), &new.bundle_pem());
    assert!(
        mesh_tests::wait_until_ok(
            Duration::from_secs(4),
            Duration::from_millis(100),
            || async { !accepted("stale").await }
        )
        .await
    );
    wait_requests(10).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.expect("traffic");
    assert!(ok.load(Ordering::Relaxed) >= 45);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during root rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_system_verifies_against_public_roots_not_the_mesh_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    write_cert(
        d,
        "server",
        &pki.leaf_with_sans(SERVER, &["svc.mesh.test"], &[]),
    );
    write(d, "ca.crt", &pki.bundle_pem());
    let (tls_port, egress) = (free_port(), free_port());
    let cfg = ConfigBuilder::new()
        .set("identity", json!({"cert": d.join("server.crt"), "key": d.join("server.key"), "trust_bundle": d.join("ca.crt")}))
        .http_listener_with("https", tls_port, vec![mesh_tests::route_prefix_direct("/", 200, "ok\n")], json!({"tls": {"mode": "server"}}))
        .http_listener("egress", egress, vec![route_prefix("/system/", "system"), route_prefix("/", "mesh")])
        .cluster_with("system", &[format!("127.0.0.1:{tls_port}")], json!({"tls": {"mode": "server", "trust": "system", "sni": "svc.mesh.test"}}))
        .cluster_with("mesh", &[format!("127.0.0.1:{tls_port}")], json!({"tls": {"mode": "server", "peer": SERVER}}));
    let _proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[tls_port, egress])
        .await
        .expect("proxy");
    let mesh = curl(&[
        "-s",
        "-w",
        " %{http_code}",
        &format!("http://127.0.0.1:{egress}/x"),
    ])
    .await
    .expect("curl");
    assert_eq!(
        mesh.stdout, "ok\n 200",
        "the mesh bundle trusts the mesh CA"
    );
    // The mesh CA is no public root: with system trust the handshake fails.
    let system = curl(&["-s", "-i", &format!("http://127.0.0.1:{egress}/system/x")])
        .await
        .expect("curl");
    assert!(
        system.stdout.starts_with("HTTP/1.1 503"),
        "{}",
        system.stdout
    );
    assert!(
        system
            .stdout
            .to_ascii_lowercase()
            .contains("x-mesh-error: uf"),
        "{}",
        system.stdout
    );
}
