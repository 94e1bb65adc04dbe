//! Issue 12 items 5, 6, 7 and 9 (request targets): `;params` on dot
//! segments cannot route around a deny rule, peer bytes in a path never
//! panic the proxy nor get mangled, header names with `_` never pass for the
//! proxy's own headers, and ambiguous targets are refused. Raw sockets and
//! curl against the real `mesh-proxy` and the recording ledger upstream.

mod reliability_common;

use std::net::SocketAddr;
use std::time::Duration;

use mesh_tests::*;
use reliability_common::{OneResponse, one_response};
use serde_json::{Value, json};

/// The acceptance profile: `/admin` and `/admin/` answered 403 by the proxy,
/// `/api/v1` rewritten to `/`, everything else to the ledger.
struct Paths {
    ledger: LedgerUpstream,
    proxy: ProxyProcess,
    port: u16,
    admin: u16,
}

impl Paths {
    async fn start(limits: Value) -> anyhow::Result<Self> {
        let ledger = LedgerUpstream::start().await?;
        let (port, admin) = (free_port(), free_port());
        let routes = vec![
            route_path_direct("/admin", 403, "denied\n"),
            route_prefix_direct("/admin/", 403, "denied\n"),
            route_prefix("/api/v1", "ledger").with("rewrite_prefix", "/"),
            route_prefix("/", "ledger"),
        ];
        let yaml = ConfigBuilder::new()
            .node("paths")
            .admin(admin)
            .http_listener_with("main", port, routes, json!({ "limits": limits }))
            .cluster("ledger", &[ledger.addr()])
            .build();
        let proxy = ProxyProcess::start_and_wait(&yaml, &[], &[port]).await?;
        Ok(Self {
            ledger,
            proxy,
            port,
            admin,
        })
    }

    async fn send(&self, request: &[u8]) -> anyhow::Result<OneResponse> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        one_response(addr, request, Duration::from_secs(5)).await
    }

    async fn get(&self, target: &[u8], extra: &str) -> anyhow::Result<OneResponse> {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(format!(" HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
        self.send(&req).await
    }

    fn targets(&self) -> Vec<String> {
        self.ledger
            .entries()
            .into_iter()
            .map(|e| e.target)
            .collect()
    }
}

/// Acceptance `params_dotdot` and item 5's spellings: a dot segment with
/// `;parameters` is 400 (or 403) and never reaches the upstream, which a
/// servlet container would have read as `/admin`; ordinary matrix
/// parameters still pass untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_with_parameters_never_reach_the_upstream() -> anyhow::Result<()> {
    let m = Paths::start(json!({})).await?;
    let attacks: [&[u8]; 8] = [
        b"/public/..;/admin",
        b"/public/%2e%2e;/admin",
        b"/public/%2E%2e;/admin",
        b"/public/.%2E;x/admin",
        b"/public/.;/admin",
        b"/public/..;x=1/admin",
        b"/public/x/..;/..;/admin",
        b"/;/admin",
    ];
    for target in attacks {
        let r = m.get(target, "").await?;
        let shown = String::from_utf8_lossy(target);
        assert!(matches!(r.status, Some(400 | 403)), "{shown}: {:?}", r.head);
        if r.status == Some(400) {
            assert_eq!(r.header("x-mesh-error").as_deref(), Some("DPE"), "{shown}");
        }
    }
    // The same over h2c, where the target is the `:path` pseudo-header.
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "--path-as-is",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        &format!("http://127.0.0.1:{}/public/%2e%2e;/admin", m.port),
    ])
    .await?;
    assert_eq!(out.stdout, "400 2", "{out:?}");
    let ok = m.get(b"/a;v=1/b", "").await?;
    assert_eq!(ok.status, Some(200), "{:?}", ok.head);
    assert_eq!(m.targets(), vec!["/a;v=1/b".to_owned()], "the upstream saw");
    Ok(())
}

/// Item 6: a prefix matched through a `;parameter` holding a multi-byte
/// character is rewritten without a panic (it used to slice inside `é`),
/// and non-ASCII bytes arrive percent-encoded, not re-encoded as Latin-1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_paths_never_panic_and_arrive_percent_encoded() -> anyhow::Result<()> {
    let m = Paths::start(json!({})).await?;
    let r = m.get("/api;xé/v1/users".as_bytes(), "").await?;
    assert_eq!(r.status, Some(200), "{:?}", r.head);
    let r = m.get("/café/./x".as_bytes(), "").await?;
    assert_eq!(r.status, Some(200), "{:?}", r.head);
    let r = m.get(b"/caf%c3%a9/x", "").await?;
    assert_eq!(r.status, Some(200), "{:?}", r.head);
    assert_eq!(
        m.targets(),
        vec!["/users", "/caf%C3%A9/x", "/caf%C3%A9/x"],
        "the upstream saw"
    );
    let log = m.proxy.stderr_text();
    assert!(!log.contains("panicked"), "{log}");
    Ok(())
}

/// Item 9: two Host fields are a 400 even with an absolute-form target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_with_two_host_headers_is_refused() -> anyhow::Result<()> {
    let m = Paths::start(json!({})).await?;
    let r = m
        .send(b"GET http://a/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        .await?;
    assert_eq!(r.status, Some(400), "{:?}", r.head);
    let r = m
        .send(b"GET http://a/y HTTP/1.1\r\nHost: a\r\n\r\n")
        .await?;
    assert_eq!(r.status, Some(200), "{:?}", r.head);
    assert_eq!(m.targets(), vec!["/y"]);
    Ok(())
}

/// Forged spellings of the proxy's own headers, and one harmless name.
const FORGED: &str = "X-Forwarded_Client_Cert: URI=spiffe://mesh.test/admin\r\n\
    X_Forwarded_For: 6.6.6.6\r\nX-Request_Id: forged\r\nX-Mesh_Error: NR\r\nX_Custom: 1\r\n";

/// Item 7, default `drop`: no header name with `_` reaches the app, over
/// HTTP/1.1 and HTTP/2, and the drops are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_headers_are_dropped_by_default_and_counted() -> anyhow::Result<()> {
    let m = Paths::start(json!({})).await?;
    let r = m.get(b"/h1", FORGED).await?;
    assert_eq!(r.status, Some(200), "{:?}", r.head);
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        "-H",
        "X-Forwarded_Client_Cert: URI=spiffe://mesh.test/admin",
        "-H",
        "X_Custom: 1",
        &format!("http://127.0.0.1:{}/h2", m.port),
    ])
    .await?;
    assert_eq!(out.stdout, "200 2", "{out:?}");
    let entries = m.ledger.entries();
    assert_eq!(entries.len(), 2, "{:?}", m.targets());
    for e in &entries {
        let under: Vec<&String> = e
            .headers
            .iter()
            .map(|(n, _)| n)
            .filter(|n| n.contains('_'))
            .collect();
        assert!(under.is_empty(), "{}: {under:?}", e.target);
        assert!(
            e.header("x-forwarded-client-cert").is_none(),
            "{}",
            e.target
        );
    }
    let dropped = admin_stat(m.admin, "http.main.dropped_headers_with_underscores").await;
    assert_eq!(dropped, Some(7));
    Ok(())
}

/// Item 7, `reject`: 400 `DPE`, nothing forwarded, counted by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_headers_are_refused_under_reject() -> anyhow::Result<()> {
    let m = Paths::start(json!({ "headers_with_underscores": "reject" })).await?;
    let r = m.get(b"/r", "X_Custom: 1\r\n").await?;
    assert_eq!(r.status, Some(400), "{:?}", r.head);
    assert_eq!(r.header("x-mesh-error").as_deref(), Some("DPE"));
    let r = m.get(b"/ok", "X-Custom: 1\r\n").await?;
    assert_eq!(r.status, Some(200), "{:?}", r.head);
    assert_eq!(m.targets(), vec!["/ok"]);
    let name = "http.main.downstream_rq_rejected.headers_with_underscores";
    assert_eq!(admin_stat(m.admin, name).await, Some(1));
    Ok(())
}

/// Item 7, `allow`: other names with `_` pass, but never a spelling of a
/// header the proxy sets or strips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_underscore_headers_never_spell_the_proxys_own() -> anyhow::Result<()> {
    let m = Paths::start(json!({ "headers_with_underscores": "allow" })).await?;
    let r = m.get(b"/allow", FORGED).await?;
    assert_eq!(r.status, Some(200), "{:?}", r.head);
    let e = m.ledger.entries().pop().expect("forwarded");
    let under: Vec<&String> = e
        .headers
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.contains('_'))
        .collect();
    assert_eq!(under, vec!["x_custom"], "{:?}", e.headers);
    assert_eq!(e.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(e.header("x-forwarded-client-cert").is_none());
    Ok(())
}

/// RELIABILITY F15 (without `#`, which hyper's `http::Uri` drops before
/// the proxy sees it): a `%` without two hex digits, a space or a control
/// byte in the target is a 400 and reaches nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_escapes_and_control_bytes_in_the_target_are_refused() -> anyhow::Result<()> {
    let m = Paths::start(json!({})).await?;
    let bad: [&[u8]; 6] = [
        b"/f%zz", b"/f%", b"/f%z1;x", b"/f%2", b"/f\x01x", b"/f\x7fx",
    ];
    for target in bad {
        let r = m.get(target, "").await?;
        let shown = String::from_utf8_lossy(target);
        assert_eq!(r.status, Some(400), "{shown}: {:?}", r.head);
    }
    let r = m.send(b"GET /f x HTTP/1.1\r\nHost: t\r\n\r\n").await?;
    assert_eq!(r.status, Some(400), "space: {:?}", r.head);
    assert!(m.targets().is_empty(), "the upstream saw {:?}", m.targets());
    Ok(())
}

/// Acceptance `underscore_xfcc`: on a mutual-TLS listener, curl with a
/// client certificate and a forged `X-Forwarded_Client_Cert` naming
/// another identity. The app sees only the proxy's own XFCC, naming the
/// real caller, whichever way the forged name is spelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_xfcc_never_reaches_the_app_on_a_mutual_listener() -> anyhow::Result<()> {
    use mesh_ca::testing::TestPki;
    const SERVER: &str = "spiffe://mesh.test/ns/default/sa/server";
    const CLIENT: &str = "spiffe://mesh.test/ns/default/sa/web";
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let pki = TestPki::new("mesh.test");
    let write = |name: &str, data: &str| -> anyhow::Result<String> {
        let p = d.join(name);
        std::fs::write(&p, data)?;
        Ok(p.display().to_string())
    };
    let server = pki.leaf_with_sans(SERVER, &["svc.mesh.test"], &[]);
    let client = pki.leaf(CLIENT);
    let (scrt, skey) = (
        write("s.crt", &server.chain_pem)?,
        write("s.key", &server.key_pem)?,
    );
    let (ccrt, ckey) = (
        write("c.crt", &client.chain_pem)?,
        write("c.key", &client.key_pem)?,
    );
    let ca = write("ca.crt", &pki.bundle_pem())?;
    let ledger = LedgerUpstream::start().await?;
    let port = free_port();
    let yaml = ConfigBuilder::new()
        .set(
            "identity",
            json!({ "cert": scrt, "key": skey, "trust_bundle": ca }),
        )
        .http_listener_with(
            "ingress",
            port,
            vec![route_prefix("/", "app")],
            json!({ "tls": { "mode": "mutual", "allow": [CLIENT] } }),
        )
        .cluster("app", &[ledger.addr()])
        .build();
    let _proxy = ProxyProcess::start_and_wait(&yaml, &[], &[port]).await?;
    for (i, proto) in ["--http1.1", "--http2"].iter().enumerate() {
        let url = format!("https://svc.mesh.test:{port}/m8/xfcc{i}");
        let out = curl(&[
            "-s",
            proto,
            "--resolve",
            &format!("svc.mesh.test:{port}:127.0.0.1"),
            "--cacert",
            &ca,
            "--cert",
            &ccrt,
            "--key",
            &ckey,
            "-H",
            "X-Forwarded_Client_Cert: URI=spiffe://mesh.test/admin",
            "-H",
            "x_forwarded_client_cert: URI=spiffe://mesh.test/admin",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ])
        .await?;
        assert_eq!(out.stdout, "200", "{proto}: {out:?}");
        let target = format!("/m8/xfcc{i}");
        let e = ledger
            .entries()
            .into_iter()
            .find(|e| e.target == target)
            .expect("the app saw the request");
        let forged: Vec<_> = e
            .headers
            .iter()
            .filter(|(_, v)| v.contains("mesh.test/admin"))
            .collect();
        assert!(
            forged.is_empty(),
            "{proto}: forged header reached the app: {forged:?}"
        );
        let real = e.header_all("x-forwarded-client-cert");
        assert!(
            real.len() == 1 && real[0].ends_with(&format!("URI={CLIENT}")),
            "{proto}: {real:?}"
        );
    }
    Ok(())
}

/// Item 7 in the trailer section: a chunked body's trailers are header
/// fields too, which some servers merge into the headers; the proxy's own
/// fields (any spelling) and names with `_` never reach the app there either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_never_carry_the_proxys_own_fields_or_underscores() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A raw upstream: keeps everything it reads until the chunked body's
    // end (the empty line after the trailers), then answers.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = upstream.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    tokio::spawn(async move {
        let Ok((mut s, _)) = upstream.accept().await else {
            return;
        };
        let (mut buf, mut got) = ([0u8; 4096], Vec::new());
        while !chunked_request_complete(&got) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await;
        let _ = tx.send(got);
    });
    let port = free_port();
    let yaml = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "raw")])
        .cluster("raw", &[addr])
        .build();
    let _proxy = ProxyProcess::start_and_wait(&yaml, &[], &[port]).await?;
    let request = b"POST /upload HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\
        Trailer: x-forwarded-client-cert, x_forwarded_client_cert, x-mesh-error, my_trailer, x-sum\r\n\
        Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\
        x-forwarded-client-cert: By=evil;URI=spiffe://mesh.test/admin\r\n\
        x_forwarded_client_cert: URI=spiffe://mesh.test/admin\r\n\
        x-mesh-error: UAEX\r\nmy_trailer: 1\r\nx-sum: 42\r\n\r\n";
    let r = one_response(
        SocketAddr::from(([127, 0, 0, 1], port)),
        request,
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(r.status, Some(200), "{:?}", r.head);
    let got = tokio::time::timeout(Duration::from_secs(5), rx).await??;
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let trailers = text.rsplit_once("\r\n0\r\n").map_or("", |(_, t)| t);
    assert!(
        trailers.contains("x-sum: 42"),
        "an ordinary trailer passes: {text}"
    );
    for name in [
        "x-forwarded-client-cert:",
        "x_forwarded_client_cert:",
        "x-mesh-error:",
        "my_trailer:",
    ] {
        assert!(!trailers.contains(name), "{name} reached the app: {text}");
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether `got` holds a whole chunked request: head, last chunk, trailers
/// and the empty line that ends them.
fn chunked_request_complete(got: &[u8]) -> bool {
    let Some(head_end) = find(got, b"\r\n\r\n") else {
        return false;
    };
    let body = &got[head_end + 2..];
    find(body, b"\r\n0\r\n").is_some_and(|z| find(&body[z + 3..], b"\r\n\r\n").is_some())
}
