//! End-to-end: `authz` on a `tcp` listener (SPEC §7), over real sockets and
//! real mTLS with certificates of the bundled CA. The caller's SPIFFE ID is
//! decided once the handshake is done: a denied connection is closed (or,
//! in audit mode, let through and counted), and a reload that stops
//! admitting a caller closes its tunnels already open.

use std::path::Path;
use std::time::Duration;

use mesh_ca::testing::TestPki;
use mesh_tests::mtls::{closed_by_proxy, echo_server, echoes};
use mesh_tests::{ConfigBuilder, ProxyProcess, free_port};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const TD: &str = "mesh.test";
const SERVER: &str = "spiffe://mesh.test/ns/default/sa/server";
const WEB: &str = "spiffe://mesh.test/ns/default/sa/web";
const API: &str = "spiffe://mesh.test/ns/default/sa/api";
const OPS: &str = "spiffe://mesh.test/ns/default/sa/ops";
const DEADLINE: Duration = Duration::from_secs(10);

/// A mutual TLS tcp listener `raw` (to an echo server) allowing the whole
/// trust domain at the handshake, with `authz`.
fn config(dir: &Path, ports: (u16, u16), echo: &str, authz: Value) -> String {
    let extra = json!({
        "tls": {"mode": "mutual", "allow": ["spiffe://mesh.test/**"]},
        "authz": authz,
    });
    ConfigBuilder::new()
        .admin(ports.1)
        .set("identity", json!({"cert": dir.join("server.crt"), "key": dir.join("server.key"), "trust_bundle": dir.join("ca.crt")}))
        .tcp_listener_with("raw", ports.0, "echo", extra)
        .cluster("echo", &[echo])
        .build()
}

/// One rule named `clients` admitting `from`, in `mode`.
fn rules(mode: &str, from: &[&str]) -> Value {
    json!({"mode": mode, "rules": [{"name": "clients", "from": from}]})
}

struct Setup {
    dir: tempfile::TempDir,
    pki: TestPki,
    ports: (u16, u16),
    echo: String,
    proxy: ProxyProcess,
}

impl Setup {
    async fn start(authz: Value) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = TestPki::new(TD);
        let server = pki.leaf_with_sans(SERVER, &["svc.mesh.test"], &[]);
        pki.write(dir.path(), "server", &server);
        let echo = echo_server().await.to_string();
        let ports = (free_port(), free_port());
        let yaml = config(dir.path(), ports, &echo, authz);
        let proxy = ProxyProcess::start_and_wait(&yaml, &[], &[ports.0, ports.1])
            .await
            .expect("proxy starts");
        Self {
            dir,
            pki,
            ports,
            echo,
            proxy,
        }
    }

    async fn tunnel(&self, id: &str) -> TlsStream<TcpStream> {
        mesh_tests::mtls::connect(self.ports.0, &self.pki, &self.pki.leaf(id), b"").await
    }

    async fn stat(&self, name: &str) -> u64 {
        mesh_tests::admin_stat(self.ports.1, name)
            .await
            .unwrap_or(0)
    }

    /// Waits until counter `name` is `n`.
    async fn counted(&self, name: &str, n: u64) -> bool {
        mesh_tests::wait_until_ok(DEADLINE, Duration::from_millis(20), || async {
            self.stat(name).await == n
        })
        .await
    }

    /// Installs the listener with `authz` by SIGHUP; waits until applied.
    async fn reload(&self, authz: Value) {
        let yaml = config(self.dir.path(), self.ports, &self.echo, authz);
        self.proxy.write_config(&yaml).expect("write config");
        self.proxy.signal("HUP").expect("HUP");
        let applied = self.counted("server.config_reload_total", 1).await;
        assert!(applied, "reload not applied: {}", self.proxy.stderr_text());
        assert_eq!(self.stat("server.config_reload_failed").await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_no_rule_admits_is_closed_after_the_handshake() {
    let s = Setup::start(rules("enforce", &[WEB])).await;
    let mut web = s.tunnel(WEB).await;
    assert!(echoes(&mut web).await, "web's tunnel");
    let mut ops = s.tunnel(OPS).await;
    assert!(
        closed_by_proxy(&mut ops).await,
        "ops's connection stays open"
    );
    assert!(s.counted("authz.raw.denied", 1).await);
    assert_eq!(s.stat("authz.raw.allowed.clients").await, 1);
    let stderr = s.proxy.stderr_text();
    assert!(
        stderr.contains(&format!("tcp connection closed: no rule admits {OPS}")),
        "the denial is not logged in words: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_lets_a_would_be_denied_caller_through_and_counts_it() {
    let s = Setup::start(rules("audit", &[WEB])).await;
    let mut ops = s.tunnel(OPS).await;
    assert!(echoes(&mut ops).await, "ops's tunnel in audit mode");
    let mut again = s.tunnel(OPS).await;
    assert!(
        echoes(&mut again).await,
        "ops's second tunnel in audit mode"
    );
    assert!(s.counted("authz.raw.would_deny", 2).await);
    assert_eq!(s.stat("authz.raw.denied").await, 0);
    let stderr = s.proxy.stderr_text();
    let line = format!("would deny tcp connection: no rule admits {OPS}");
    assert_eq!(
        stderr.matches(&line).count(),
        1,
        "the would-be denial is logged once a minute: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_closes_the_open_tunnels_of_a_caller_it_no_longer_admits() {
    let s = Setup::start(rules("enforce", &[WEB, API])).await;
    let mut web = s.tunnel(WEB).await;
    let mut api = s.tunnel(API).await;
    assert!(echoes(&mut web).await, "web's tunnel before");
    assert!(echoes(&mut api).await, "api's tunnel before");

    s.reload(rules("enforce", &[API])).await;

    assert!(closed_by_proxy(&mut web).await, "web's tunnel stays open");
    assert!(echoes(&mut api).await, "api's tunnel was closed too");
    assert!(s.counted("authz.raw.revoked", 1).await);
    let stderr = s.proxy.stderr_text();
    assert!(
        stderr.contains(&format!("authz no longer admits {WEB} after a reload")),
        "the closed tunnel is not logged: {stderr}"
    );
    // New connections meet the new policy.
    let mut again = s.tunnel(WEB).await;
    assert!(closed_by_proxy(&mut again).await, "a new web connection");
}
