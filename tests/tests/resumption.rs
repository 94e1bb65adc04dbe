//! TLS session resumption never skips the certificate checks (issue 12,
//! item 1): a client whose short-lived certificate expired replays a saved
//! TLS 1.3 session with `openssl s_client -sess_in` and no certificate, on a
//! mutual HTTP listener, a mutual TCP listener and the CA server. Each case
//! first shows that resumption works while the certificate is valid (so the
//! refusal afterwards is the re-check, not a missing ticket).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mesh_ca::testing::TestPki;
use mesh_ca::{Ca, IssueRequest, SpiffeId};
use mesh_tests::{ConfigBuilder, LedgerUpstream, ProxyProcess, bin_path, free_port, route_prefix};
use serde_json::json;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

const TD: &str = "mesh.test";
const CLIENT: &str = "spiffe://mesh.test/client";
/// Long enough to open two sessions, short enough to wait for.
const SHORT_TTL: Duration = Duration::from_secs(6);

fn write(dir: &Path, name: &str, data: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write");
    p
}

/// The proxy's `identity:` from server.crt, server.key and ca.crt in `dir`.
fn server_identity(dir: &Path) -> serde_json::Value {
    json!({"cert": dir.join("server.crt"), "key": dir.join("server.key"), "trust_bundle": dir.join("ca.crt")})
}

/// A certificate for CLIENT valid for [`SHORT_TTL`], written as
/// client.crt / client.key; returns its expiry.
fn short_lived(ca: &Ca, dir: &Path) -> OffsetDateTime {
    let mut req = IssueRequest::new(SpiffeId::parse(CLIENT).expect("id"));
    req.ttl = SHORT_TTL;
    let issued = ca.issue(&req).expect("short-lived leaf");
    write(dir, "client.crt", &issued.chain_pem);
    write(dir, "client.key", &issued.key_pem);
    issued.not_after
}

/// Waits, with a deadline, until the clock is past `not_after`.
async fn wait_for_expiry(not_after: OffsetDateTime) {
    let past =
        mesh_tests::wait_until_async(Duration::from_secs(30), Duration::from_millis(100), || {
            OffsetDateTime::now_utc() > not_after + time::Duration::seconds(1)
        })
        .await;
    assert!(past, "the certificate did not expire in time");
}

struct Session<'a> {
    cert: bool,
    sess_in: Option<&'a Path>,
    sess_out: Option<&'a Path>,
}

/// One `openssl s_client` exchange (TLS 1.3) sending `request`; returns what
/// it printed (the session summary, `New,` or `Reused,`, and the answer).
async fn s_client(port: u16, dir: &Path, s: Session<'_>, request: &[u8]) -> String {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-tls1_3", "-ign_eof", "-CAfile"])
        .arg(dir.join("ca.crt"));
    if s.cert {
        cmd.arg("-cert").arg(dir.join("client.crt"));
        cmd.arg("-key").arg(dir.join("client.key"));
    }
    if let Some(p) = s.sess_in {
        cmd.arg("-sess_in").arg(p);
    }
    if let Some(p) = s.sess_out {
        cmd.arg("-sess_out").arg(p);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(request).await;
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

const GET: &[u8] = b"GET /resume HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n";

/// While the certificate is good: a full handshake, then a resumed one that
/// saves the fresh ticket it gets (as an attacker keeps a session alive).
/// Returns that saved session.
async fn resumable_session(port: u16, dir: &Path, probe: &[u8]) -> PathBuf {
    let (s1, s2) = (dir.join("s1.sess"), dir.join("s2.sess"));
    let first = Session {
        cert: true,
        sess_in: None,
        sess_out: Some(&s1),
    };
    let first = s_client(port, dir, first, probe).await;
    assert!(
        first.contains(" 200 ") && first.contains("New, TLSv1.3"),
        "first session: {first}"
    );
    let again = Session {
        cert: false,
        sess_in: Some(&s1),
        sess_out: Some(&s2),
    };
    let resumed = s_client(port, dir, again, probe).await;
    assert!(
        resumed.contains("Reused, TLSv1.3") && resumed.contains(" 200 "),
        "resumption must work while the certificate is good: {resumed}"
    );
    s2
}

/// A full handshake with the client certificate gets no answer.
async fn full_handshake_refused(port: u16, dir: &Path, probe: &[u8]) -> bool {
    let full = Session {
        cert: true,
        sess_in: None,
        sess_out: None,
    };
    !s_client(port, dir, full, probe).await.contains("HTTP/1.1")
}

/// Resumes `session` without a certificate, sending `req`.
async fn resume(port: u16, dir: &Path, session: &Path, req: &[u8]) -> String {
    let s = Session {
        cert: false,
        sess_in: Some(session),
        sess_out: None,
    };
    s_client(port, dir, s, req).await
}

async fn replay_after_expiry(
    port: u16,
    dir: &Path,
    not_after: OffsetDateTime,
    probe: &[u8],
    req: &[u8],
) -> String {
    let session = resumable_session(port, dir, probe).await;
    wait_for_expiry(not_after).await;
    assert!(
        full_handshake_refused(port, dir, probe).await,
        "expired certificate, full handshake"
    );
    resume(port, dir, &session, req).await
}

async fn proxy_case(tcp: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    pki.write(d, "server", &pki.leaf("server"));
    let not_after = short_lived(pki.ca(), d);
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let tls = json!({"tls": {"mode": "mutual", "allow": [CLIENT]}});
    let cfg = ConfigBuilder::new().set("identity", server_identity(d));
    let cfg = if tcp {
        cfg.tcp_listener_with("ingress", port, "app", tls)
    } else {
        cfg.http_listener_with("ingress", port, vec![route_prefix("/", "app")], tls)
    };
    let cfg = cfg.cluster("app", &[ledger.addr()]);
    let proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts");

    let last = replay_after_expiry(port, d, not_after, GET, GET).await;
    assert!(
        !last.contains("HTTP/1.1"),
        "the expired session resumed: {last}"
    );
    assert_eq!(
        ledger.entries().len(),
        2,
        "only the two valid sessions reached the app"
    );
    let log = proxy.stderr_text();
    assert!(
        log.contains("resumed session: peer certificate expired"),
        "the refusal is logged in words:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_cannot_resume_a_session_on_a_mutual_http_listener() {
    proxy_case(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_cannot_resume_a_session_on_a_mutual_tcp_listener() {
    proxy_case(true).await;
}

/// A `mesh-ca serve` child, stopped by PID on drop.
struct CaProcess(Child);

impl Drop for CaProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_cannot_renew_through_a_resumed_session_on_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Ca::create(TD).expect("ca");
    ca.save(&d.join("ca"), false).expect("save ca");
    write(d, "ca.crt", &ca.cert_pem());
    let not_after = short_lived(&ca, d);
    let port = free_port();
    let child = Command::new(bin_path("mesh-ca").expect("mesh-ca"))
        .args(["serve", "--ca-dir"])
        .arg(d.join("ca"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mesh-ca starts");
    let _ca = CaProcess(child);
    let up =
        mesh_tests::wait_until_async(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
    assert!(up, "mesh-ca did not start listening");

    let (csr, _key) = mesh_ca::generate_csr(&SpiffeId::parse(CLIENT).expect("id")).expect("csr");
    let mut sign = format!(
        "POST /v1/sign HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-pem-file\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        csr.len()
    )
    .into_bytes();
    sign.extend_from_slice(csr.as_bytes());
    let health = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let last = replay_after_expiry(port, d, not_after, health, &sign).await;
    assert!(
        !last.contains("HTTP/1.1"),
        "an expired certificate renewed itself through a resumed session: {last}"
    );
}

/// The client's root is removed from the bundle (the file is replaced and
/// reloaded): its saved session must stop working with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_a_removed_root_cannot_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    // The proxy's own certificate is from the root that stays.
    pki.write(d, "server", &pki.other_ca_leaf("server"));
    pki.write(d, "client", &pki.leaf(CLIENT));
    write(
        d,
        "ca.crt",
        &format!("{}{}", pki.bundle_pem(), pki.other_bundle_pem()),
    );
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .set("identity", server_identity(d))
        .http_listener_with(
            "ingress",
            port,
            vec![route_prefix("/", "app")],
            json!({"tls": {"mode": "mutual", "allow": [CLIENT]}}),
        )
        .cluster("app", &[ledger.addr()]);
    let proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts");
    let session = resumable_session(port, d, GET).await;

    let tmp = write(d, "ca.crt.new", &pki.other_bundle_pem());
    std::fs::rename(&tmp, d.join("ca.crt")).expect("replace the bundle");
    let mut reloaded = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !reloaded && std::time::Instant::now() < deadline {
        reloaded = full_handshake_refused(port, d, GET).await;
    }
    assert!(
        reloaded,
        "the proxy never dropped the root:\n{}",
        proxy.stderr_text()
    );
    let before = ledger.entries().len();
    let last = resume(port, d, &session, GET).await;
    assert!(
        !last.contains("HTTP/1.1"),
        "a session of the removed root resumed: {last}"
    );
    assert_eq!(
        ledger.entries().len(),
        before,
        "the resumed session reached the app"
    );
    let log = proxy.stderr_text();
    assert!(
        log.contains("resumed session: issued by an unknown CA"),
        "the refusal is logged in words:\n{log}"
    );
}

/// The client's identity is removed from `allow` by a reload: its saved
/// session may still resume (the listener and its session cache stay), but
/// the request is refused like a full handshake's (403), never 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_an_identity_removed_from_allow_gets_no_answer_from_the_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    pki.write(d, "server", &pki.leaf("server"));
    pki.write(d, "client", &pki.leaf(CLIENT));
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let (port, admin) = (free_port(), free_port());
    let config = |allow: &str| {
        ConfigBuilder::new()
            .admin(admin)
            .set("identity", server_identity(d))
            .http_listener_with(
                "ingress",
                port,
                vec![route_prefix("/", "app")],
                json!({"tls": {"mode": "mutual", "allow": [allow]}}),
            )
            .cluster("app", &[ledger.addr()])
            .build()
    };
    let proxy = ProxyProcess::start_and_wait(&config(CLIENT), &[], &[port])
        .await
        .expect("proxy starts");
    let session = resumable_session(port, d, GET).await;

    proxy
        .write_config(&config("spiffe://mesh.test/someone-else"))
        .expect("config");
    proxy.signal("HUP").expect("reload");
    let reloaded = mesh_tests::wait_until_ok(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { mesh_tests::admin_stat(admin, "server.config_reload_total").await >= Some(1) },
    )
    .await;
    assert!(reloaded, "no reload:\n{}", proxy.stderr_text());
    let before = ledger.entries().len();
    let last = resume(port, d, &session, GET).await;
    assert!(
        !last.contains(" 200 "),
        "a removed identity got 200 through a resumed session: {last}"
    );
    // The listener (and its session cache) outlives an allow change, so the
    // session resumes; the allow-list check then answers 403 UAEX.
    assert!(
        !last.contains("Reused") || last.contains("HTTP/1.1 403"),
        "a resumed session of a removed identity must get 403: {last}"
    );
    assert_eq!(
        ledger.entries().len(),
        before,
        "the resumed session reached the app"
    );
}
