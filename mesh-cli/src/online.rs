//! `mesh-cli issue SERVICE --ca-url URL --bundle ca.crt --token-file T`: the
//! client side of the CA server's `POST /v1/sign` (SPEC §2).
//!
//! 1. Make a fresh ECDSA P-256 key and a CSR for the SPIFFE ID; the key
//!    never leaves this machine.
//! 2. POST the PEM CSR over HTTPS with `Authorization: Bearer <token>` (and
//!    `?ttl=<seconds>s` when `--ttl` is given; the server caps it). The
//!    server is verified against `--bundle` only (nothing trusted on first
//!    use) by the standard WebPKI rules (issued by the mesh CA, names the
//!    URL's host, allows serverAuth) AND must be the CA's own identity
//!    `spiffe://<td>/mesh-ca` (SPEC §11), checked in the handshake: a
//!    workload certificate for the same host name never sees the token.
//! 3. Check the answer before writing anything: a chain that verifies
//!    against the bundle, for our key, with the SPIFFE ID we asked for.
//! 4. Write SERVICE.key (0600), SERVICE.crt and ca.crt like offline issue.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use mesh_ca::{SpiffeId, generate_csr, validity_words};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;

use crate::IssueArgs;
use crate::certs::OutFiles;
use crate::inspect::read_pem;

/// Whole exchange: connect, handshake, request, response.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A chain is a few KiB; anything much larger is not one.
const MAX_RESPONSE: usize = 1 << 20;

pub fn issue(args: &IssueArgs, url: &str) -> Result<ExitCode> {
    let target = CaUrl::parse(url)?;
    let bundle_path = args.bundle.as_deref().context("--ca-url needs --bundle")?;
    let token_path = args
        .token_file
        .as_deref()
        .context("--ca-url needs --token-file")?;
    let bundle_pem = read_pem(bundle_path)?;
    let bundle_text = String::from_utf8(bundle_pem.clone()).map_err(|_| {
        anyhow!(
            "cannot read {}: not a PEM certificate",
            bundle_path.display()
        )
    })?;
    let roots = bundle_roots(&bundle_pem)
        .map_err(|e| anyhow!("cannot read {}: {e}", bundle_path.display()))?;
    let token = read_token(token_path)?;

    let trust_domain = match &args.trust_domain {
        Some(td) => td.clone(),
        None => bundle_trust_domain(&bundle_pem).unwrap_or_else(|| "mesh.local".to_owned()),
    };
    let id = SpiffeId::from_service(&trust_domain, &args.service)?;
    let out = OutFiles::new(&args.out, &id);
    out.check(&bundle_text, args.force)?;

    let (csr_pem, key_pem) = generate_csr(&id)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let path = match args.ttl {
        Some(ttl) => format!("{}?ttl={}s", target.sign_path, ttl.as_secs().max(1)),
        None => target.sign_path.clone(),
    };
    let chain_pem = runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, post_csr(&target, &path, roots, &token, csr_pem))
            .await
            .map_err(|_| anyhow!("no answer from the CA at {url} within {TIMEOUT:?}"))?
    })?;
    check_answer(&chain_pem, &key_pem, &id, &bundle_pem)
        .with_context(|| format!("the CA at {url} answered with an unusable certificate"))?;

    out.write(&chain_pem, &key_pem, &bundle_text, args.force)?;
    let info = mesh_ca::inspect_pem(chain_pem.as_bytes())?;
    let now = OffsetDateTime::now_utc();
    if let Some(leaf) = info.first() {
        println!(
            "issued {id} by {url} (serial {}, {})",
            leaf.serial_hex,
            validity_words(leaf.not_before, leaf.not_after, now)
        );
    }
    out.print();
    Ok(ExitCode::SUCCESS)
}

/// Where to send the CSR.
#[derive(Debug, PartialEq, Eq)]
struct CaUrl {
    /// Host as written in the URL (no brackets for IPv6).
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// `<base path>/v1/sign`.
    sign_path: String,
}

impl CaUrl {
    fn parse(url: &str) -> Result<CaUrl> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| anyhow!("--ca-url {url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            bail!("--ca-url must be an https:// URL, got {url:?}");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--ca-url {url:?} has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let base = uri.path().trim_end_matches('/');
        Ok(CaUrl {
            host,
            port: authority.port_u16().unwrap_or(443),
            authority: authority.as_str().to_owned(),
            sign_path: format!("{base}/v1/sign"),
        })
    }
}

/// The bundle's roots, with the verifier that recognises the CA server
/// by its SPIFFE ID.
fn bundle_roots(bundle_pem: &[u8]) -> Result<Arc<mesh_ca::CaServerVerifier>> {
    let roots = CertificateDer::pem_slice_iter(bundle_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| anyhow!("not a PEM certificate"))?;
    if roots.is_empty() {
        bail!("not a PEM certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = mesh_ca::CaServerVerifier::new(&roots, provider)
        .map_err(|e| anyhow!("not a usable CA certificate: {e}"))?;
    Ok(Arc::new(verifier))
}

fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read {}: {}", path.display(), mesh_ca::os_reason(&e)))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("{} holds no token", path.display());
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("{} does not hold a single join token", path.display());
    }
    Ok(token.to_owned())
}

/// The trust domain of the bundle's first `spiffe://<td>` root.
fn bundle_trust_domain(bundle_pem: &[u8]) -> Option<String> {
    mesh_ca::inspect_pem(bundle_pem)
        .ok()?
        .into_iter()
        .find_map(|c| c.spiffe_id?.strip_prefix("spiffe://").map(str::to_owned))
}

async fn post_csr(
    target: &CaUrl,
    path: &str,
    verifier: Arc<mesh_ca::CaServerVerifier>,
    token: &str,
    csr_pem: String,
) -> Result<String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot configure TLS")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::try_from(target.host.clone())
        .map_err(|_| anyhow!("{:?} is not a valid host name", target.host))?;

    let where_ = format!("{}:{}", target.host, target.port);
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            anyhow!(
                "cannot reach the CA at {where_}: {}",
                mesh_ca::os_reason(&e)
            )
        })?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| {
            anyhow!(
                "TLS handshake with the CA at {where_} failed: {}",
                mesh_ca::tls_error_words(&e)
            )
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| anyhow!("HTTP with the CA at {where_} failed: {e}"))?;
    tokio::spawn(conn);

    let request = http::Request::post(path)
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/x-pem-file")
        .header(http::header::ACCEPT, "application/x-pem-file")
        .body(Full::new(Bytes::from(csr_pem)))
        .context("cannot build the request")?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| anyhow!("the CA at {where_} did not answer: {e}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| anyhow!("cannot read the CA's answer: {e}"))?
        .to_bytes();
    if !status.is_success() {
        bail!(
            "the CA refused to sign ({status}): {}",
            refusal_reason(&body)
        );
    }
    String::from_utf8(body.to_vec()).map_err(|_| anyhow!("the CA's answer is not PEM text"))
}

/// The `error` of a JSON error body, or the start of a plain one.
fn refusal_reason(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(msg) = v.get("error").and_then(|e| e.as_str())
    {
        return msg.to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no reason given".to_owned();
    }
    text.chars().take(200).collect()
}

/// The answer is a chain for our key and our ID that the bundle trusts.
fn check_answer(chain_pem: &str, key_pem: &str, id: &SpiffeId, bundle_pem: &[u8]) -> Result<()> {
    let verified =
        mesh_ca::verify_chain(chain_pem.as_bytes(), bundle_pem, OffsetDateTime::now_utc())?;
    match verified.spiffe_id {
        Some(got) if got == *id => {}
        Some(got) => bail!("it is for {got}, not {id}"),
        None => bail!("it is not a valid X.509-SVID"),
    }
    if !mesh_ca::key_matches_cert(key_pem, chain_pem.as_bytes())? {
        bail!("it is not for the key this request was made with");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_urls_give_host_port_and_sign_path() {
        let u = CaUrl::parse("https://ca:8443").expect("url");
        assert_eq!(
            u,
            CaUrl {
                host: "ca".into(),
                port: 8443,
                authority: "ca:8443".into(),
                sign_path: "/v1/sign".into()
            }
        );
        let u = CaUrl::parse("https://[::1]/mesh/").expect("url");
        assert_eq!((u.host.as_str(), u.port), ("::1", 443));
        assert_eq!(u.sign_path, "/mesh/v1/sign");
        assert!(CaUrl::parse("http://ca:8443").is_err());
        assert!(CaUrl::parse("ca:8443").is_err());
    }

    #[test]
    fn refusals_show_the_json_error() {
        assert_eq!(
            refusal_reason(br#"{"error":"token is for spiffe://mesh.local/web"}"#),
            "token is for spiffe://mesh.local/web"
        );
        assert_eq!(refusal_reason(b"  bad token\n"), "bad token");
        assert_eq!(refusal_reason(b""), "no reason given");
    }

    #[test]
    fn answers_are_checked_before_anything_is_written() {
        let pki = mesh_ca::testing::TestPki::new("mesh.local");
        let id = SpiffeId::parse("spiffe://mesh.local/web").expect("id");
        let bundle = pki.bundle_pem();
        let (csr, key) = generate_csr(&id).expect("csr");
        let policy = mesh_ca::SignPolicy::default();
        let chain = pki.ca().sign_csr(csr.as_bytes(), &policy).expect("signed");
        check_answer(&chain, &key, &id, bundle.as_bytes()).expect("good answer");

        let other = SpiffeId::parse("spiffe://mesh.local/api").expect("id");
        let err = check_answer(&chain, &key, &other, bundle.as_bytes()).expect_err("wrong id");
        assert!(
            err.to_string().contains("not spiffe://mesh.local/api"),
            "{err}"
        );
        let (_, other_key) = generate_csr(&id).expect("csr");
        assert!(check_answer(&chain, &other_key, &id, bundle.as_bytes()).is_err());
        let foreign = pki.other_ca_leaf("web").chain_pem;
        assert!(check_answer(&foreign, &key, &id, bundle.as_bytes()).is_err());
        assert_eq!(
            bundle_trust_domain(bundle.as_bytes()).as_deref(),
            Some("mesh.local")
        );
    }
}
