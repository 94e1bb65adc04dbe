//! `mesh-cli issue --ca-url`: the real binary against a stand-in for the CA
//! server's `POST /v1/sign` (SPEC §2) built from the mesh-ca library, until
//! the real server exists. The stand-in checks the bearer token and signs
//! with `allowed_id` = the token's ID, as the server will.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mesh_ca::testing::{TestCert, TestPki};
use mesh_ca::{SignPolicy, SpiffeId, Token};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

/// What the stand-in saw of each request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

struct StandIn {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Serves HTTPS with `server_cert` and signs with `pki`'s CA.
async fn stand_in(pki: Arc<TestPki>, server_cert: TestCert) -> StandIn {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(server_cert.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("server chain");
    let key = PrivateKeyDer::from_pem_slice(server_cert.key_pem.as_bytes()).expect("server key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_server = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let (pki, seen) = (pki.clone(), seen_by_server.clone());
            let service = hyper::service::service_fn(move |req| {
                let (pki, seen) = (pki.clone(), seen.clone());
                async move { Ok::<_, hyper::Error>(sign(&pki, &seen, req).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service),
            );
        }
    });
    StandIn { addr, seen }
}

async fn sign(
    pki: &TestPki,
    seen: &Mutex<Vec<Seen>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let header = |name: http::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header(http::header::AUTHORIZATION);
    let content_type = header(http::header::CONTENT_TYPE);
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.expect("body").to_bytes();
    seen.lock().expect("lock").push(Seen {
        path: path.clone(),
        authorization: authorization.clone(),
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let reply = |status: StatusCode, text: String| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(text)))
            .expect("response")
    };
    let json = |status, msg: String| reply(status, serde_json::json!({ "error": msg }).to_string());
    if path != "/v1/sign" {
        return json(StatusCode::NOT_FOUND, "no such path".into());
    }
    let Some(token) = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
    else {
        return json(StatusCode::UNAUTHORIZED, "missing bearer token".into());
    };
    let id = match Token::verify(pki.ca(), token, OffsetDateTime::now_utc()) {
        Ok(id) => id,
        Err(e) => return json(StatusCode::UNAUTHORIZED, e.to_string()),
    };
    let policy = SignPolicy {
        allowed_id: Some(id),
        ..SignPolicy::default()
    };
    match pki.ca().sign_csr(&body, &policy) {
        Ok(chain) => reply(StatusCode::OK, chain),
        Err(mesh_ca::CaError::Csr(e)) if e.is_forbidden() => {
            json(StatusCode::FORBIDDEN, e.to_string())
        }
        Err(e) => json(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// A folder with `ca.crt` (the bundle) and `token` for `service`.
fn client_dir(pki: &TestPki, service: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.crt"), pki.bundle_pem()).expect("bundle");
    let id = SpiffeId::from_service(pki.trust_domain(), service).expect("id");
    let token = Token::create(pki.ca(), &id, Duration::from_secs(600)).expect("token");
    std::fs::write(dir.path().join("token"), format!("{token}\n")).expect("token");
    dir
}

async fn issue_online(dir: &Path, service: &str, url: &str) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .current_dir(dir)
        .args(["issue", service, "--ca-url", url])
        .args([
            "--bundle",
            "ca.crt",
            "--token-file",
            "token",
            "--out",
            "certs/",
        ])
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("mesh-cli finished in time")
        .expect("mesh-cli ran")
}

fn server_cert(pki: &TestPki) -> TestCert {
    pki.leaf_with_sans(
        "mesh-ca",
        &["localhost"],
        &["127.0.0.1".parse().expect("ip")],
    )
}

/// SPEC §11: a workload certificate valid for the host name dialled
/// (`localhost`) is not the CA. mesh-cli refuses it in the handshake, so
/// the impostor never sees a request, let alone the join token.
#[tokio::test]
async fn online_issue_refuses_a_server_that_is_not_the_ca_identity() {
    let pki = Arc::new(TestPki::new("mesh.local"));
    let impostor = pki.leaf_with_sans(
        "impostor",
        &["localhost"],
        &["127.0.0.1".parse().expect("ip")],
    );
    let server = stand_in(pki.clone(), impostor).await;
    let dir = client_dir(&pki, "victim");
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}", server.addr.port());
        let out = issue_online(dir.path(), "victim", &url).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{host}: {stderr}");
        assert!(
            stderr.contains("the server is spiffe://mesh.local/impostor, not the CA (spiffe://mesh.local/mesh-ca)"),
            "{host}: {stderr}"
        );
    }
    assert!(
        server.seen.lock().expect("lock").is_empty(),
        "the impostor received a request"
    );
    assert!(!dir.path().join("certs/victim.crt").exists());
}

#[tokio::test]
async fn online_issue_gets_a_certificate_for_the_token_identity() {
    let pki = Arc::new(TestPki::new("mesh.local"));
    let server = stand_in(pki.clone(), server_cert(&pki)).await;
    let dir = client_dir(&pki, "orders");
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let out = issue_online(dir.path(), "orders", &url).await;
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("issued spiffe://mesh.local/orders by https://127.0.0.1:"),
        "{stdout}"
    );

    let certs = dir.path().join("certs");
    let chain = std::fs::read(certs.join("orders.crt")).expect("chain");
    let key = std::fs::read_to_string(certs.join("orders.key")).expect("key");
    let verified = mesh_ca::verify_chain(
        &chain,
        pki.bundle_pem().as_bytes(),
        OffsetDateTime::now_utc(),
    )
    .expect("chain verifies");
    assert_eq!(
        verified.spiffe_id.map(|i| i.to_string()).as_deref(),
        Some("spiffe://mesh.local/orders")
    );
    assert_eq!(mesh_ca::key_matches_cert(&key, &chain).ok(), Some(true));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(certs.join("orders.key"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(certs.join("ca.crt")).expect("bundle"),
        pki.bundle_pem()
    );

    let seen = server.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/sign");
    let token = std::fs::read_to_string(dir.path().join("token")).expect("token");
    assert_eq!(
        seen[0].authorization,
        Some(format!("Bearer {}", token.trim()))
    );
    assert_eq!(
        seen[0].content_type.as_deref(),
        Some("application/x-pem-file")
    );
    // Only a CSR went over the wire, never the key.
    assert!(
        seen[0]
            .body
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
    );
    assert!(!seen[0].body.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn a_token_for_another_identity_is_refused_with_the_servers_reason() {
    let pki = Arc::new(TestPki::new("mesh.local"));
    let server = stand_in(pki.clone(), server_cert(&pki)).await;
    let dir = client_dir(&pki, "web");
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let out = issue_online(dir.path(), "orders", &url).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: the CA refused to sign (403 Forbidden): the token is for spiffe://mesh.local/web, \
         the request asks for spiffe://mesh.local/orders\n"
    );
    assert!(!dir.path().join("certs").exists(), "nothing written");
}

#[tokio::test]
async fn a_ca_server_outside_the_bundle_is_not_trusted() {
    let pki = Arc::new(TestPki::new("mesh.local"));
    // The server presents a certificate of another CA (same trust domain).
    let other = TestPki::new("mesh.local");
    let impostor = other.leaf_with_sans("mesh-ca", &[], &["127.0.0.1".parse().expect("ip")]);
    let server = stand_in(pki.clone(), impostor).await;
    let dir = client_dir(&pki, "orders");
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let out = issue_online(dir.path(), "orders", &url).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: TLS handshake with the CA at 127.0.0.1:{} failed: invalid peer certificate",
            server.addr.port()
        )),
        "{stderr}"
    );
    assert!(
        server.seen.lock().expect("lock").is_empty(),
        "no request sent"
    );
    assert!(!dir.path().join("certs").exists());

    // A server certificate that does not name the host is refused too.
    let wrong_name = pki.leaf_with_sans("mesh-ca", &["elsewhere"], &[]);
    let server = stand_in(pki.clone(), wrong_name).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let out = issue_online(dir.path(), "orders", &url).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid peer certificate"));
}

#[tokio::test]
async fn an_unreachable_ca_is_one_sentence() {
    let pki = TestPki::new("mesh.local");
    let dir = client_dir(&pki, "orders");
    // Bind then drop to get a port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let out = issue_online(dir.path(), "orders", &format!("https://127.0.0.1:{port}")).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: cannot reach the CA at 127.0.0.1:{port}: Connection refused\n")
    );
}

/// The same client against the real CA server of `mesh_ca::server`.
#[tokio::test]
async fn online_issue_works_against_the_real_ca_server() {
    use mesh_ca::server::{CaServer, ServerOptions};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    mesh_ca::Ca::create("mesh.local")
        .expect("CA")
        .save(&d.join("ca"), false)
        .expect("save");
    let ca = mesh_ca::Ca::load(&d.join("ca")).expect("load");
    let opts = ServerOptions::new(
        vec!["localhost".into()],
        vec!["127.0.0.1".parse().expect("ip")],
    );
    let server = CaServer::bind(
        mesh_ca::Ca::load(&d.join("ca")).expect("load"),
        "127.0.0.1:0".parse().expect("addr"),
        opts,
    )
    .await
    .expect("bind");
    let url = format!(
        "https://127.0.0.1:{}",
        server.local_addr().expect("addr").port()
    );
    let serving = tokio::spawn(server.run());

    std::fs::copy(d.join("ca/ca.crt"), d.join("ca.crt")).expect("bundle");
    let orders = SpiffeId::parse("spiffe://mesh.local/orders").expect("id");
    let token = Token::create(&ca, &orders, Duration::from_secs(600)).expect("token");
    std::fs::write(d.join("token"), &token).expect("token file");

    let run = |extra: &'static [&'static str], service: &'static str| {
        let url = url.clone();
        async move {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-cli"));
            cmd.current_dir(d)
                .args(["issue", service, "--ca-url", &url, "--bundle", "ca.crt"])
                .args(["--token-file", "token", "--out", "certs/"])
                .args(extra);
            tokio::time::timeout(Duration::from_secs(60), cmd.output())
                .await
                .expect("in time")
                .expect("ran")
        }
    };
    let out = run(&["--ttl", "2h"], "orders").await;
    assert!(out.status.success(), "{out:?}");
    let chain = std::fs::read(d.join("certs/orders.crt")).expect("chain");
    let info = mesh_ca::inspect_pem(&chain).expect("inspect");
    let life = info[0].not_after - OffsetDateTime::now_utc();
    assert!(
        life <= time::Duration::hours(2) && life > time::Duration::minutes(118),
        "{life}"
    );
    assert_eq!(
        info[0].spiffe_id.as_deref(),
        Some("spiffe://mesh.local/orders")
    );

    let out = run(&[], "web").await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: the CA refused to sign (403 Forbidden): the token is for spiffe://mesh.local/orders, \
         the request asks for spiffe://mesh.local/web\n"
    );
    serving.abort();
}
