//! RELIABILITY.md acceptance checks O2–O5 and O9: HTTP/1.1 framing,
//! smuggling, header syntax, broken chunked bodies and Host validation, sent
//! as raw bytes to the real `mesh-proxy`, judged by what came back, how the
//! connection ended, and what the ledger upstream really received.

mod reliability_common;

use std::time::Duration;

use mesh_tests::*;
use reliability_common::*;
use serde_json::json;

/// How long a raw exchange may wait for the proxy's answer and its EOF.
const RAW_WAIT: Duration = Duration::from_secs(2);

/// O2 (a) CL.TE and (b) TE.CL: either 400 and close, or one response with
/// `Connection: close` followed by EOF; the hidden request never reaches the
/// upstream, and no forwarded request carries both framings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o2_cl_te_smuggling_never_reaches_upstream() -> anyhow::Result<()> {
    let mut mesh = Mesh::start().await?;
    let cl_te: &[u8] = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let te_cl: &[u8] = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n\r\n0\r\n\r\n";
    // The check's byte counts: CL 40 covers the whole CL.TE body; 0x23 = 35.
    assert_eq!(cl_te.len() - (find_end_of_head(cl_te)), 40);
    assert_eq!(b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n".len(), 0x23);

    for (name, request) in [("CL.TE", cl_te), ("TE.CL", te_cl)] {
        let reply = raw_exchange(mesh.addr(), request, RAW_WAIT).await?;
        let text = reply.text();
        assert!(
            reply.closed_by_peer,
            "{name}: connection not closed within {RAW_WAIT:?}: {text:?}"
        );
        assert_eq!(
            reply.responses(),
            1,
            "{name}: expected exactly one response: {text:?}"
        );
        match reply.status() {
            Some(400) => {}
            Some(_) => {
                let connection = reply.header("connection").unwrap_or_default();
                assert!(
                    connection
                        .split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("close")),
                    "{name}: a forwarded CL+TE request must get `Connection: close`: {text:?}"
                );
            }
            None => panic!("{name}: no HTTP response: {text:?}"),
        }
    }
    // Anything the proxy forwarded arrived before this request's entry.
    mesh.assert_healthy("after CL.TE / TE.CL").await;
    assert_eq!(
        mesh.ledger.count_target_contains("/smuggled"),
        0,
        "smuggled request reached the upstream:\n{}",
        mesh.ledger_dump()
    );
    let both = mesh
        .ledger
        .count(|e| e.header("content-length").is_some() && e.header("transfer-encoding").is_some());
    assert_eq!(
        both,
        0,
        "an entry has both framings:\n{}",
        mesh.ledger_dump()
    );
    Ok(())
}

fn find_end_of_head(request: &[u8]) -> usize {
    request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(request.len(), |i| i + 4)
}

/// O3: every malformed Content-Length is 400 then EOF within 1 s; the ledger
/// stays empty; the proxy is healthy afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o3_bad_content_length_is_400_and_close() -> anyhow::Result<()> {
    let mut mesh = Mesh::start().await?;
    let variants = [
        "Content-Length: 3\r\nContent-Length: 5\r\n",
        "Content-Length: 3, 5\r\n",
        "Content-Length: +3\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 0x3\r\n",
        "Content-Length: 1e3\r\n",
        "Content-Length: 3 3\r\n",
        "Content-Length: 18446744073709551616\r\n",
    ];
    let mut failures = Vec::new();
    for (i, cl) in variants.iter().enumerate() {
        let request = format!("POST /o3-{i} HTTP/1.1\r\nHost: t\r\n{cl}\r\nabc");
        let reply = raw_exchange(mesh.addr(), request.as_bytes(), Duration::from_secs(1)).await?;
        if reply.status() != Some(400) || !reply.closed_by_peer {
            failures.push(format!(
                "{cl:?}: status {:?}, closed within 1 s: {}, reply {:?}",
                reply.status(),
                reply.closed_by_peer,
                reply.text()
            ));
        }
    }
    assert!(failures.is_empty(), "bad Content-Length: {failures:#?}");
    assert_eq!(
        mesh.ledger.count_target_contains("/o3-"),
        0,
        "ledger changed:\n{}",
        mesh.ledger_dump()
    );
    mesh.assert_healthy("after bad Content-Length").await;
    Ok(())
}

/// O4: header syntax errors are 400 (a non-framing obs-fold may instead be
/// forwarded as `b c`; an obs-fold on Transfer-Encoding must be 400), and
/// nothing else reaches the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o4_header_syntax_errors_are_rejected() -> anyhow::Result<()> {
    let mut mesh = Mesh::start().await?;
    // (name, request); each has its own target so ledger entries are attributable.
    let fold = b"GET /o4-fold HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n\r\n".to_vec();
    let strict: Vec<(&str, Vec<u8>)> = vec![
        (
            "obs-fold on Transfer-Encoding",
            b"POST /o4-te-fold HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "space before colon",
            b"GET /o4-space HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n".to_vec(),
        ),
        (
            "\\x01 in a value",
            b"GET /o4-ctl HTTP/1.1\r\nHost: t\r\nX-A: b\x01c\r\n\r\n".to_vec(),
        ),
        (
            "bare CR in a value",
            b"GET /o4-cr HTTP/1.1\r\nHost: t\r\nX-A: b\rc\r\n\r\n".to_vec(),
        ),
        (
            "( in a field name",
            b"GET /o4-paren HTTP/1.1\r\nHost: t\r\nX(A: b\r\n\r\n".to_vec(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, request) in &strict {
        let reply = one_response(mesh.addr(), request, RAW_WAIT).await?;
        if reply.status != Some(400) {
            failures.push(format!(
                "{name}: expected 400, got {:?}: {:?}",
                reply.status,
                String::from_utf8_lossy(&reply.raw)
            ));
        }
    }
    let reply = one_response(mesh.addr(), &fold, RAW_WAIT).await?;
    match reply.status {
        Some(400) => {}
        Some(200) => {
            let forwarded = mesh.ledger.entries();
            let entry = forwarded.iter().find(|e| e.target == "/o4-fold");
            let value = entry.and_then(|e| e.header("x-a"));
            if value != Some("b c") {
                failures.push(format!(
                    "obs-fold forwarded without being replaced by one SP: x-a = {value:?}"
                ));
            }
        }
        other => failures.push(format!(
            "obs-fold on X-A: expected 400 or 200 with `b c`, got {other:?}: {:?}",
            String::from_utf8_lossy(&reply.raw)
        )),
    }
    mesh.assert_healthy("after header syntax errors").await;
    let leaked = mesh
        .ledger
        .count(|e| e.target.starts_with("/o4-") && e.target != "/o4-fold");
    if leaked > 0 {
        failures.push(format!("{leaked} rejected request(s) reached the ledger"));
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\nledger:\n{}",
        mesh.ledger_dump()
    );
    Ok(())
}

/// O5: malformed chunked bodies end in 400 or a close within the body idle
/// timeout (10 s in the profile); the ledger never gets a complete request
/// (only `aborted` entries are allowed); healthy afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o5_broken_chunked_bodies_never_complete_upstream() -> anyhow::Result<()> {
    let mut mesh = Mesh::start().await?;
    let head = |i: usize| {
        format!("POST /o5-{i} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    };
    let mut long_ext = b"3;".to_vec();
    long_ext.extend(std::iter::repeat_n(b'x', 100_000));
    long_ext.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("chunk size zz", b"zz\r\nabc\r\n0\r\n\r\n".to_vec()),
        (
            "chunk size overflow",
            b"FFFFFFFFFFFFFFFFF1\r\nabc\r\n0\r\n\r\n".to_vec(),
        ),
        ("LF-only chunk lines", b"3\nabc\n0\n\n".to_vec()),
        ("100 KB chunk extension", long_ext),
    ];
    // Run the variants at once: a proxy that waits them out costs one
    // body-idle timeout, not four.
    let body_idle = Duration::from_secs(10);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (name, body)) in bodies.into_iter().enumerate() {
        let mut request = head(i).into_bytes();
        request.extend_from_slice(&body);
        let addr = mesh.addr();
        tasks.spawn(async move {
            let reply = raw_exchange(addr, &request, body_idle + Duration::from_millis(500)).await;
            (name, reply)
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (name, reply) = joined?;
        let reply = reply?;
        // "400 or close": a close may come with any error status, never a success.
        let status_ok = reply.status().is_none_or(|s| s >= 400);
        if !reply.closed_by_peer || reply.elapsed > body_idle || !status_ok {
            failures.push(format!(
                "{name}: status {:?}, closed {} after {:?}: {:?}",
                reply.status(),
                reply.closed_by_peer,
                reply.elapsed,
                reply.text()
            ));
        }
    }
    mesh.assert_healthy("after broken chunked bodies").await;
    let complete = mesh
        .ledger
        .count(|e| e.target.starts_with("/o5-") && !e.aborted);
    assert!(
        failures.is_empty() && complete == 0,
        "{failures:#?}\ncomplete upstream entries: {complete}\nledger:\n{}",
        mesh.ledger_dump()
    );
    Ok(())
}

/// O5, last variant: a chunked body that stops before its last chunk while
/// the connection stays open is ended (an error reply or a close) within the body
/// idle timeout, and the upstream never sees it complete. The profile's 10 s
/// is shortened to 2 s on this listener to keep the test short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o5_stalled_chunked_body_is_closed_at_body_idle_timeout() -> anyhow::Result<()> {
    let body_idle = Duration::from_secs(2);
    let mut mesh = Mesh::start_with(MeshOptions {
        listener_limits: Some(json!({ "body_idle_timeout": "2s" })),
    })
    .await?;
    let request =
        b"POST /o5-stalled HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    let reply = raw_exchange(mesh.addr(), request, body_idle + Duration::from_secs(1)).await?;
    assert!(
        reply.closed_by_peer,
        "stalled body: connection still open {:?} after the last byte (body idle {body_idle:?}); got {:?}",
        reply.elapsed,
        reply.text()
    );
    if let Some(status) = reply.status() {
        assert!(
            status >= 400,
            "stalled body answered {status}: {:?}",
            reply.text()
        );
    }
    mesh.assert_healthy("after a stalled chunked body").await;
    assert_eq!(
        mesh.ledger
            .count(|e| e.target.starts_with("/o5-stalled") && !e.aborted),
        0,
        "the upstream got the stalled request complete:\n{}",
        mesh.ledger_dump()
    );
    Ok(())
}

/// O9: missing, doubled or malformed Host is 400 and nothing reaches the
/// ledger; an absolute-form target wins over Host (forwarded with
/// `host: other.test`) or is rejected with 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o9_host_must_be_single_and_valid_absolute_form_wins() -> anyhow::Result<()> {
    let mut mesh = Mesh::start().await?;
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("no Host".into(), b"GET /o9-none HTTP/1.1\r\n\r\n".to_vec()),
        (
            "two Host lines".into(),
            b"GET /o9-two HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n".to_vec(),
        ),
    ];
    for (i, host) in ["a/b", "a\\b", "a@b", "a b", "..x", "a\x01"]
        .iter()
        .enumerate()
    {
        let mut request = format!("GET /o9-bad-{i} HTTP/1.1\r\nHost: ").into_bytes();
        request.extend_from_slice(host.as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        cases.push((format!("Host {host:?}"), request));
    }
    let mut failures = Vec::new();
    for (name, request) in &cases {
        let reply = one_response(mesh.addr(), request, RAW_WAIT).await?;
        if reply.status != Some(400) {
            failures.push(format!(
                "{name}: expected 400, got {:?}: {:?}",
                reply.status,
                String::from_utf8_lossy(&reply.raw)
            ));
        }
    }
    let absolute = b"GET http://other.test/o9-absolute HTTP/1.1\r\nHost: t\r\n\r\n";
    let reply = one_response(mesh.addr(), absolute, RAW_WAIT).await?;
    match reply.status {
        Some(400) => {}
        Some(200) => {
            let entries = mesh.ledger.entries();
            let host = entries
                .iter()
                .find(|e| e.target.contains("/o9-absolute"))
                .and_then(|e| e.header("host").map(str::to_owned));
            if host.as_deref() != Some("other.test") {
                failures.push(format!(
                    "absolute-form forwarded with host {host:?}, not other.test"
                ));
            }
        }
        other => failures.push(format!(
            "absolute-form: expected 200 routed by other.test or 400, got {other:?}: {:?}",
            String::from_utf8_lossy(&reply.raw)
        )),
    }
    mesh.assert_healthy("after Host checks").await;
    let leaked = mesh
        .ledger
        .count(|e| e.target.contains("/o9-") && !e.target.contains("/o9-absolute"));
    if leaked > 0 {
        failures.push(format!("{leaked} rejected request(s) reached the ledger"));
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\nledger:\n{}",
        mesh.ledger_dump()
    );
    Ok(())
}
