//! Shared by the compose tests (`compose_demo.rs`, `compose_double_proxy.rs`):
//! Docker must be usable (a failure with the reason, never a silent skip),
//! `scripts/build-images --bin-dir` around the binaries this suite built, and
//! a compose stack under a project name of its own, brought down with `-v`
//! on drop whatever happened. Each test file includes this module; not every
//! file uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use mesh_tests::bin_path;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Panics with the reason when `docker info` does not answer.
pub fn require_docker() {
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    match info {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("Docker is not usable: {}", text(&o)),
        Err(e) => panic!("Docker is not usable: cannot run `docker`: {e}"),
    }
}

/// The directory holding the workspace binaries this suite runs.
pub fn bin_dir() -> PathBuf {
    bin_path("mesh-proxy")
        .expect("the workspace binaries (cargo build --bins)")
        .parent()
        .expect("a bin dir")
        .to_path_buf()
}

/// `scripts/build-images --bin-dir <bin_dir>`: images from Debian packages
/// (a no-op when they exist); `mesh:local` packages the binaries this suite
/// runs, so there is no second, release build.
pub fn build_images(label: &str, bin_dir: &Path) {
    eprintln!(
        "[{label}] scripts/build-images --bin-dir {} (the first run debootstraps Debian: a few minutes)",
        bin_dir.display()
    );
    let status = Command::new(repo_root().join("scripts/build-images"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .stdin(Stdio::null())
        .status()
        .expect("running scripts/build-images");
    assert!(status.success(), "scripts/build-images failed: {status}");
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

/// A compose stack of `compose/<dir>` with `docker-compose.yml` +
/// `docker-compose.local.yml`; `down -v` on drop, whatever happened.
pub struct Stack {
    compose: Vec<String>,
    /// `<prefix><pid>x<nanos>`: concurrent runs never share containers.
    pub project: String,
    dir: PathBuf,
    /// Environment of every compose command (published ports, passwords).
    env: Vec<(&'static str, String)>,
    /// Prefix of progress lines: the test's name.
    label: &'static str,
    /// Lines of `compose logs` printed when the test fails.
    log_tail: usize,
    started: Instant,
}

impl Stack {
    pub fn new(
        label: &'static str,
        project_prefix: &str,
        dir: &str,
        env: Vec<(&'static str, String)>,
        log_tail: usize,
        started: Instant,
    ) -> Self {
        let project = format!(
            "{project_prefix}{}x{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        Stack {
            compose: compose_program(),
            project,
            dir: repo_root().join("compose").join(dir),
            env,
            label,
            log_tail,
            started,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
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
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn progress(&self, what: &str) {
        eprintln!(
            "[{} +{:.1}s] {what}",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
    }

    pub fn container(&self, service: &str) -> String {
        let out = output(&mut self.command(&["ps", "-q", service]));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success() && !id.is_empty(),
            "no container for {service}: {}",
            text(&out)
        );
        id
    }

    /// `running healthy` once the service's health check passes.
    pub fn health(&self, service: &str) -> String {
        let id = self.container(service);
        let out = output(Command::new("docker").args([
            "inspect",
            "--format",
            "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
            &id,
        ]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn service_logs(&self, service: &str) -> String {
        let out = output(&mut self.command(&["logs", "--no-color", service]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logs(&self) -> String {
        let tail = self.log_tail.to_string();
        text(&output(&mut self.command(&[
            "logs",
            "--no-color",
            "--tail",
            &tail,
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
