//! `compose/demo/` for real (SPEC §5.2, issue 7 item 3): the images come
//! from `scripts/build-images` (Debian packages only, no registry; skipped
//! when they exist; `mesh:local` around the binaries the suite built,
//! `--bin-dir`), the stack is brought up with `docker-compose.yml` +
//! `docker-compose.local.yml` (which swaps Jaeger for `mesh-cli traces
//! --json`, still named `jaeger`) under a project name of its own, with the
//! edge and the UI port published on free 127.0.0.1 ports. Then:
//! - `GET /chain` through the edge answers 200 `web -> api`;
//! - the traces container prints one complete trace: edge CLIENT → web
//!   SERVER → web CLIENT → api SERVER, parented hop to hop;
//! - a container on the compose network with a certificate for
//!   `spiffe://mesh.local/edge` from a rogue CA (its own mesh-proxy, which
//!   trusts the real CA for web's certificate) is refused by web's ingress
//!   (`unknown_ca` in web-proxy's log), while the same container gets 200
//!   from the edge (the control) and plaintext to the ingress gets no HTTP.
//!
//! `down -v` always runs, also when the test fails (a Drop guard). Docker
//! not usable is a failure with the reason, never a silent skip.

mod compose_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compose_common::{Stack, bin_dir, build_images, output, require_docker, text};
use mesh_tests::{free_port, wait_until};
use serde_json::Value;

const SERVICES: [&str; 5] = ["web", "web-proxy", "api", "api-proxy", "edge"];

/// Runs in a `mesh:local` container on the stack's network (bash, no curl):
/// a rogue CA issues a certificate for the edge's identity; a mesh-proxy
/// presents it to web's ingress while trusting the real bundle
/// ($MESH_BUNDLE) plus its own root (mesh-proxy checks its own chain).
const INTRUDER: &str = r#"set -e
mkdir -p /tmp/certs
printf '%s\n' "$MESH_BUNDLE" > /tmp/certs/real-ca.crt
mesh-cli ca init --trust-domain mesh.local --out /tmp/rogue >/dev/null
mesh-cli issue edge --ca-dir /tmp/rogue --out /tmp/certs >/dev/null
cat /tmp/certs/real-ca.crt /tmp/certs/ca.crt > /tmp/certs/bundle.crt
cat > /tmp/intruder.yaml <<Y
node: { name: intruder, service: intruder }
admin: { address: 127.0.0.1:9901 }
identity: { cert: /tmp/certs/edge.crt, key: /tmp/certs/edge.key, trust_bundle: /tmp/certs/bundle.crt }
listeners:
  - name: out
    address: 127.0.0.1:8000
    protocol: http
    routes: [ { match: { prefix: / }, cluster: web } ]
clusters:
  - name: web
    endpoints: [web:15006]
    discovery: dns
    connect_timeout: 2s
    tls: { mode: mutual, peer: spiffe://mesh.local/web }
Y
mesh-proxy -c /tmp/intruder.yaml >/tmp/proxy.log 2>&1 &
mesh-cli wait --admin 127.0.0.1:9901 --timeout 10s >/dev/null || { cat /tmp/proxy.log; exit 1; }
get() {
  exec 3<>"/dev/tcp/$1/$2"
  printf 'GET /chain HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n' >&3
  timeout 5 head -c 200 <&3 | head -1 | tr -cd '[:print:]'
  exec 3<&-
}
echo "control: $(get edge 8000)"
echo "plaintext: $(get web 15006 || true)"
echo "rogue: $(get 127.0.0.1 8000)"
echo "--- intruder proxy log"
cat /tmp/proxy.log
"#;

/// `GET path` on 127.0.0.1:port, HTTP/1.1 with `Connection: close`: the
/// whole response as text, or None when the connection failed.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    Some(String::from_utf8_lossy(&response).into_owned())
}

/// The first trace of `jaeger`'s output (one JSON object per line after the
/// compose log prefix `jaeger_1  | `) with four spans.
fn complete_trace(logs: &str) -> Option<Value> {
    logs.lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|t| t["spans"].as_array().is_some_and(|s| s.len() == 4))
}

#[test]
fn compose_demo_serves_traces_and_refuses_a_rogue_certificate() {
    let started = Instant::now();
    require_docker();

    // mesh:local packages the binaries this test suite runs, mesh-demo
    // included.
    let bin_dir = bin_dir();
    assert!(
        bin_dir.join("mesh-demo").is_file(),
        "no mesh-demo in {} (cargo build --workspace --bins)",
        bin_dir.display()
    );
    build_images("compose_demo", &bin_dir);

    let edge_port = free_port();
    let ui_port = free_port();
    let stack = Stack::new(
        "compose_demo",
        "meshdemo",
        "demo",
        vec![
            ("EDGE_PORT", edge_port.to_string()),
            ("JAEGER_UI_PORT", ui_port.to_string()),
        ],
        40,
        started,
    );
    stack.progress(&format!(
        "up -d (project {}, edge on 127.0.0.1:{})",
        stack.project, edge_port
    ));
    let up = output(&mut stack.command(&["up", "-d", "--no-build"]));
    assert!(up.status.success(), "compose up failed: {}", text(&up));

    let mut last = String::new();
    let healthy = wait_until(Duration::from_secs(90), Duration::from_millis(500), || {
        let states: Vec<String> = SERVICES
            .iter()
            .map(|s| format!("{s}: {}", stack.health(s)))
            .collect();
        let ok = states.iter().all(|s| s.ends_with(": running healthy"));
        last = states.join(", ");
        ok
    });
    assert!(healthy, "the mesh did not become healthy: {last}");
    stack.progress("edge, web, api and both sidecars healthy");

    // Through the published edge port.
    let mut answer = String::new();
    let through = wait_until(Duration::from_secs(20), Duration::from_millis(500), || {
        answer = http_get(edge_port, "/chain").unwrap_or_default();
        answer.starts_with("HTTP/1.1 200")
    });
    assert!(through, "GET /chain through the edge: {answer}");
    assert!(
        answer.ends_with("web -> api\n"),
        "both services in the answer: {answer}"
    );
    stack.progress("GET /chain → 200 web -> api");

    // One complete trace, printed by the traces container.
    let mut trace = None;
    let found = wait_until(Duration::from_secs(20), Duration::from_millis(500), || {
        trace = complete_trace(&stack.service_logs("jaeger"));
        trace.is_some()
    });
    assert!(
        found,
        "no trace with 4 spans from `jaeger`:\n{}",
        stack.service_logs("jaeger")
    );
    let trace = trace.unwrap_or_default();
    mesh_tests::assert_demo_chain(&trace);
    stack.progress("one trace: edge CLIENT → web SERVER → web CLIENT → api SERVER");

    // A container on the stack's own network with a rogue certificate.
    let edge = stack.container("edge");
    let networks = output(Command::new("docker").args([
        "inspect",
        "--format",
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
        &edge,
    ]));
    let network = String::from_utf8_lossy(&networks.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no network on the edge: {}", text(&networks)))
        .to_owned();
    let bundle = output(&mut stack.command(&["exec", "-T", "edge", "cat", "/certs/ca.crt"]));
    let bundle = String::from_utf8_lossy(&bundle.stdout).trim().to_owned();
    assert!(bundle.contains("BEGIN CERTIFICATE"), "the bundle: {bundle}");
    let intruder = Command::new("docker")
        .args(["run", "--rm", "-i", "--network", &network])
        .args(["-e", &format!("MESH_BUNDLE={bundle}")])
        .args(["mesh:local", "bash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(INTRUDER.as_bytes())?;
            child.wait_with_output()
        })
        .expect("docker run the intruder");
    let said = String::from_utf8_lossy(&intruder.stdout).into_owned();
    let line = |what: &str| {
        said.lines()
            .find_map(|l| l.strip_prefix(&format!("{what}: ")))
            .unwrap_or_else(|| panic!("no `{what}:` from the intruder: {}", text(&intruder)))
            .to_owned()
    };
    assert!(
        line("control").starts_with("HTTP/1.1 200"),
        "the control: the same container through the edge must work: {}",
        text(&intruder)
    );
    assert!(
        !line("plaintext").contains("HTTP/"),
        "plaintext HTTP to web's mTLS ingress got an HTTP answer: {}",
        text(&intruder)
    );
    let rogue = line("rogue");
    assert!(
        rogue.starts_with("HTTP/1.1 5") && !said.contains("web -> api"),
        "a rogue certificate got through web's ingress: {}",
        text(&intruder)
    );
    let web_logs = stack.service_logs("web-proxy");
    assert!(
        web_logs.contains("unknown_ca"),
        "web-proxy logged no refusal of the rogue certificate:\n{web_logs}"
    );
    stack.progress(&format!(
        "rogue certificate for spiffe://mesh.local/edge refused by web's ingress ({rogue}; unknown_ca)"
    ));
}
