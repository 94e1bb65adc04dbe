//! End-to-end: a reload that removes an identity from `tls.allow` applies to
//! connections already open, over real sockets and real mTLS with
//! certificates of the bundled CA: the next HTTP/1.1 and HTTP/2 request of
//! that identity gets 403 `UAEX`, its raw TCP tunnel is closed, and another
//! identity still listed keeps being served on its open connections.

use std::path::Path;
use std::time::Duration;

use mesh_ca::testing::{TestCert, TestPki};
use mesh_tests::mtls::{closed_by_proxy, connect, echo_server, echoes, get_h1, get_h2, h1, h2};
use mesh_tests::{ConfigBuilder, LedgerUpstream, ProxyProcess, free_port, route_prefix};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const TD: &str = "mesh.test";
const SERVER: &str = "spiffe://mesh.test/ns/default/sa/server";
const WEB: &str = "spiffe://mesh.test/ns/default/sa/web";
const API: &str = "spiffe://mesh.test/ns/default/sa/api";
const DEADLINE: Duration = Duration::from_secs(10);

/// The proxy's config: an mTLS HTTP listener and an mTLS TCP listener (to
/// an echo server), both allowing `allow`.
/// `idle` is the HTTP listener's idle timeout: changing it makes a reload
/// replace that listener instead of keeping it.
fn config(
    dir: &Path,
    ports: (u16, u16, u16),
    (app, echo): (&str, &str),
    allow: &[&str],
    idle: &str,
) -> String {
    let tls = json!({"tls": {"mode": "mutual", "allow": allow}});
    let http = json!({"tls": {"mode": "mutual", "allow": allow}, "limits": {"idle_timeout": idle}});
    ConfigBuilder::new()
        .admin(ports.2)
        .set("identity", json!({"cert": dir.join("server.crt"), "key": dir.join("server.key"), "trust_bundle": dir.join("ca.crt")}))
        .http_listener_with("ingress", ports.0, vec![route_prefix("/", "app")], http)
        .tcp_listener_with("raw", ports.1, "echo", tls)
        .cluster("app", &[app])
        .cluster("echo", &[echo])
        .build()
}

/// A test CA with the proxy's identity (server.crt, server.key and the
/// bundle ca.crt written into `dir`) and the certificates of web and api.
fn write_pki(dir: &Path) -> (TestPki, TestCert, TestCert) {
    let pki = TestPki::new(TD);
    pki.write(
        dir,
        "server",
        &pki.leaf_with_sans(SERVER, &["svc.mesh.test"], &[]),
    );
    let (web, api) = (pki.leaf(WEB), pki.leaf(API));
    (pki, web, api)
}

/// The proxy of [`config`], allowing web and api.
async fn start_allowing_both(
    dir: &Path,
    ports: (u16, u16, u16),
    upstreams: (&str, &str),
) -> ProxyProcess {
    ProxyProcess::start_and_wait(
        &config(dir, ports, upstreams, &[WEB, API], "60s"),
        &[],
        &[ports.0, ports.1, ports.2],
    )
    .await
    .expect("proxy starts")
}

async fn stat(admin: u16, name: &str) -> u64 {
    mesh_tests::admin_stat(admin, name).await.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_removing_an_identity_from_allow_applies_to_open_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (pki, web, api) = write_pki(d);
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let echo = echo_server().await;
    let ports = (free_port(), free_port(), free_port());
    let (app, echo) = (ledger.addr().to_string(), echo.to_string());
    let proxy = start_allowing_both(d, ports, (&app, &echo)).await;

    let (mut web1, mut web2, mut api2) = (
        h1(ports.0, &pki, &web).await,
        h2(ports.0, &pki, &web).await,
        h2(ports.0, &pki, &api).await,
    );
    let ok = (200, "-".to_owned());
    assert_eq!(get_h1(&mut web1).await, ok, "web over HTTP/1.1 before");
    assert_eq!(get_h2(&mut web2).await, ok, "web over HTTP/2 before");
    assert_eq!(get_h2(&mut api2).await, ok, "api over HTTP/2 before");
    let mut web_tcp = connect(ports.1, &pki, &web, b"").await;
    let mut api_tcp = connect(ports.1, &pki, &api, b"").await;
    assert!(echoes(&mut web_tcp).await, "web tunnel before");
    assert!(echoes(&mut api_tcp).await, "api tunnel before");

    reload(
        &proxy,
        ports.2,
        &config(d, ports, (&app, &echo), &[API], "60s"),
        1,
    )
    .await;

    let denied = (403, "UAEX".to_owned());
    assert_eq!(
        get_h1(&mut web1).await,
        denied,
        "web's open HTTP/1.1 connection"
    );
    assert_eq!(
        get_h2(&mut web2).await,
        denied,
        "web's open HTTP/2 connection"
    );
    assert_eq!(get_h2(&mut api2).await, ok, "api's open HTTP/2 connection");
    assert!(
        closed_by_proxy(&mut web_tcp).await,
        "web's tunnel stays open"
    );
    assert!(echoes(&mut api_tcp).await, "api's tunnel was closed too");
    assert_eq!(
        stat(ports.2, "tls.raw.revoked").await,
        1,
        "revocations counted"
    );
    let stderr = proxy.stderr_text();
    assert!(
        stderr.contains("identity no longer in allow"),
        "the closed tunnel is not logged: {stderr}"
    );

    // The reload kept both listeners: new connections meet the new list.
    let (mut api1, mut web_new) = (h1(ports.0, &pki, &api).await, h1(ports.0, &pki, &web).await);
    assert_eq!(get_h1(&mut api1).await, ok, "a new api connection");
    assert_eq!(get_h1(&mut web_new).await, denied, "a new web connection");

    // A reload that replaces the listener (its limits changed) and lists
    // web alone: the old listener's open connections get the new list too.
    let web_only = config(d, ports, (&app, &echo), &[WEB], "30s");
    reload(&proxy, ports.2, &web_only, 2).await;
    assert_eq!(
        get_h2(&mut api2).await,
        denied,
        "api on the replaced listener"
    );
    assert_eq!(
        get_h1(&mut api1).await,
        denied,
        "api on the replaced listener"
    );
    assert!(
        closed_by_proxy(&mut api_tcp).await,
        "api's tunnel stays open"
    );
    let counted = mesh_tests::wait_until_ok(DEADLINE, Duration::from_millis(20), || async {
        stat(ports.2, "tls.raw.revoked").await == 2
    })
    .await;
    assert!(counted, "the second revocation is not counted");
}

/// Installs `yaml` by SIGHUP and waits until it is the `n`th reload applied.
async fn reload(proxy: &ProxyProcess, admin: u16, yaml: &str, n: u64) {
    proxy.write_config(yaml).expect("write config");
    proxy.signal("HUP").expect("HUP");
    let applied = mesh_tests::wait_until_ok(DEADLINE, Duration::from_millis(20), || async {
        stat(admin, "server.config_reload_total").await >= n
    })
    .await;
    assert!(applied, "reload {n} not applied: {}", proxy.stderr_text());
    assert_eq!(stat(admin, "server.config_reload_failed").await, 0);
}

/// An mTLS connection as `cert`, upgraded to a WebSocket through the proxy.
async fn upgraded(port: u16, pki: &TestPki, cert: &TestCert) -> TlsStream<TcpStream> {
    let mut s = connect(port, pki, cert, b"http/1.1").await;
    mesh_tests::upgrade(&mut s).await;
    s
}

/// An upgraded (101) tunnel on a mutual HTTP listener is a connection of
/// its peer like any other: a reload that drops the peer from `allow`
/// closes it (counted), while another identity's tunnel stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_removing_an_identity_closes_its_upgraded_tunnels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (pki, web, api) = write_pki(d);
    let (ws, echo) = (
        mesh_tests::upgrade_echo_upstream().await,
        echo_server().await,
    );
    let ports = (free_port(), free_port(), free_port());
    let (ws, echo) = (ws.to_string(), echo.to_string());
    let proxy = start_allowing_both(d, ports, (&ws, &echo)).await;
    let mut web_ws = upgraded(ports.0, &pki, &web).await;
    let mut api_ws = upgraded(ports.0, &pki, &api).await;
    assert!(echoes(&mut web_ws).await, "web's tunnel before");
    assert!(echoes(&mut api_ws).await, "api's tunnel before");

    reload(
        &proxy,
        ports.2,
        &config(d, ports, (&ws, &echo), &[API], "60s"),
        1,
    )
    .await;

    assert!(
        closed_by_proxy(&mut web_ws).await,
        "web's upgraded tunnel stays open"
    );
    assert!(
        echoes(&mut api_ws).await,
        "api's upgraded tunnel was closed"
    );
    let counted = mesh_tests::wait_until_ok(DEADLINE, Duration::from_millis(20), || async {
        stat(ports.2, "tls.ingress.revoked").await == 1
    })
    .await;
    assert!(counted, "the revoked tunnel is not counted");
}
