//! What the CA end-to-end tests (`ca`, `ca_hardening`) share: `mesh-cli`
//! runs, a CA directory, a `mesh-ca serve` child stopped by PID on drop,
//! and join tokens.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use mesh_tests::bin_path;

/// A child process (mesh-ca, openssl), stopped by PID on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn mesh_cli(args: &[&str]) -> Output {
    Command::new(bin_path("mesh-cli").expect("mesh-cli"))
        .args(args)
        .output()
        .expect("mesh-cli runs")
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// Waits until something accepts on 127.0.0.1:`port`.
pub async fn wait_port(port: u16) {
    let up =
        mesh_tests::wait_until_async(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
    assert!(up, "nothing listens on {port}");
}

fn assert_ran(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mesh-cli ca init` (trust domain `mesh.test`) into `dir/ca`.
pub fn init_ca(dir: &Path) {
    assert_ran(&mesh_cli(&[
        "ca",
        "init",
        "--trust-domain",
        "mesh.test",
        "--out",
        s(&dir.join("ca")),
    ]));
}

/// `mesh-ca serve` on `dir/ca`, listening on 127.0.0.1:`port`.
pub async fn start_ca(dir: &Path, port: u16, extra: &[&str]) -> Proc {
    let child = Command::new(bin_path("mesh-ca").expect("mesh-ca"))
        .args([
            "serve",
            "--ca-dir",
            s(&dir.join("ca")),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mesh-ca starts");
    let ca = Proc(child);
    wait_port(port).await;
    ca
}

/// A join token for `service` from `dir/ca`, written to `dir/file`.
pub fn create_token(dir: &Path, service: &str, file: &str) {
    let out = mesh_cli(&["token", "create", service, "--ca-dir", s(&dir.join("ca"))]);
    assert_ran(&out);
    std::fs::write(dir.join(file), &out.stdout).expect("token file");
}
