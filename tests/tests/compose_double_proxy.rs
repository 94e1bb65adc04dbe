//! `compose/double-proxy/` for real (SPEC §5.3, issue 7 item 4): the
//! images come from `scripts/build-images` (Debian packages only, no
//! registry; skipped when they exist; `mesh:local` around the binaries the
//! suite built, `--bin-dir`), the stack is brought up with
//! `docker-compose.yml` + `docker-compose.local.yml` under a project name
//! of its own and the frontend published on a free 127.0.0.1 port, and then
//! `psql` on the host runs `select 40+2` through frontend proxy → mTLS →
//! backend proxy → PostgreSQL. A client container on the compose network
//! without a certificate reaches PostgreSQL through the frontend proxy (the
//! control) but gets nothing through the backend proxy. `down -v` always
//! runs, also when the test fails (a Drop guard).
//!
//! Docker not usable is a failure with the reason, never a silent skip.

mod compose_common;

use std::process::Command;
use std::time::{Duration, Instant};

use compose_common::{Stack, bin_dir, build_images, output, require_docker, text};
use mesh_tests::{free_port, wait_until};

const PASSWORD: &str = "mesh";

/// `psql` with the test's password, unaligned tuples only, no psqlrc.
fn psql_args(host: &str, port: u16, sql: &str) -> Vec<String> {
    [
        "-h",
        host,
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn psql_crosses_the_compose_double_proxy_and_a_client_without_certificate_does_not() {
    let started = Instant::now();
    require_docker();
    build_images("compose_double_proxy", &bin_dir());

    let port = free_port();
    let stack = Stack::new(
        "compose_double_proxy",
        "meshdp",
        "double-proxy",
        vec![
            ("FRONTEND_PORT", port.to_string()),
            ("POSTGRES_PASSWORD", PASSWORD.to_owned()),
        ],
        60,
        started,
    );
    stack.progress(&format!(
        "up -d (project {}, frontend on 127.0.0.1:{})",
        stack.project, port
    ));
    let up = output(&mut stack.command(&["up", "-d", "--no-build"]));
    assert!(up.status.success(), "compose up failed: {}", text(&up));

    let mut last = String::new();
    let healthy = wait_until(Duration::from_secs(90), Duration::from_millis(500), || {
        last = format!(
            "backend-proxy: {}, frontend-proxy: {}",
            stack.health("backend-proxy"),
            stack.health("frontend-proxy")
        );
        last == "backend-proxy: running healthy, frontend-proxy: running healthy"
    });
    assert!(healthy, "the proxies did not become healthy: {last}");
    stack.progress("both proxies healthy");

    // psql on the host through the published frontend port.
    let mut answer = String::new();
    let through = wait_until(Duration::from_secs(20), Duration::from_millis(500), || {
        let out = output(
            Command::new("psql")
                .args(psql_args("127.0.0.1", port, "select 40+2"))
                .env("PGPASSWORD", PASSWORD)
                .env("PGCONNECT_TIMEOUT", "5"),
        );
        answer = text(&out);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "42"
    });
    assert!(through, "psql through the double proxy: {answer}");
    stack.progress("psql -h 127.0.0.1 -c 'select 40+2' → 42");

    // A client container on the stack's own network, with no certificate.
    let frontend = stack.container("frontend-proxy");
    let networks = output(Command::new("docker").args([
        "inspect",
        "--format",
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
        &frontend,
    ]));
    let network = String::from_utf8_lossy(&networks.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no network on the frontend: {}", text(&networks)))
        .to_owned();
    let client = |host: &str, port: u16| {
        output(
            Command::new("docker")
                .args(["run", "--rm", "--network", &network])
                .args([
                    "-e",
                    &format!("PGPASSWORD={PASSWORD}"),
                    "-e",
                    "PGCONNECT_TIMEOUT=5",
                ])
                .args(["--entrypoint", "psql", "mesh-postgres:local"])
                .args(psql_args(host, port, "select 40+2")),
        )
    };
    let control = client("frontend-proxy", 5432);
    assert!(
        control.status.success() && String::from_utf8_lossy(&control.stdout).trim() == "42",
        "the control: the same client container through the frontend proxy must work: {}",
        text(&control)
    );
    let intruder = client("backend-proxy", 15432);
    assert!(
        !intruder.status.success() && !String::from_utf8_lossy(&intruder.stdout).contains("42"),
        "a client without a certificate got through the backend proxy: {}",
        text(&intruder)
    );
    stack.progress(&format!(
        "no certificate, straight to backend-proxy: refused ({})",
        String::from_utf8_lossy(&intruder.stderr).trim()
    ));
    let logs = text(&output(&mut stack.command(&[
        "logs",
        "--no-color",
        "backend-proxy",
    ])));
    assert!(
        logs.contains("tls:"),
        "the backend proxy logged no TLS refusal:\n{logs}"
    );
}
