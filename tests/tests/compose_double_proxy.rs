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

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mesh_tests::{bin_path, free_port, wait_until};

const PASSWORD: &str = "mesh";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `docker compose` when the plugin answers, else `docker-compose`.
fn compose_program() -> Vec<String> {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .stdin(Stdio::null())
        .output();
    if plugin.is_ok_and(|o| o.status.success()) {
        return vec!["docker".into(), "compose".into()];
    }
    let standalone = Command::new("docker-compose")
        .arg("version")
        .stdin(Stdio::null())
        .output();
    match standalone {
        Ok(o) if o.status.success() => vec!["docker-compose".into()],
        _ => panic!(
            "neither `docker compose` nor `docker-compose` works here: scripts/test installs docker-compose"
        ),
    }
}

/// The running stack; `down -v` on drop, whatever happened.
struct Stack {
    compose: Vec<String>,
    project: String,
    dir: PathBuf,
    port: u16,
    started: Instant,
}

impl Stack {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .args([
                "-f",
                "docker-compose.yml",
                "-f",
                "docker-compose.local.yml",
                "-p",
                &self.project,
            ])
            .args(args)
            .current_dir(&self.dir)
            .env("FRONTEND_PORT", self.port.to_string())
            .env("POSTGRES_PASSWORD", PASSWORD);
        cmd
    }

    fn progress(&self, what: &str) {
        eprintln!(
            "[compose_double_proxy +{:.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn container(&self, service: &str) -> String {
        let out = output(&mut self.command(&["ps", "-q", service]));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success() && !id.is_empty(),
            "no container for {service}: {}",
            text(&out)
        );
        id
    }

    fn health(&self, service: &str) -> String {
        let id = self.container(service);
        let out = output(Command::new("docker").args([
            "inspect",
            "--format",
            "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
            &id,
        ]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn logs(&self) -> String {
        text(&output(&mut self.command(&[
            "logs",
            "--no-color",
            "--tail",
            "60",
        ])))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- compose logs of {} ---\n{}", self.project, self.logs());
        }
        let out = output(&mut self.command(&["down", "-v", "--remove-orphans", "--timeout", "5"]));
        if !out.status.success() {
            eprintln!("compose down -v failed: {}", text(&out));
        }
        self.progress("down -v done");
    }
}

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
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    match info {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("Docker is not usable: {}", text(&o)),
        Err(e) => panic!("Docker is not usable: cannot run `docker`: {e}"),
    }
    let root = repo_root();

    // Images from Debian packages; a no-op when they exist. mesh:local
    // packages the binaries this test suite runs (no second, release build).
    let bin_dir = bin_path("mesh-proxy")
        .expect("the workspace binaries (cargo build --bins)")
        .parent()
        .expect("a bin dir")
        .to_path_buf();
    eprintln!(
        "[compose_double_proxy] scripts/build-images --bin-dir {} (the first run debootstraps Debian: a few minutes)",
        bin_dir.display()
    );
    let status = Command::new(root.join("scripts/build-images"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .stdin(Stdio::null())
        .status()
        .expect("running scripts/build-images");
    assert!(status.success(), "scripts/build-images failed: {status}");

    let project = format!(
        "meshdp{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let stack = Stack {
        compose: compose_program(),
        project,
        dir: root.join("compose/double-proxy"),
        port: free_port(),
        started,
    };
    stack.progress(&format!(
        "up -d (project {}, frontend on 127.0.0.1:{})",
        stack.project, stack.port
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
                .args(psql_args("127.0.0.1", stack.port, "select 40+2"))
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
