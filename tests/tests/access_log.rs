//! End-to-end: access logs of the real `mesh-proxy` (SPEC §3 "Configuration"
//! `access_log:`, "Local replies"; issue 5 item 3): `json`, `text` (Envoy's
//! default line) and an Envoy-style format string, to a file, stdout and
//! stderr; every field checked against what the client and the ledger saw for
//! a known request (a 200 through the ledger, a local 503 UF to a dead port);
//! reopening on SIGUSR1 the way logrotate uses it; and a bad operator
//! refused at start-up.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mesh_tests::{
    ConfigBuilder, LedgerUpstream, ProxyProcess, curl, free_port, route_prefix, wait_until_async,
};
use serde_json::{Value, json};

const POLL: Duration = Duration::from_millis(20);
const LOG_WAIT: Duration = Duration::from_secs(5);
/// The custom format the issue names, one field per operator.
const CUSTOM: &str = "%START_TIME% %REQ(:METHOD)% %REQ(X-REQUEST-ID)% %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION% %UPSTREAM_HOST% %DOWNSTREAM_REMOTE_ADDRESS% %BYTES_SENT%";

/// A proxy with `/dead...` routed to a port nobody listens on and everything
/// else to the ledger.
struct Setup {
    proxy: ProxyProcess,
    ledger: LedgerUpstream,
    port: u16,
    dead: mesh_tests::RefusingPort,
}

impl Setup {
    async fn start(access_log: Value, extra: &[(&str, Value)]) -> Self {
        let ledger = LedgerUpstream::start().await.expect("ledger");
        let (port, dead) = (free_port(), mesh_tests::refusing_port());
        let mut cfg = ConfigBuilder::new()
            .http_listener(
                "main",
                port,
                vec![route_prefix("/dead", "dead"), route_prefix("/", "up")],
            )
            .cluster("up", &[ledger.addr()])
            .cluster_with(
                "dead",
                &[format!("127.0.0.1:{}", dead.port)],
                json!({"connect_timeout": "1s"}),
            )
            .set("access_log", access_log);
        for (key, value) in extra {
            cfg = cfg.set(key, value.clone());
        }
        let proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
            .await
            .expect("proxy starts");
        Self {
            proxy,
            ledger,
            port,
            dead,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.proxy.dir().join(name)
    }
}

/// One request as curl saw it.
#[derive(Debug)]
struct Sent {
    status: u16,
    /// Response body bytes.
    size: u64,
    /// The client's port: the proxy's downstream remote address.
    local_port: u16,
    /// curl's whole transfer time.
    total: Duration,
    /// The response head.
    head: String,
    /// Wall-clock time just before curl started and just after it ended.
    before: SystemTime,
    after: SystemTime,
}

impl Sent {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `curl -s -o /dev/null -D - ARGS URL` with status, size, local port, time.
async fn send(url: &str, args: &[&str]) -> Sent {
    let mut all = vec![
        "-s",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-w",
        "\n%{http_code} %{size_download} %{local_port} %{time_total}",
    ];
    all.extend_from_slice(args);
    all.push(url);
    let before = SystemTime::now();
    let out = curl(&all).await.expect("curl runs");
    let after = SystemTime::now();
    let (head, metrics) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
    let f: Vec<&str> = metrics.split_whitespace().collect();
    let parse = |i: usize| -> f64 {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("curl -w output {metrics:?}: {out:?}"))
    };
    Sent {
        status: parse(0) as u16,
        size: parse(1) as u64,
        local_port: parse(2) as u16,
        total: Duration::from_secs_f64(parse(3)),
        head: head.to_owned(),
        before,
        after,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until a line containing `needle` appears in `text()`; returns it.
async fn wait_line(what: &str, needle: &str, mut text: impl FnMut() -> String) -> String {
    let mut found = None;
    wait_until_async(LOG_WAIT, POLL, || {
        found = text()
            .lines()
            .find(|l| l.contains(needle))
            .map(str::to_owned);
        found.is_some()
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "no line with {needle:?} in {what} within {LOG_WAIT:?}:\n{}",
            text()
        )
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (RFC 3339 in UTC) → a time.
fn parse_utc(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let frac = &text[19..text.len() - 1];
    let nanos = match frac.strip_prefix('.') {
        None if frac.is_empty() => 0,
        Some(digits) if (1..=9).contains(&digits.len()) => {
            let padded = format!("{digits:0<9}");
            padded.parse::<u32>().ok()?
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// The logged start time lies within the request as the client timed it.
fn assert_start_time(logged: &str, sent: &Sent) {
    let t = parse_utc(logged).unwrap_or_else(|| panic!("START_TIME {logged:?} is not RFC 3339"));
    let slack = Duration::from_millis(5);
    assert!(
        t + slack >= sent.before && t <= sent.after + slack,
        "START_TIME {logged} outside the request ({:?} .. {:?})",
        sent.before,
        sent.after
    );
}

/// The logged duration (ms) is at least `min_ms` and at most curl's total.
fn assert_duration(logged_ms: u64, min_ms: u64, sent: &Sent) {
    let max = sent.total.as_millis() as u64 + 1;
    assert!(
        (min_ms..=max).contains(&logged_ms),
        "DURATION {logged_ms} ms, expected {min_ms}..={max} ms (curl's total)"
    );
}

fn tracing_to_nowhere() -> Value {
    // Nothing listens there: spans are dropped, requests must not care.
    json!({"otlp_endpoint": format!("http://127.0.0.1:{}", free_port()), "protocol": "http"})
}

fn is_trace_id(v: &str) -> bool {
    v.len() == 32
        && v.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && v.bytes().any(|b| b != b'0')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_to_a_file_carry_every_field() {
    let s = Setup::start(
        json!([{"path": "access.json", "format": "json"}]),
        &[("tracing", tracing_to_nowhere())],
    )
    .await;
    let ok = send(
        &s.url("/slow?ms=300&x=1"),
        &["-H", "x-request-id: req-ok-1"],
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let uf = send(
        &s.url("/dead/x"),
        &[
            "-H",
            "x-request-id: req-uf-1",
            "-H",
            &format!("traceparent: 00-{incoming_trace}-00f067aa0ba902b7-01"),
        ],
    )
    .await;
    assert_eq!(uf.status, 503, "{uf:?}");
    assert_eq!(uf.header("x-mesh-error"), Some("UF"));
    let generated = send(&s.url("/no-id"), &[]).await;
    let generated_id = generated
        .header("x-request-id")
        .expect("a generated x-request-id")
        .to_owned();

    let path = s.file("access.json");
    wait_line("access.json", &generated_id, || read(&path)).await;
    let text = read(&path);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let by_id = |id: &str| {
        lines
            .iter()
            .find(|v| v["request_id"] == id)
            .unwrap_or_else(|| panic!("no line with request_id {id}:\n{text}"))
            .clone()
    };

    let v = by_id("req-ok-1");
    assert_eq!(v["response_code"], 200, "{v}");
    assert_eq!(v["response_flags"], "-", "{v}");
    assert_eq!(v["method"], "GET", "{v}");
    assert_eq!(v["path"], "/slow?ms=300&x=1", "{v}");
    assert_eq!(v["upstream_host"], s.ledger.addr().to_string(), "{v}");
    assert_eq!(
        v["downstream_remote_address"],
        format!("127.0.0.1:{}", ok.local_port),
        "{v}"
    );
    assert_eq!(v["bytes_sent"], ok.size, "{v}");
    assert_duration(v["duration_ms"].as_u64().expect("duration_ms"), 300, &ok);
    assert_start_time(v["start_time"].as_str().expect("start_time"), &ok);
    let trace = v["trace_id"].as_str().expect("trace_id when tracing is on");
    assert!(is_trace_id(trace), "trace_id {trace:?}");
    // The same trace the proxy propagated upstream.
    let entry = s
        .ledger
        .entries()
        .into_iter()
        .find(|e| e.header("x-request-id") == Some("req-ok-1"))
        .expect("the 200 reached the ledger");
    let traceparent = entry.header("traceparent").expect("traceparent upstream");
    assert_eq!(
        traceparent.split('-').nth(1),
        Some(trace),
        "traceparent {traceparent}"
    );

    let v = by_id("req-uf-1");
    assert_eq!(v["response_code"], 503, "{v}");
    assert_eq!(v["response_flags"], "UF", "{v}");
    assert_eq!(v["method"], "GET", "{v}");
    assert_eq!(v["path"], "/dead/x", "{v}");
    assert_eq!(
        v["upstream_host"],
        format!("127.0.0.1:{}", s.dead.port),
        "{v}"
    );
    assert_eq!(
        v["downstream_remote_address"],
        format!("127.0.0.1:{}", uf.local_port),
        "{v}"
    );
    assert_eq!(v["bytes_sent"], uf.size, "{v}");
    assert_duration(v["duration_ms"].as_u64().expect("duration_ms"), 0, &uf);
    assert_start_time(v["start_time"].as_str().expect("start_time"), &uf);
    // An incoming sampled trace is continued: its trace id is logged.
    assert_eq!(v["trace_id"], incoming_trace, "{v}");

    // A request without x-request-id is logged with the id the proxy made.
    let v = by_id(&generated_id);
    assert_eq!(v["path"], "/no-id", "{v}");
    assert!(
        v["trace_id"].as_str().is_some_and(is_trace_id) && v["trace_id"] != trace,
        "a new trace per request: {v}"
    );
}

/// Splits Envoy's default line into `[...]`, `"..."` and bare fields.
fn envoy_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let (field, tail) = match rest.as_bytes()[0] {
            b'[' => rest[1..].split_once(']').unwrap_or((&rest[1..], "")),
            b'"' => rest[1..].split_once('"').unwrap_or((&rest[1..], "")),
            _ => rest.split_once(' ').unwrap_or((rest, "")),
        };
        out.push(field.to_owned());
        rest = tail.trim_start();
    }
    out
}

/// The fields of Envoy's default format, by name, from one line.
fn envoy_line(line: &str) -> Vec<(&'static str, String)> {
    const NAMES: [&str; 14] = [
        "START_TIME",
        "REQUEST",
        "RESPONSE_CODE",
        "RESPONSE_FLAGS",
        "BYTES_RECEIVED",
        "BYTES_SENT",
        "DURATION",
        "UPSTREAM_SERVICE_TIME",
        "X-FORWARDED-FOR",
        "USER-AGENT",
        "X-REQUEST-ID",
        ":AUTHORITY",
        "UPSTREAM_HOST",
        "TRACE_ID",
    ];
    let fields = envoy_fields(line);
    assert!(
        fields.len() == 13 || fields.len() == 14,
        "{} fields in {line:?}: {fields:?}",
        fields.len()
    );
    NAMES.into_iter().zip(fields).collect()
}

fn field<'a>(fields: &'a [(&'static str, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_envoys_default_line() {
    let s = Setup::start(json!([{"path": "access.log", "format": "text"}]), &[]).await;
    let ok = send(
        &s.url("/slow?ms=200"),
        &["-H", "x-request-id: req-text-ok", "-A", "mesh-test/1"],
    )
    .await;
    assert_eq!(ok.status, 200);
    let uf = send(
        &s.url("/dead/y"),
        &["-H", "x-request-id: req-text-uf", "-A", "mesh-test/1"],
    )
    .await;
    assert_eq!(uf.status, 503);
    let path = s.file("access.log");
    let authority = format!("127.0.0.1:{}", s.port);

    let line = wait_line("access.log", "req-text-ok", || read(&path)).await;
    let f = envoy_line(&line);
    assert_start_time(field(&f, "START_TIME"), &ok);
    assert_eq!(field(&f, "REQUEST"), "GET /slow?ms=200 HTTP/1.1", "{line}");
    assert_eq!(field(&f, "RESPONSE_CODE"), "200", "{line}");
    assert_eq!(field(&f, "RESPONSE_FLAGS"), "-", "{line}");
    assert_eq!(field(&f, "BYTES_RECEIVED"), "0", "{line}");
    assert_eq!(field(&f, "BYTES_SENT"), ok.size.to_string(), "{line}");
    let duration: u64 = field(&f, "DURATION").parse().expect("DURATION");
    assert_duration(duration, 200, &ok);
    assert_eq!(
        Some(field(&f, "UPSTREAM_SERVICE_TIME")),
        ok.header("x-mesh-upstream-service-time"),
        "{line}"
    );
    assert_eq!(field(&f, "USER-AGENT"), "mesh-test/1", "{line}");
    assert_eq!(field(&f, "X-REQUEST-ID"), "req-text-ok", "{line}");
    assert_eq!(field(&f, ":AUTHORITY"), authority, "{line}");
    assert_eq!(
        field(&f, "UPSTREAM_HOST"),
        s.ledger.addr().to_string(),
        "{line}"
    );
    // No tracing configured: no trace id.
    assert_eq!(field(&f, "TRACE_ID"), "-", "{line}");

    let line = wait_line("access.log", "req-text-uf", || read(&path)).await;
    let f = envoy_line(&line);
    assert_start_time(field(&f, "START_TIME"), &uf);
    assert_eq!(field(&f, "REQUEST"), "GET /dead/y HTTP/1.1", "{line}");
    assert_eq!(field(&f, "RESPONSE_CODE"), "503", "{line}");
    assert_eq!(field(&f, "RESPONSE_FLAGS"), "UF", "{line}");
    assert_eq!(field(&f, "BYTES_SENT"), uf.size.to_string(), "{line}");
    assert_eq!(field(&f, "UPSTREAM_SERVICE_TIME"), "-", "{line}");
    assert_eq!(field(&f, "X-REQUEST-ID"), "req-text-uf", "{line}");
    assert_eq!(
        field(&f, "UPSTREAM_HOST"),
        format!("127.0.0.1:{}", s.dead.port),
        "{line}"
    );
    assert_eq!(read(&path).lines().count(), 2, "{}", read(&path));
}

/// `%BYTES_RECEIVED%` (text) and `bytes_received` (json) are the request
/// body bytes, as in Envoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_received_counts_the_request_body() {
    let s = Setup::start(
        json!([{"path": "access.log", "format": "text"}, {"path": "access.json", "format": "json"}]),
        &[],
    )
    .await;
    let body = "b".repeat(1000);
    let sent = send(
        &s.url("/upload"),
        &[
            "-X",
            "POST",
            "--data-binary",
            &body,
            "-H",
            "x-request-id: req-post",
        ],
    )
    .await;
    assert_eq!(sent.status, 200);
    assert_eq!(
        s.ledger.entries()[0].body_len,
        1000,
        "the body went upstream"
    );
    let (text, json_path) = (s.file("access.log"), s.file("access.json"));
    let line = wait_line("access.log", "req-post", || read(&text)).await;
    let json_line = wait_line("access.json", "req-post", || read(&json_path)).await;
    let v: Value = serde_json::from_str(&json_line).expect("json line");
    let f = envoy_line(&line);
    assert_eq!(field(&f, "REQUEST"), "POST /upload HTTP/1.1", "{line}");
    assert_eq!(
        (field(&f, "BYTES_RECEIVED"), &v["bytes_received"]),
        ("1000", &json!(1000)),
        "a 1000-byte request body: text {line}\njson {json_line}"
    );
}

/// Over HTTP/2 the authority comes from `:authority` (there is no Host
/// header): `%REQ(:AUTHORITY)%` and json `authority` still show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_log_protocol_and_authority() {
    let s = Setup::start(
        json!([{"path": "access.log", "format": "text"}, {"path": "access.json", "format": "json"}]),
        &[],
    )
    .await;
    let sent = send(
        &s.url("/h2"),
        &["--http2-prior-knowledge", "-H", "x-request-id: req-h2"],
    )
    .await;
    assert_eq!(sent.status, 200);
    let (text, json_path) = (s.file("access.log"), s.file("access.json"));
    let line = wait_line("access.log", "req-h2", || read(&text)).await;
    let json_line = wait_line("access.json", "req-h2", || read(&json_path)).await;
    let v: Value = serde_json::from_str(&json_line).expect("json line");
    let f = envoy_line(&line);
    assert_eq!(field(&f, "REQUEST"), "GET /h2 HTTP/2", "{line}");
    assert_eq!(v["protocol"], "HTTP/2", "{json_line}");
    let authority = format!("127.0.0.1:{}", s.port);
    assert_eq!(
        (field(&f, ":AUTHORITY"), &v["authority"]),
        (authority.as_str(), &json!(authority)),
        "HTTP/2 :authority: text {line}\njson {json_line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_format_string_renders_each_operator() {
    let s = Setup::start(json!([{"path": "custom.log", "format": CUSTOM}]), &[]).await;
    let ok = send(&s.url("/slow?ms=250"), &["-H", "x-request-id: req-c-ok"]).await;
    assert_eq!(ok.status, 200);
    let uf = send(&s.url("/dead/z"), &["-H", "x-request-id: req-c-uf"]).await;
    assert_eq!(uf.status, 503);
    let path = s.file("custom.log");
    for (id, sent, code, flags, upstream, min_ms) in [
        (
            "req-c-ok",
            &ok,
            "200",
            "-",
            s.ledger.addr().to_string(),
            250,
        ),
        (
            "req-c-uf",
            &uf,
            "503",
            "UF",
            format!("127.0.0.1:{}", s.dead.port),
            0,
        ),
    ] {
        let line = wait_line("custom.log", id, || read(&path)).await;
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 9, "nine fields: {line:?}");
        assert_start_time(f[0], sent);
        assert_eq!(f[1], "GET", "%REQ(:METHOD)%: {line}");
        assert_eq!(f[2], id, "%REQ(X-REQUEST-ID)%: {line}");
        assert_eq!(f[3], code, "%RESPONSE_CODE%: {line}");
        assert_eq!(f[4], flags, "%RESPONSE_FLAGS%: {line}");
        assert_duration(f[5].parse().expect("%DURATION% is ms"), min_ms, sent);
        assert_eq!(f[6], upstream, "%UPSTREAM_HOST%: {line}");
        assert_eq!(
            f[7],
            format!("127.0.0.1:{}", sent.local_port),
            "%DOWNSTREAM_REMOTE_ADDRESS%: {line}"
        );
        assert_eq!(f[8], sent.size.to_string(), "%BYTES_SENT%: {line}");
    }
}

/// `path: stdout` and `path: stderr`, at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_stdout_and_stderr() {
    let s = Setup::start(
        json!([
            {"path": "stdout", "format": "json"},
            {"path": "stderr", "format": "%REQ(X-REQUEST-ID)% -> %RESPONSE_CODE%"},
        ]),
        &[],
    )
    .await;
    let sent = send(&s.url("/to-stdout"), &["-H", "x-request-id: req-stdout"]).await;
    assert_eq!(sent.status, 200);
    let line = wait_line("stdout", "req-stdout", || s.proxy.stdout_text()).await;
    let v: Value = serde_json::from_str(&line).expect("stdout line is JSON");
    assert_eq!(
        (&v["request_id"], &v["response_code"], &v["path"]),
        (&json!("req-stdout"), &json!(200), &json!("/to-stdout")),
        "{line}"
    );
    // No tracing configured: no trace id.
    assert_eq!(v["trace_id"], Value::Null, "{line}");
    let err = wait_line("stderr", "req-stdout ->", || s.proxy.stderr_text()).await;
    assert_eq!(err.trim(), "req-stdout -> 200");
}

/// logrotate's way: rename the file, SIGUSR1, and the next lines go to a new
/// file at the original path while the renamed one keeps what it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_file_after_a_rename() {
    let s = Setup::start(json!([{"path": "access.log", "format": CUSTOM}]), &[]).await;
    let (path, rotated) = (s.file("access.log"), s.file("access.log.1"));
    for i in 1..=2 {
        let sent = send(
            &s.url("/before"),
            &["-H", &format!("x-request-id: old-{i}")],
        )
        .await;
        assert_eq!(sent.status, 200);
    }
    wait_line("access.log", "old-2", || read(&path)).await;
    let old = read(&path);
    assert_eq!(old.lines().count(), 2, "{old}");
    std::fs::rename(&path, &rotated).expect("rename the log");
    s.proxy.signal("USR1").expect("SIGUSR1");

    // The signal is handled asynchronously: a request logged before the
    // proxy saw it may still land in the renamed file, so send until one
    // lands in a new file at the original path.
    let mut n = 0;
    let mut stray = Vec::new();
    let deadline = std::time::Instant::now() + LOG_WAIT;
    let reopened = loop {
        n += 1;
        let id = format!("new-{n}");
        let sent = send(&s.url("/after"), &["-H", &format!("x-request-id: {id}")]).await;
        assert_eq!(sent.status, 200);
        // Each line lands in one of the two files.
        let landed = wait_until_async(LOG_WAIT, POLL, || {
            read(&path).contains(&id) || read(&rotated).contains(&id)
        })
        .await;
        assert!(landed, "{id} was logged in neither file");
        if read(&path).contains(&id) {
            break true;
        }
        stray.push(id);
        if std::time::Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(POLL).await;
    };
    assert!(
        reopened,
        "no new file at {} within {LOG_WAIT:?} of SIGUSR1; the renamed file has:\n{}",
        path.display(),
        read(&rotated)
    );
    // From then on, the new file only.
    let sent = send(&s.url("/after"), &["-H", "x-request-id: new-last"]).await;
    assert_eq!(sent.status, 200);
    wait_line("access.log", "new-last", || read(&path)).await;

    let renamed = read(&rotated);
    let kept: Vec<&str> = renamed.lines().take(2).collect();
    assert_eq!(kept, old.lines().collect::<Vec<_>>(), "the old lines stay");
    let late: Vec<&str> = renamed.lines().skip(2).collect();
    assert_eq!(
        late.len(),
        stray.len(),
        "only requests logged before the signal was handled go to the renamed file: {late:?}"
    );
    let new = read(&path);
    assert!(
        !new.contains("old-") && new.contains(&format!("new-{n} ")) && new.contains("new-last"),
        "the new file:\n{new}"
    );
    eprintln!(
        "logrotate: {} request(s) after SIGUSR1 still went to the renamed file",
        stray.len()
    );
}

fn bad_format_config() -> String {
    ConfigBuilder::new()
        .http_listener(
            "main",
            free_port(),
            vec![mesh_tests::route_prefix_direct("/", 200, "ok")],
        )
        .set(
            "access_log",
            json!([{"path": "stdout", "format": "%START_TIME% %NOPE%"}]),
        )
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_operator_fails_start_up_naming_it() {
    let out = ProxyProcess::builder(&bad_format_config())
        .run_to_exit(Duration::from_secs(10))
        .await
        .expect("run");
    assert!(
        !out.timed_out,
        "the proxy served with a bad access log format"
    );
    assert_ne!(out.code, Some(0), "exit code: {out:?}");
    assert!(
        out.stderr.contains("access_log[0].format") && out.stderr.contains("%NOPE%"),
        "stderr names the key and the operator: {}",
        out.stderr
    );
}

/// `--mode validate` finds the same problem without starting (SPEC: it
/// prints every problem and exits 1; RELIABILITY C1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_mode_rejects_an_unknown_operator() {
    let (code, stdout, stderr) = mesh_tests::run_validate(&bad_format_config())
        .await
        .expect("validate runs");
    assert_eq!(
        code, 1,
        "validate exit code; stdout {stdout:?}, stderr {stderr:?}"
    );
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("access_log[0].format") && all.contains("%NOPE%"),
        "validate names the key and the operator: {all}"
    );
}

#[test]
fn parses_rfc3339_and_envoy_lines() {
    assert_eq!(
        parse_utc("2023-11-14T22:13:20Z"),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    );
    assert_eq!(
        parse_utc("2026-11-25T12:30:58.295073704Z"),
        Some(SystemTime::UNIX_EPOCH + Duration::new(1_795_609_858, 295_073_704))
    );
    assert_eq!(
        parse_utc("1970-01-01T00:00:00.5Z"),
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(500))
    );
    assert_eq!(parse_utc("2026-11-25 12:30:58Z"), None);
    assert_eq!(parse_utc("2026-13-25T12:30:58Z"), None);
    let f = envoy_fields(
        "[2026-11-25T12:30:58Z] \"GET /p?x=1 HTTP/1.1\" 200 - 0 213 62 61 \"-\" \"curl/7.88.1\" \"req-200\" \"127.0.0.1:18081\" \"127.0.0.1:18099\" -",
    );
    assert_eq!(f.len(), 14, "{f:?}");
    assert_eq!(f[0], "2026-11-25T12:30:58Z");
    assert_eq!(f[1], "GET /p?x=1 HTTP/1.1");
    assert_eq!(f[9], "curl/7.88.1");
    assert_eq!(f[13], "-");
}

/// An upstream's own `x-mesh-error` is not this proxy's flag: an app (or a
/// compromised one) cannot make its answers pass for this proxy's local
/// replies (a denial, a dead upstream) in the access log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_x_mesh_error_is_not_logged_as_this_proxys_flag() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = upstream.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let (mut buf, mut head) = ([0u8; 4096], Vec::new());
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let forged =
                    b"HTTP/1.1 403 Forbidden\r\nx-mesh-error: UAEX\r\ncontent-length: 0\r\n\r\n";
                let _ = s.write_all(forged).await;
            });
        }
    });
    let port = free_port();
    let cfg = ConfigBuilder::new()
        .http_listener("main", port, vec![route_prefix("/", "app")])
        .cluster("app", &[addr])
        .set(
            "access_log",
            json!([{"path": "access.json", "format": "json"}]),
        );
    let proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts");
    let sent = send(
        &format!("http://127.0.0.1:{port}/x"),
        &["-H", "x-request-id: forged-1"],
    )
    .await;
    assert_eq!(sent.status, 403, "{sent:?}");
    let path = proxy.dir().join("access.json");
    let line = wait_line("access.json", "forged-1", || read(&path)).await;
    let v: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(v["response_flags"], "-", "{v}");
}

/// Route names (SPEC §6): a named route logs its name, an unnamed one
/// `<listener>/<index>`, in json `route` and in `%ROUTE_NAME%`; a request no
/// route matched logs `-`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_names_in_json_and_format_string_logs() {
    let ledger = LedgerUpstream::start().await.expect("ledger");
    let port = free_port();
    let mut named = route_prefix("/live/", "up");
    named["name"] = json!("live");
    let cfg = ConfigBuilder::new()
        .http_listener(
            "edge",
            port,
            vec![named, route_prefix("/unnamed/", "up")],
        )
        .cluster("up", &[ledger.addr()])
        .set(
            "access_log",
            json!([
                {"path": "routes.json", "format": "json"},
                {"path": "routes.log", "format": "%REQ(X-REQUEST-ID)% %ROUTE_NAME% %RESPONSE_CODE%"},
            ]),
        );
    let proxy = ProxyProcess::start_and_wait(&cfg.build(), &[], &[port])
        .await
        .expect("proxy starts");
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    for (id, path, status) in [
        ("rn-named", "/live/x", 200),
        ("rn-unnamed", "/unnamed/x", 200),
        ("rn-none", "/nowhere", 404),
    ] {
        let sent = send(&url(path), &["-H", &format!("x-request-id: {id}")]).await;
        assert_eq!(sent.status, status, "{path}: {sent:?}");
    }
    let text = proxy.dir().join("routes.log");
    for (id, route) in [
        ("rn-named", "live"),
        ("rn-unnamed", "edge/1"),
        ("rn-none", "-"),
    ] {
        let line = wait_line("routes.log", id, || read(&text)).await;
        let status = if route == "-" { 404 } else { 200 };
        assert_eq!(line, format!("{id} {route} {status}"), "%ROUTE_NAME%");
    }
    let json_path = proxy.dir().join("routes.json");
    for (id, route) in [
        ("rn-named", json!("live")),
        ("rn-unnamed", json!("edge/1")),
        ("rn-none", Value::Null),
    ] {
        let line = wait_line("routes.json", id, || read(&json_path)).await;
        let v: Value = serde_json::from_str(&line).expect("json line");
        assert_eq!(v["route"], route, "json route of {id}: {line}");
    }
}

/// In a chain A → B whose last upstream is dead, B answers 503 `UF`
/// itself; A only relays that answer, so A's record carries no flag of
/// its own (hop A must not log hop B's verdict as if it had decided it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_local_reply_is_not_logged_as_this_hops_flag() {
    let (a_port, b_port) = (free_port(), free_port());
    let dead = free_port();
    let b = ConfigBuilder::new()
        .http_listener("b", b_port, vec![route_prefix("/", "dead")])
        .cluster_with(
            "dead",
            &[format!("127.0.0.1:{dead}")],
            json!({"connect_timeout": "300ms"}),
        )
        .set("access_log", json!([{"path": "b.json", "format": "json"}]));
    let a = ConfigBuilder::new()
        .http_listener("a", a_port, vec![route_prefix("/", "b")])
        .cluster("b", &[format!("127.0.0.1:{b_port}")])
        .set("access_log", json!([{"path": "a.json", "format": "json"}]));
    let proxy_b = ProxyProcess::start_and_wait(&b.build(), &[], &[b_port])
        .await
        .expect("proxy B starts");
    let proxy_a = ProxyProcess::start_and_wait(&a.build(), &[], &[a_port])
        .await
        .expect("proxy A starts");
    let sent = send(
        &format!("http://127.0.0.1:{a_port}/relay"),
        &["-H", "x-request-id: relayed-1"],
    )
    .await;
    assert_eq!(sent.status, 503, "{sent:?}");
    let (a_path, b_path) = (proxy_a.dir().join("a.json"), proxy_b.dir().join("b.json"));
    let b_line = wait_line("b.json", "relayed-1", || read(&b_path)).await;
    let a_line = wait_line("a.json", "relayed-1", || read(&a_path)).await;
    let (a_rec, b_rec): (Value, Value) = (
        serde_json::from_str(&a_line).expect("a JSON line from A"),
        serde_json::from_str(&b_line).expect("a JSON line from B"),
    );
    assert_eq!(
        b_rec["response_flags"], "UF",
        "B's upstream is dead: {b_rec}"
    );
    assert_eq!(
        a_rec["response_flags"], "-",
        "A only relayed B's 503: {a_rec}"
    );
}
