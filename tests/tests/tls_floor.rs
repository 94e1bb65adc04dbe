//! RELIABILITY O12, the TLS floor (T7), against a server-auth-only listener
//! (`tls: {mode: server}`) and an mTLS listener of the real `mesh-proxy`,
//! with certificates of the mesh CA:
//! - `openssl s_client -tls1` / `-tls1_1` (with every cipher allowed, so the
//!   client really offers them) get a handshake failure from the server;
//! - TLS 1.2 works, and of every TLS 1.2 suite OpenSSL knows, each tried on
//!   its own, the accepted ones are all ECDHE with AES-GCM or ChaCha20-Poly1305
//!   (a CBC or non-forward-secret suite such as AES128-SHA fails);
//! - TLS 1.3 works, and a request over each accepted session is answered;
//! - Debian's `testssl.sh` reports SSLv2, SSLv3, TLS 1, TLS 1.1 not offered,
//!   NULL / EXPORT / LOW (DES, RC2, RC4) / 3DES / CBC suites not offered, and
//!   no client-initiated renegotiation.

mod interop_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use interop_common::{Ran, command, require_tool, run, s_client};
use mesh_ca::testing::TestPki;
use mesh_tests::{ConfigBuilder, ProxyProcess, free_port, route_prefix_direct};
use serde_json::{Value, json};

const TD: &str = "mesh.test";
const SERVER: &str = "spiffe://mesh.test/tls-floor";
const CLIENT: &str = "spiffe://mesh.test/tls-client";
const REQUEST: &[u8] = b"GET /floor HTTP/1.1\r\nHost: tls-floor\r\nConnection: close\r\n\r\n";

/// The proxy with both listeners, and the client certificate for the mTLS one.
struct Floor {
    _dir: tempfile::TempDir,
    _proxy: ProxyProcess,
    /// `tls: {mode: server}`.
    server_port: u16,
    /// `tls: {mode: mutual, allow: [CLIENT]}`.
    mutual_port: u16,
    /// `-cert FILE -key FILE -CAfile FILE` for the mTLS listener.
    client_args: Vec<String>,
}

async fn start_floor() -> Floor {
    require_tool("openssl", "apt-get install openssl");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    let server = pki.write(d, "server", &pki.leaf(SERVER));
    let client = pki.write(d, "client", &pki.leaf(CLIENT));
    let (server_port, mutual_port) = (free_port(), free_port());
    let ok = || vec![route_prefix_direct("/", 200, "floor ok\n")];
    let cfg = ConfigBuilder::new()
        .set(
            "identity",
            json!({ "cert": server.cert, "key": server.key, "trust_bundle": d.join("ca.crt") }),
        )
        .http_listener_with(
            "tls_server",
            server_port,
            ok(),
            json!({ "tls": { "mode": "server" } }),
        )
        .http_listener_with(
            "tls_mutual",
            mutual_port,
            ok(),
            json!({ "tls": { "mode": "mutual", "allow": [CLIENT] } }),
        );
    let proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[server_port, mutual_port])
        .await
        .expect("proxy starts");
    let path = |p: &Path| p.display().to_string();
    let client_args = vec![
        "-cert".to_owned(),
        path(&client.cert),
        "-key".to_owned(),
        path(&client.key),
        "-CAfile".to_owned(),
        path(&d.join("ca.crt")),
    ];
    Floor {
        _dir: dir,
        _proxy: proxy,
        server_port,
        mutual_port,
        client_args,
    }
}

impl Floor {
    /// (name, port, extra s_client arguments) for each listener.
    fn listeners(&self) -> [(&'static str, u16, Vec<String>); 2] {
        [
            ("server-auth listener", self.server_port, Vec::new()),
            ("mTLS listener", self.mutual_port, self.client_args.clone()),
        ]
    }
}

/// `openssl s_client` with `base` and `extra`; sends `stdin` and (with
/// `-ign_eof`) waits for the server to close.
async fn handshake(port: u16, base: &[String], extra: &[&str], stdin: &[u8]) -> Ran {
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    s_client(port, &args, stdin)
        .await
        .expect("openssl s_client runs")
}

/// The cipher s_client reports having negotiated (`None` for `(NONE)`).
fn negotiated(out: &Ran) -> Option<(String, String)> {
    let line = out.stdout.lines().find(|l| l.starts_with("New, "))?;
    // "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384"
    let rest = line.strip_prefix("New, ")?;
    let (version, cipher) = rest.split_once(", Cipher is ")?;
    (version != "(NONE)" && cipher != "(NONE)").then(|| (version.to_owned(), cipher.to_owned()))
}

/// The client sent a ClientHello (it was not refused by OpenSSL's own
/// policy) and the server answered it with an alert, negotiating nothing.
fn assert_server_refused(out: &Ran, what: &str) {
    assert!(
        !out.stderr.contains("no protocols available")
            && !out.stderr.contains("no ciphers available"),
        "{what}: the client itself refused to offer it, so this checks nothing: {}",
        out.both()
    );
    let written = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("SSL handshake has read "))
        .and_then(|l| l.split(" and written ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        written > 0,
        "{what}: no ClientHello was sent: {}",
        out.both()
    );
    assert!(
        negotiated(out).is_none(),
        "{what} was negotiated: {}",
        out.both()
    );
    assert!(
        out.stderr.contains("SSL alert number"),
        "{what}: expected the server's handshake alert: {}",
        out.both()
    );
    assert!(!out.ok(), "{what}: openssl exited 0: {}", out.both());
}

fn is_ecdhe_aead(cipher: &str) -> bool {
    cipher.starts_with("ECDHE-")
        && (cipher.contains("-GCM-") || cipher.contains("CHACHA20-POLY1305"))
}

/// Every TLS 1.2 suite name this OpenSSL knows, weak ones included.
async fn all_tls12_ciphers() -> Vec<String> {
    let out = run(
        command(
            "openssl",
            &["ciphers", "-tls1_2", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"],
        ),
        b"",
        Duration::from_secs(10),
    )
    .await
    .expect("openssl ciphers");
    assert!(out.ok(), "openssl ciphers: {}", out.both());
    out.stdout
        .trim()
        .split(':')
        .filter(|c| !c.is_empty() && !c.starts_with("TLS_"))
        .map(str::to_owned)
        .collect()
}

/// Tries each suite alone over TLS 1.2; returns the accepted ones.
async fn accepted_tls12_suites(port: u16, base: &[String], suites: &[String]) -> Vec<String> {
    let tries = suites.iter().map(|suite| async move {
        let cipher = format!("{suite}:@SECLEVEL=0");
        let out = handshake(port, base, &["-tls1_2", "-cipher", &cipher], b"").await;
        negotiated(&out).map(|(_, c)| c)
    });
    let mut accepted: Vec<String> = futures_util::stream::iter(tries)
        .buffer_unordered(4)
        .filter_map(|c| async move { c })
        .collect()
        .await;
    accepted.sort();
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o12_openssl_finds_only_tls12_ecdhe_aead_and_tls13() {
    let started = Instant::now();
    let floor = start_floor().await;
    let suites = all_tls12_ciphers().await;
    assert!(
        suites.len() > 20,
        "openssl knows few TLS 1.2 suites: {suites:?}"
    );
    for (name, port, base) in floor.listeners() {
        // Legacy versions, offered with every cipher allowed.
        for version in ["-tls1", "-tls1_1"] {
            let out = handshake(port, &base, &[version, "-cipher", "ALL:@SECLEVEL=0"], b"").await;
            assert_server_refused(&out, &format!("{name}: {version}"));
        }
        // A CBC, non-forward-secret suite over TLS 1.2.
        let out = handshake(port, &base, &["-tls1_2", "-cipher", "AES128-SHA"], b"").await;
        assert_server_refused(&out, &format!("{name}: -tls1_2 -cipher AES128-SHA"));
        // And one our ECDSA key could sign for, forward secret but CBC.
        let out = handshake(
            port,
            &base,
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"],
            b"",
        )
        .await;
        assert_server_refused(
            &out,
            &format!("{name}: -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA"),
        );

        // TLS 1.2 with OpenSSL's defaults: ECDHE + AEAD, and it carries a request.
        let out = handshake(port, &base, &["-tls1_2", "-ign_eof"], REQUEST).await;
        let (version, cipher) =
            negotiated(&out).unwrap_or_else(|| panic!("{name}: TLS 1.2 failed: {}", out.both()));
        assert_eq!(version, "TLSv1.2", "{name}");
        assert!(
            is_ecdhe_aead(&cipher),
            "{name}: TLS 1.2 negotiated {cipher}"
        );
        assert!(
            out.stdout.contains("HTTP/1.1 200") && out.stdout.contains("floor ok"),
            "{name}: no answer over TLS 1.2: {}",
            out.both()
        );

        // Every TLS 1.2 suite on its own: only ECDHE with AES-GCM or ChaCha20.
        let accepted = accepted_tls12_suites(port, &base, &suites).await;
        assert!(
            accepted
                .iter()
                .any(|c| c == "ECDHE-ECDSA-AES128-GCM-SHA256"),
            "{name}: the enumeration accepted nothing expected: {accepted:?}"
        );
        let weak: Vec<&String> = accepted.iter().filter(|c| !is_ecdhe_aead(c)).collect();
        assert!(
            weak.is_empty(),
            "{name}: weak TLS 1.2 suites accepted: {weak:?}"
        );
        eprintln!("{name}: TLS 1.2 suites accepted: {accepted:?}");

        // TLS 1.3 works (and on the mTLS listener the client certificate is
        // accepted: the request is answered).
        let out = handshake(port, &base, &["-tls1_3", "-ign_eof"], REQUEST).await;
        let (version, cipher) =
            negotiated(&out).unwrap_or_else(|| panic!("{name}: TLS 1.3 failed: {}", out.both()));
        assert_eq!(version, "TLSv1.3", "{name}");
        assert!(
            cipher.starts_with("TLS_"),
            "{name}: TLS 1.3 negotiated {cipher}"
        );
        assert!(
            out.stdout.contains("HTTP/1.1 200"),
            "{name}: no answer over TLS 1.3: {}",
            out.both()
        );
    }
    let elapsed = started.elapsed();
    eprintln!("openssl TLS floor checks took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

/// Runs `testssl --jsonfile ... ARGS 127.0.0.1:PORT` in its own process
/// group, bounded to `timeout` (then the whole group is killed by its id);
/// returns the findings by id.
async fn testssl(
    dir: &Path,
    port: u16,
    args: &[&str],
    timeout: Duration,
) -> BTreeMap<String, Value> {
    let json_path = dir.join(format!("testssl-{port}.json"));
    let target = format!("127.0.0.1:{port}");
    let mut cmd = command(
        "testssl",
        &[
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--openssl-timeout",
            "5",
            "--connect-timeout",
            "5",
            "--nodns",
            "none",
        ],
    );
    cmd.arg("--jsonfile")
        .arg(&json_path)
        .args(args)
        .arg(&target)
        .current_dir(dir)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn testssl");
    let group = child.id().expect("testssl pid");
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => output.expect("testssl output"),
        Err(_) => {
            // testssl forks openssl processes; end its whole group by id.
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{group}")])
                .status();
            panic!("testssl {args:?} {target} did not finish within {timeout:?}");
        }
    };
    let text = std::fs::read_to_string(&json_path).unwrap_or_else(|e| {
        panic!(
            "testssl wrote no JSON ({e}); exit {:?}\n{}\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let findings: Vec<Value> = serde_json::from_str(&text).expect("testssl JSON");
    findings
        .into_iter()
        .filter_map(|f| Some((f["id"].as_str()?.to_owned(), f)))
        .collect()
}

fn finding<'a>(findings: &'a BTreeMap<String, Value>, id: &str) -> &'a str {
    findings
        .get(id)
        .and_then(|f| f["finding"].as_str())
        .unwrap_or_else(|| panic!("testssl reported no {id}: {findings:#?}"))
}

fn assert_testssl_floor(listener: &str, findings: &BTreeMap<String, Value>) {
    let not_offered = [
        "SSLv2",
        "SSLv3",
        "TLS1",
        "TLS1_1",
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        // LOW is "64 Bit + DES, RC[2,4]": RC4 lives here.
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
        // AVERAGE is "Obsolete CBC ciphers".
        "cipherlist_AVERAGE",
    ];
    for id in not_offered {
        let found = finding(findings, id);
        assert!(
            found.starts_with("not offered"),
            "{listener}: testssl {id}: {found}"
        );
    }
    for id in ["TLS1_2", "TLS1_3", "cipherlist_STRONG"] {
        let found = finding(findings, id);
        assert!(
            found.starts_with("offered"),
            "{listener}: testssl {id}: {found}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o12_testssl_finds_no_legacy_protocols_weak_ciphers_or_renegotiation() {
    let started = Instant::now();
    require_tool("testssl", "apt-get install testssl.sh");
    let floor = start_floor().await;
    let out_dir = tempfile::tempdir().expect("tempdir");
    // The server-auth listener gets the full O12 run; the mTLS one (testssl
    // cannot present a client certificate) the protocol and cipher checks,
    // which only need the ServerHello. Both run at once to bound the time.
    let full = ["-p", "-s", "-R", "-S"];
    let (server, mutual) = tokio::join!(
        testssl(
            out_dir.path(),
            floor.server_port,
            &full,
            Duration::from_secs(90)
        ),
        testssl(
            out_dir.path(),
            floor.mutual_port,
            &["-p", "-s"],
            Duration::from_secs(90)
        ),
    );
    assert_testssl_floor("server-auth listener", &server);
    assert_testssl_floor("mTLS listener", &mutual);
    let renego = finding(&server, "secure_client_renego");
    assert!(
        renego.contains("not vulnerable"),
        "client-initiated renegotiation: {renego}"
    );
    let elapsed = started.elapsed();
    eprintln!("testssl TLS floor checks took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(90), "took {elapsed:?}");
}
