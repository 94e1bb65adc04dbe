//! Tests of the test-support crate itself: the upstreams must really behave as
//! RELIABILITY.md's harness conventions say, or every end-to-end check built
//! on them asserts less than it claims.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use mesh_tests::*;

const WAIT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(10);

fn pattern_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------- ledger

#[tokio::test]
async fn ledger_records_http1_post_from_curl() -> anyhow::Result<()> {
    let ledger = LedgerUpstream::start().await?;
    let dir = tempfile::tempdir()?;
    let body = pattern_body(200_000);
    let file = dir.path().join("body");
    fs::write(&file, &body)?;
    let headers_file = dir.path().join("headers");
    let out = curl(&[
        "-s",
        "--http1.1",
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", file.display()),
        "-H",
        "X-Rep: one",
        "-H",
        "X-Rep: two",
        "-H",
        "X-Last: z",
        "-D",
        &headers_file.display().to_string(),
        &ledger.url("/echo/x?a=1&b=2"),
    ])
    .await?;
    ensure!(out.exit_code == 0, "curl failed: {out:?}");
    let echoed: LedgerEntry = serde_json::from_str(&out.stdout).context("echo is an entry")?;
    let entries = ledger.entries();
    assert_eq!(entries, vec![echoed]);
    let e = &entries[0];
    assert_eq!(e.method, "POST");
    assert_eq!(e.target, "/echo/x?a=1&b=2");
    assert_eq!(e.version, "HTTP/1.1");
    assert_eq!(e.authority, None);
    assert_eq!(e.body_len, 200_000);
    assert_eq!(e.body_sha256, sha256_hex(&body));
    assert!(!e.aborted);
    assert_eq!(e.conn_id, 1);
    assert_eq!(e.header("HOST"), Some(ledger.addr().to_string().as_str()));
    assert_eq!(e.header_all("x-rep"), vec!["one", "two"]);
    let pos = |name: &str| e.headers.iter().position(|(n, _)| n == name);
    assert!(pos("host") < pos("x-rep") && pos("x-rep") < pos("x-last"));
    let response_head = fs::read_to_string(&headers_file)?.to_ascii_lowercase();
    assert!(
        response_head.contains("x-ledger-conn: 1\r\n"),
        "{response_head}"
    );
    assert!(response_head.contains("content-type: application/json"));
    assert_eq!(ledger.connections_accepted(), 1);
    assert_eq!(ledger.count_target_contains("/echo/"), 1);
    assert_eq!(ledger.count(|e| e.method == "GET"), 0);
    Ok(())
}

#[tokio::test]
async fn ledger_records_h2c_prior_knowledge() -> anyhow::Result<()> {
    let ledger = LedgerUpstream::start().await?;
    let dir = tempfile::tempdir()?;
    let body = pattern_body(70_000);
    let file = dir.path().join("body");
    fs::write(&file, &body)?;
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", file.display()),
        &ledger.url("/h2/path?q=2"),
    ])
    .await?;
    ensure!(out.exit_code == 0, "curl failed: {out:?}");
    let entries = ledger.entries();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.version, "HTTP/2.0");
    assert_eq!(e.method, "PUT");
    assert_eq!(e.target, "/h2/path?q=2");
    assert_eq!(e.authority, Some(ledger.addr().to_string()));
    assert_eq!(e.body_len, 70_000);
    assert_eq!(e.body_sha256, sha256_hex(&body));
    assert_eq!(serde_json::from_str::<LedgerEntry>(&out.stdout)?, *e);
    Ok(())
}

#[tokio::test]
async fn ledger_big_streams_exactly_the_requested_bytes() -> anyhow::Result<()> {
    let ledger = LedgerUpstream::start().await?;
    let dir = tempfile::tempdir()?;
    for (i, proto) in ["--http1.1", "--http2-prior-knowledge"].iter().enumerate() {
        let down = dir.path().join(format!("down{i}"));
        let down_arg = down.display().to_string();
        let url = ledger.url("/big?bytes=1048576");
        let out = curl(&["-s", proto, "-o", &down_arg, "-w", "%{http_code}", &url]).await?;
        ensure!(
            out.exit_code == 0 && out.stdout == "200",
            "{proto}: {out:?}"
        );
        let got = fs::read(&down)?;
        assert_eq!(got.len(), 1_048_576, "{proto}");
        assert_eq!(sha256_hex(&got), big_body_sha256(1_048_576), "{proto}");
    }
    assert_eq!(ledger.count_target_contains("/big?bytes=1048576"), 2);
    Ok(())
}

#[tokio::test]
async fn ledger_records_an_aborted_body_as_aborted() -> anyhow::Result<()> {
    let ledger = LedgerUpstream::start().await?;
    let partial = b"POST /abort HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789";
    raw_send_and_close(ledger.addr(), partial).await?;
    ledger.wait_for_entries(1, WAIT).await?;
    let e = &ledger.entries()[0];
    assert!(e.aborted);
    assert_eq!(e.target, "/abort");
    assert_eq!(e.body_len, 10);
    assert_eq!(e.body_sha256, sha256_hex(b"0123456789"));
    assert_eq!(ledger.count(|e| !e.aborted), 0);
    Ok(())
}

#[tokio::test]
async fn ledger_status_slow_and_keep_alive() -> anyhow::Result<()> {
    let ledger = LedgerUpstream::start().await?;
    assert_eq!(curl_status(&ledger.url("/status/503"), &[]).await?.0, 503);
    assert_eq!(curl_status(&ledger.url("/x/status/204"), &[]).await?.0, 204);
    let (code, secs) = curl_status(&ledger.url("/slow?ms=300"), &[]).await?;
    assert_eq!(code, 200);
    assert!(secs >= 0.3, "slow answered after {secs} s");
    // Two URLs in one curl reuse the connection: same conn_id.
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        &ledger.url("/a"),
        &ledger.url("/b"),
    ])
    .await?;
    assert_eq!(out.exit_code, 0);
    let entries = ledger.entries();
    let targets: Vec<&str> = entries.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(
        targets,
        ["/status/503", "/x/status/204", "/slow?ms=300", "/a", "/b"]
    );
    assert_eq!(entries[3].conn_id, entries[4].conn_id);
    assert_eq!(ledger.connections_accepted(), 4);
    Ok(())
}

#[tokio::test]
async fn ledger_wait_fails_after_its_deadline_and_server_stops_on_drop() -> anyhow::Result<()> {
    let ledger = LedgerUpstream::start().await?;
    let started = std::time::Instant::now();
    let err = ledger
        .wait_for_entries(1, Duration::from_millis(100))
        .await
        .expect_err("no request was sent");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(err.to_string().contains("wanted 1"), "{err}");
    let addr = ledger.addr();
    drop(ledger);
    let refused = wait_until_async(WAIT, POLL, || std::net::TcpStream::connect(addr).is_err());
    assert!(refused.await, "ledger still accepting after drop");
    Ok(())
}

// ---------------------------------------------------------------- fault

#[tokio::test]
async fn fault_hang_reads_the_request_and_never_answers() -> anyhow::Result<()> {
    let fault = FaultUpstream::start().await?;
    let reply = raw_exchange(fault.addr(), &get("/fault/hang"), Duration::from_secs(1)).await?;
    assert!(reply.bytes.is_empty(), "{:?}", reply.text());
    assert!(!reply.closed_by_peer);
    assert!(reply.elapsed >= Duration::from_secs(1));
    assert_eq!(fault.requests("hang"), 1);
    Ok(())
}

#[tokio::test]
async fn fault_reset_after_read_counts_then_resets() -> anyhow::Result<()> {
    let fault = FaultUpstream::start().await?;
    let post =
        b"POST /fault/reset-after-read HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nx=1&y";
    let reply = raw_exchange(fault.addr(), post, WAIT).await?;
    assert!(reply.was_reset(), "{reply:?}");
    assert!(reply.bytes.is_empty());
    assert_eq!(fault.requests_by_method("reset-after-read", "POST"), 1);
    assert_eq!(fault.requests_by_method("reset-after-read", "GET"), 0);
    assert_eq!(fault.requests_seen()[0].body_len, 5);
    Ok(())
}

#[tokio::test]
async fn fault_reset_mid_sends_part_of_the_body_then_resets() -> anyhow::Result<()> {
    let fault = FaultUpstream::start().await?;
    let reply = raw_exchange(fault.addr(), &get("/fault/reset-mid"), WAIT).await?;
    assert_eq!(reply.status(), Some(200));
    assert_eq!(reply.header("content-length").as_deref(), Some("100000"));
    assert_eq!(reply.body().len(), 10_000);
    assert!(reply.was_reset(), "{:?}", reply.error);
    Ok(())
}

#[tokio::test]
async fn fault_garbage_is_not_http() -> anyhow::Result<()> {
    let fault = FaultUpstream::start().await?;
    let reply = raw_exchange(fault.addr(), &get("/fault/garbage"), WAIT).await?;
    assert!(reply.bytes.starts_with(b"\x00\x01garbage"), "{reply:?}");
    assert_eq!(reply.status(), None);
    assert!(reply.closed_by_peer && !reply.was_reset());
    assert_eq!(fault.requests("garbage"), 1);
    Ok(())
}

#[tokio::test]
async fn fault_split_sends_both_framings_and_a_second_response() -> anyhow::Result<()> {
    let fault = FaultUpstream::start().await?;
    let reply = raw_exchange(
        fault.addr(),
        &get("/fault/split"),
        Duration::from_millis(300),
    )
    .await?;
    assert_eq!(reply.responses(), 2, "{}", reply.text());
    assert_eq!(
        reply.header("Transfer-Encoding").as_deref(),
        Some("chunked")
    );
    assert_eq!(reply.header("content-length").as_deref(), Some("5"));
    assert!(reply.text().ends_with("\r\n\r\nsmuggled!"));
    assert!(!reply.closed_by_peer, "split keeps the connection open");
    Ok(())
}

#[tokio::test]
async fn fault_503_keeps_the_connection_alive() -> anyhow::Result<()> {
    let fault = FaultUpstream::start().await?;
    let two = [get("/fault/503"), get("/fault/503")].concat();
    let reply = raw_exchange(fault.addr(), &two, Duration::from_millis(300)).await?;
    assert_eq!(reply.status(), Some(503));
    assert_eq!(reply.responses(), 2, "{}", reply.text());
    assert!(!reply.closed_by_peer);
    assert_eq!(fault.connections_accepted(), 1);
    assert_eq!(fault.requests("503"), 2);
    Ok(())
}

#[tokio::test]
async fn fault_toggle_flips_from_503_to_200() -> anyhow::Result<()> {
    let fault = FaultUpstream::start().await?;
    let req = b"GET /fault/toggle HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_eq!(
        raw_exchange(fault.addr(), req, WAIT).await?.status(),
        Some(503)
    );
    fault.set_toggle(true);
    let reply = raw_exchange(fault.addr(), req, WAIT).await?;
    assert_eq!(reply.status(), Some(200));
    assert_eq!(reply.header("connection").as_deref(), Some("close"));
    assert!(reply.closed_by_peer);
    assert_eq!(fault.requests("toggle"), 2);
    Ok(())
}

#[tokio::test]
async fn fault_close_slow_and_drip() -> anyhow::Result<()> {
    let fault = FaultUpstream::start().await?;
    let reply = raw_exchange(fault.addr(), &get("/close"), WAIT).await?;
    assert_eq!(reply.status(), Some(200));
    assert_eq!(reply.header("connection").as_deref(), Some("close"));
    assert!(reply.closed_by_peer && reply.elapsed < Duration::from_secs(1));

    let slow = b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let drip_req = get("/drip");
    let (reply, drip) = tokio::join!(
        raw_exchange(fault.addr(), slow, Duration::from_secs(3)),
        raw_exchange(fault.addr(), &drip_req, Duration::from_millis(2500)),
    );
    let (reply, drip) = (reply?, drip?);
    assert_eq!(reply.status(), Some(200));
    assert!(reply.elapsed >= Duration::from_secs(1) && reply.closed_by_peer);
    // Status line at once, then exactly one header byte by 2.5 s.
    assert_eq!(drip.text(), "HTTP/1.1 200 OK\r\nx");
    assert!(!drip.closed_by_peer);
    Ok(())
}

#[tokio::test]
async fn fault_counts_pipelined_requests_by_segment_and_method() -> anyhow::Result<()> {
    let fault = FaultUpstream::start().await?;
    let pipeline = [
        get("/a/ok"),
        b"POST /b/ok?q=1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: 1\r\n\r\n"
            .to_vec(),
        b"HEAD /x/503 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
    ]
    .concat();
    let reply = raw_exchange(fault.addr(), &pipeline, WAIT).await?;
    assert_eq!(reply.responses(), 3, "{}", reply.text());
    assert!(reply.closed_by_peer);
    assert!(
        reply.text().ends_with("connection: close\r\n\r\n"),
        "HEAD has no body"
    );
    assert_eq!(fault.requests_total(), 3);
    assert_eq!(fault.requests("ok"), 2);
    assert_eq!(fault.requests_by_method("ok", "POST"), 1);
    assert_eq!(fault.requests("503"), 1);
    let seen = fault.requests_seen();
    assert_eq!(seen[1].body_len, 5);
    assert_eq!(seen[1].target, "/b/ok?q=1");
    assert!(seen.iter().all(|r| r.conn_id == 1));
    Ok(())
}

#[tokio::test]
async fn fault_rejects_conflicting_content_length_and_stops_on_drop() -> anyhow::Result<()> {
    let fault = FaultUpstream::start().await?;
    let bad = b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 5\r\n\r\nabc";
    let reply = raw_exchange(fault.addr(), bad, WAIT).await?;
    assert_eq!(reply.status(), Some(400));
    assert!(reply.closed_by_peer);
    assert_eq!(fault.requests_total(), 0);
    fault
        .wait_for_requests(1, Duration::from_millis(50))
        .await
        .expect_err("nothing counted");
    let addr = fault.addr();
    drop(fault);
    let refused = wait_until_async(WAIT, POLL, || std::net::TcpStream::connect(addr).is_err());
    assert!(refused.await, "fault upstream still accepting after drop");
    Ok(())
}

#[test]
fn last_segment_ignores_query_and_prefixes() {
    assert_eq!(last_segment("/fault/hang?x=1"), "hang");
    assert_eq!(last_segment("/fault/reset-mid/"), "reset-mid");
    assert_eq!(last_segment("http://h:1/fault/split"), "split");
    assert_eq!(last_segment("/"), "");
}

// ---------------------------------------------------------------- clients

#[test]
fn raw_reply_parsing() {
    let reply = RawReply {
        bytes: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n".to_vec(),
        closed_by_peer: true,
        error: None,
        elapsed: Duration::ZERO,
    };
    assert_eq!(reply.status(), Some(100));
    assert_eq!(reply.responses(), 2);
    assert_eq!(reply.header("x-a"), None, "only the first response's head");
    assert!(reply.body().starts_with(b"HTTP/1.1 204"));
    let garbage = RawReply {
        bytes: b"HTTP/1.1 2x0 OK\r\n\r\n".to_vec(),
        ..reply
    };
    assert_eq!(garbage.status(), None);
}

#[test]
fn wait_until_honours_its_deadline() {
    let mut calls = 0;
    assert!(wait_until(WAIT, POLL, || {
        calls += 1;
        calls == 3
    }));
    let started = std::time::Instant::now();
    assert!(!wait_until(Duration::from_millis(50), POLL, || false));
    assert!(started.elapsed() >= Duration::from_millis(50));
}

// ---------------------------------------------------------------- processes

/// Writes an executable shell script standing in for mesh-proxy.
fn script(dir: &Path, name: &str, body: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

#[tokio::test]
async fn process_writes_config_captures_output_and_signals() -> anyhow::Result<()> {
    let bins = tempfile::tempdir()?;
    let fake = script(
        bins.path(),
        "fake-proxy",
        "echo \"args: $*\"; echo started >&2; exec sleep 30",
    )?;
    let yaml = ConfigBuilder::new().build();
    let mut proc = ProxyProcess::builder(&yaml)
        .bin(&fake)
        .args(&["--mode", "serve"])
        .file("certs/a.pem", "pem")
        .start()
        .await?;
    assert_eq!(fs::read_to_string(proc.config_path())?, yaml);
    assert_eq!(proc.config_path(), proc.dir().join("proxy.yaml"));
    assert!(proc.dir().join("certs/a.pem").is_file());
    let output_seen = wait_until_async(WAIT, POLL, || proc.stderr_text() == "started\n");
    assert!(output_seen.await, "stderr: {:?}", proc.stderr_text());
    let expected = format!("args: -c {} --mode serve\n", proc.config_path().display());
    assert_eq!(proc.stdout_text(), expected);
    assert!(proc.rss_kib()? > 0);
    assert!(proc.is_running());
    proc.terminate()?;
    let status = proc.wait_exit(WAIT).await.context("exits on TERM")?;
    assert_eq!(status.code(), None, "killed by the signal");
    Ok(())
}

#[tokio::test]
async fn process_start_fails_with_stderr_when_the_child_exits() -> anyhow::Result<()> {
    let bins = tempfile::tempdir()?;
    let fake = script(
        bins.path(),
        "bad",
        "echo 'listeners[0].address: bad' >&2; exit 3",
    )?;
    let err = ProxyProcess::builder("{}")
        .bin(&fake)
        .wait_ports(&[free_port()])
        .start()
        .await
        .err()
        .context("start must fail")?;
    let msg = format!("{err:#}");
    assert!(msg.contains("listeners[0].address: bad"), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn process_start_waits_for_ports_with_a_deadline() -> anyhow::Result<()> {
    let bins = tempfile::tempdir()?;
    let fake = script(bins.path(), "sleeper", "exec sleep 30")?;
    let port = free_port();
    let binder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(listener);
        anyhow::Ok(())
    });
    let started = std::time::Instant::now();
    let proc = ProxyProcess::builder("{}")
        .bin(&fake)
        .wait_ports(&[port])
        .start()
        .await?;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let pid = proc.pid();
    drop(proc);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "killed and reaped on drop"
    );
    binder.abort();

    let started = std::time::Instant::now();
    let err = ProxyProcess::builder("{}")
        .bin(&fake)
        .wait_ports(&[free_port()])
        .startup_timeout(Duration::from_millis(300))
        .start()
        .await
        .err()
        .context("nothing listens")?;
    assert!(err.to_string().contains("did not listen"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    Ok(())
}

#[tokio::test]
async fn process_run_to_exit_reports_code_and_timeout() -> anyhow::Result<()> {
    let bins = tempfile::tempdir()?;
    let validate = script(bins.path(), "validate", "echo \"$*\"; exit 1")?;
    let out = ProxyProcess::builder("{}")
        .bin(&validate)
        .args(&["--mode", "validate"])
        .run_to_exit(WAIT)
        .await?;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stdout.ends_with("--mode validate\n"),
        "{:?}",
        out.stdout
    );
    assert!(!out.timed_out);

    let sleeper = script(bins.path(), "sleeper", "exec sleep 30")?;
    let out = ProxyProcess::builder("{}")
        .bin(&sleeper)
        .run_to_exit(Duration::from_millis(200))
        .await?;
    assert!(out.timed_out && out.code.is_none());
    assert!(out.elapsed < Duration::from_secs(2));
    Ok(())
}

#[test]
fn bin_path_explains_how_to_build_a_missing_binary() {
    let err = bin_path("no-such-mesh-binary").expect_err("missing");
    assert!(err.to_string().contains("cargo build --bins"), "{err}");
    let port = free_port();
    assert_ne!(port, 0);
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}
