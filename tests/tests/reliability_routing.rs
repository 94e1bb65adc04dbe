//! RELIABILITY.md acceptance checks O1 (plaintext parts), O8, O10 and O13:
//! transparency of bodies over HTTP/1.1 and h2c, header sanitizing, path
//! normalization against a deny rule, and the basic upstream faults, driven
//! with the system curl against the real `mesh-proxy`.

mod reliability_common;

use std::fs;
use std::time::{Duration, Instant};

use mesh_tests::*;
use reliability_common::*;
use ring::rand::SecureRandom as _;

/// Hop-by-hop fields (RFC 9110 §7.6.1) and the HTTP/2 upgrade leftovers; `te`
/// is judged separately (`trailers` may pass).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "transfer-encoding",
    "http2-settings",
];

/// O1 (plaintext listener): a 1 MiB random body POSTed to `/echo` and a
/// 1 MiB download from `/big`, with `--http1.1` and `--http2-prior-knowledge`:
/// 200 each time, the ledger's sha256 equals the file's, the download is
/// exactly 1,048,576 bytes, and no hop-by-hop header reached the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o1_bodies_cross_h1_and_h2c_unchanged() -> anyhow::Result<()> {
    let mesh = Mesh::start().await?;
    let dir = tempfile::tempdir()?;
    let mut body = vec![0u8; 1024 * 1024];
    ring::rand::SystemRandom::new()
        .fill(&mut body)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    let file = dir.path().join("f");
    fs::write(&file, &body)?;
    let data_arg = format!("@{}", file.display());
    let want_sha = sha256_hex(&body);

    for (i, proto) in ["--http1.1", "--http2-prior-knowledge"].iter().enumerate() {
        let hdr = dir.path().join(format!("hdr{i}"));
        let out_file = dir.path().join(format!("out{i}"));
        let (hdr_arg, out_arg) = (hdr.display().to_string(), out_file.display().to_string());
        let target = format!("/echo?proto={i}");
        let post = curl(&[
            "-s",
            proto,
            "-X",
            "POST",
            "--data-binary",
            &data_arg,
            "-D",
            &hdr_arg,
            "-o",
            &out_arg,
            "-w",
            "%{http_code}",
            &mesh.url(&target),
        ])
        .await?;
        assert_eq!(
            (post.exit_code, post.stdout.as_str()),
            (0, "200"),
            "{proto} POST: {post:?}"
        );
        let entries = mesh.ledger.entries();
        let entry = entries
            .iter()
            .find(|e| e.target == target)
            .unwrap_or_else(|| panic!("{proto}: no ledger entry for {target}"));
        assert_eq!(entry.body_len, body.len() as u64, "{proto}");
        assert_eq!(entry.body_sha256, want_sha, "{proto}: body changed");

        let down = dir.path().join(format!("down{i}"));
        let down_arg = down.display().to_string();
        let get = curl(&[
            "-s",
            proto,
            "-o",
            &down_arg,
            "-w",
            "%{http_code}",
            &mesh.url("/big?bytes=1048576"),
        ])
        .await?;
        assert_eq!(
            (get.exit_code, get.stdout.as_str()),
            (0, "200"),
            "{proto} download: {get:?}"
        );
        let got = fs::read(&down)?;
        assert_eq!(got.len(), 1_048_576, "{proto}: download length");
        assert_eq!(
            sha256_hex(&got),
            big_body_sha256(1_048_576),
            "{proto}: download bytes"
        );
    }

    let entries = mesh.ledger.entries();
    assert_eq!(entries.len(), 4, "{}", mesh.ledger_dump());
    for e in &entries {
        for name in HOP_BY_HOP {
            assert!(
                e.header(name).is_none(),
                "{} {}: upstream received hop-by-hop `{name}`",
                e.version,
                e.target
            );
        }
        assert!(
            e.header("te").is_none_or(|v| v == "trailers"),
            "{}: te {:?}",
            e.target,
            e.header("te")
        );
    }
    Ok(())
}

/// O8: hop-by-hop fields (and whatever `Connection` names) are removed,
/// `te` is dropped or reduced to `trailers`, the client's `x-forwarded-for` /
/// `x-forwarded-proto` are replaced (README: replace mode on listeners that
/// do not trust their downstream), and a client's `x-forwarded-client-cert`
/// (the only internal identity header so far) is stripped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o8_hop_by_hop_forwarding_and_identity_headers_are_sanitized() -> anyhow::Result<()> {
    let mesh = Mesh::start().await?;
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Connection: close, X-Secret",
        "-H",
        "X-Secret: 1",
        "-H",
        "Keep-Alive: timeout=99",
        "-H",
        "Proxy-Connection: keep-alive",
        "-H",
        "TE: trailers, deflate",
        "-H",
        "Upgrade: foo",
        "-H",
        "X-Forwarded-For: 6.6.6.6",
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Forwarded-Client-Cert: By=spiffe://mesh.test/ns/default/sa/server;URI=spiffe://mesh.test/ns/default/sa/admin",
        &mesh.url("/o8"),
    ])
    .await?;
    assert_eq!((out.exit_code, out.stdout.as_str()), (0, "200"), "{out:?}");
    let entries = mesh.ledger.entries();
    let e = entries
        .iter()
        .find(|e| e.target == "/o8")
        .unwrap_or_else(|| panic!("no ledger entry:\n{}", mesh.ledger_dump()));
    for name in [
        "x-secret",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "x-forwarded-client-cert",
    ] {
        assert!(
            e.header(name).is_none(),
            "upstream received `{name}`: {:?}",
            e.headers
        );
    }
    assert!(
        e.header_all("te").iter().all(|v| *v == "trailers"),
        "te: {:?}",
        e.header_all("te")
    );
    assert_eq!(
        e.header_all("x-forwarded-for"),
        vec!["127.0.0.1"],
        "x-forwarded-for must be replaced by the peer"
    );
    assert_eq!(e.header_all("x-forwarded-proto"), vec!["http"]);
    Ok(())
}

/// RFC 3986 §5.2.4 dot-segment removal after decoding percent-encoded
/// unreserved characters (§6.2.2.2): the normalization O10 judges by.
fn rfc3986_normalize(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                let c = b as char;
                if c.is_ascii_alphanumeric() || "-._~".contains(c) {
                    decoded.push(c);
                    i += 3;
                    continue;
                }
            }
        }
        decoded.push(bytes[i] as char);
        i += 1;
    }
    let mut input = decoded.as_str();
    let mut output: Vec<&str> = Vec::new();
    let mut out_tail = String::new();
    // Segment-wise variant of the §5.2.4 loop for absolute paths.
    let absolute = input.starts_with('/');
    if absolute {
        input = &input[1..];
    }
    let segments: Vec<&str> = input.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (idx, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if idx == last {
                    out_tail.push('/');
                }
            }
            ".." => {
                output.pop();
                if idx == last {
                    out_tail.push('/');
                }
            }
            s => output.push(s),
        }
    }
    let mut result = String::from(if absolute { "/" } else { "" });
    result.push_str(&output.join("/"));
    if !out_tail.is_empty() && !result.ends_with('/') {
        result.push('/');
    }
    result
}

#[test]
fn rfc3986_normalize_follows_the_rfc_examples() {
    assert_eq!(rfc3986_normalize("/a/b/c/./../../g"), "/a/g");
    assert_eq!(rfc3986_normalize("/mid/content=5/../6"), "/mid/6");
    assert_eq!(rfc3986_normalize("/public/%2E%2E/admin"), "/admin");
    assert_eq!(rfc3986_normalize("/%61dmin"), "/admin");
    assert_eq!(rfc3986_normalize("/a/./b/../c"), "/a/c");
    assert_eq!(rfc3986_normalize("/a/.."), "/");
    assert_eq!(
        rfc3986_normalize("/public/..%2fadmin"),
        "/public/..%2fadmin"
    );
    assert_eq!(rfc3986_normalize("/ADMIN"), "/ADMIN");
}

/// O10: with `/admin` and `/admin/` denied (403) by route rules, every
/// spelling of the admin path is 403, 400 or a redirect — never a 200 from
/// upstream — and the ledger never holds a target that normalizes to
/// `/admin` or `/admin/…`. Paths are case-sensitive (README), so `/ADMIN`
/// may reach the upstream as `/ADMIN`. `/a/./b/../c` arrives as `/a/c`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o10_path_normalization_cannot_bypass_the_admin_deny_rule() -> anyhow::Result<()> {
    let mesh = Mesh::start().await?;
    let paths = [
        "/admin",
        "/admin/",
        "/./admin",
        "/public/../admin",
        "/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/%61dmin",
        "//admin",
        "/public/..%2fadmin",
        "/public/%2e%2e%2fadmin",
        "/admin;x=1",
        "/ADMIN",
    ];
    let mut failures = Vec::new();
    for path in paths {
        let (code, _) = curl_status(&mesh.url(path), &["--path-as-is"]).await?;
        let denied = code == 403 || code == 400 || (300..400).contains(&code);
        let case_policy =
            path == "/ADMIN" && code == 200 && mesh.ledger.count(|e| e.target == "/ADMIN") == 1;
        if !(denied || case_policy) {
            failures.push(format!("{path}: {code}"));
        }
    }
    let (code, _) = curl_status(&mesh.url("/a/./b/../c"), &["--path-as-is"]).await?;
    assert_eq!(code, 200, "/a/./b/../c");
    let reached: Vec<String> = mesh
        .ledger
        .entries()
        .into_iter()
        .map(|e| e.target)
        .collect();
    assert!(
        reached.iter().any(|t| t == "/a/c"),
        "/a/./b/../c must reach the ledger as /a/c; ledger targets: {reached:?}"
    );
    for target in &reached {
        let path = target.split('?').next().unwrap_or_default();
        let normalized = rfc3986_normalize(path);
        if normalized == "/admin" || normalized.starts_with("/admin/") {
            failures.push(format!(
                "ledger holds {target:?} (normalizes to {normalized})"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "deny rule bypassed: {failures:#?}\nledger:\n{}",
        mesh.ledger_dump()
    );
    Ok(())
}

/// O13 (no retries configured): `/fault/hang` → 504 in 2.0–2.6 s (route
/// timeout 2 s); `/dead` → 503 (or 502) in < 1 s; `/dns` (`nosuch.invalid`)
/// → 503 within connect timeout + 1 s while `/` keeps answering;
/// `/fault/garbage` → 502 in < 1 s; `/fault/reset-mid` → curl exit 18 over
/// HTTP/1.1 and a non-zero exit over h2c. Afterwards the proxy's established
/// connections to the fault upstream return to the baseline within the
/// cluster's 1 s idle timeout, and the proxy is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o13_upstream_faults_become_fast_local_replies() -> anyhow::Result<()> {
    let mut mesh = Mesh::start().await?;
    let uf = mesh.fault.port();
    let baseline = established_to(uf).await?;
    let mut failures = Vec::new();

    let (code, secs) = curl_status(&mesh.url("/fault/hang"), &[]).await?;
    if code != 504 || !(2.0..=2.6).contains(&secs) {
        failures.push(format!(
            "/fault/hang: {code} in {secs} s (want 504 in 2.0–2.6 s)"
        ));
    }
    let (code, secs) = curl_status(&mesh.url("/dead"), &[]).await?;
    if !(code == 503 || code == 502) || secs >= 1.0 {
        failures.push(format!("/dead: {code} in {secs} s (want 503 in < 1 s)"));
    }

    // `/dns` and, while it is in flight, `/`.
    let dns_url = mesh.url("/dns");
    let dns = tokio::spawn(async move { curl_status(&dns_url, &[]).await });
    let (code, secs) = curl_status(&mesh.url("/"), &[]).await?;
    if code != 200 || secs >= 0.1 {
        failures.push(format!(
            "/ during /dns: {code} in {secs} s (want 200 in < 0.1 s)"
        ));
    }
    let (code, secs) = dns.await??;
    let dns_limit = CONNECT_TIMEOUT.as_secs_f64() + 1.0;
    if code != 503 || secs >= dns_limit {
        failures.push(format!(
            "/dns: {code} in {secs} s (want 503 in < {dns_limit} s)"
        ));
    }

    let (code, secs) = curl_status(&mesh.url("/fault/garbage"), &[]).await?;
    if code != 502 || secs >= 1.0 {
        failures.push(format!(
            "/fault/garbage: {code} in {secs} s (want 502 in < 1 s)"
        ));
    }
    let reset_mid = mesh.url("/fault/reset-mid");
    let h1 = curl(&["-s", "--http1.1", "-o", "/dev/null", &reset_mid]).await?;
    if h1.exit_code != 18 {
        failures.push(format!(
            "/fault/reset-mid over HTTP/1.1: curl exit {} (want 18)",
            h1.exit_code
        ));
    }
    let h2 = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        &reset_mid,
    ])
    .await?;
    if h2.exit_code == 0 {
        failures.push("/fault/reset-mid over h2c: curl exit 0 with a short body".to_owned());
    }
    // A normal keep-alive answer, so a pooled connection must idle out too.
    let (code, _) = curl_status(&mesh.url("/fault/ok"), &[]).await?;
    if code != 200 {
        failures.push(format!("/fault/ok: {code}"));
    }

    let last_request = Instant::now();
    let mut now_established = established_to(uf).await?;
    while now_established > baseline
        && last_request.elapsed() < FAULT_IDLE_TIMEOUT + Duration::from_millis(500)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        now_established = established_to(uf).await?;
    }
    if now_established > baseline {
        failures.push(format!(
            "{now_established} connections to the fault upstream still established {:?} after the last request (baseline {baseline}, idle timeout {FAULT_IDLE_TIMEOUT:?})",
            last_request.elapsed()
        ));
    }
    assert!(failures.is_empty(), "upstream faults: {failures:#?}");
    mesh.assert_healthy("after upstream faults").await;
    Ok(())
}
