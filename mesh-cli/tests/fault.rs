//! `mesh-cli fault` (the real binary) against the admin API of a real
//! proxy runtime started in this process.

use std::time::Duration;

/// Bounds every run of the binary.
const RUN_LIMIT: Duration = Duration::from_secs(30);

const YAML: &str = "
node: { name: cli-fault }
listeners:
  - name: main
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: [127.0.0.1:1]
";

/// Serves a proxy with its admin API in this process (until the test's
/// runtime ends); returns the admin address.
fn proxy() -> String {
    let cfg = mesh_proxy::config::load_str(YAML, "cli-fault.yaml", std::path::Path::new("."))
        .expect("valid config");
    let bound = mesh_proxy::app::bind_all(&cfg).expect("bind");
    let admin = mesh_proxy::admin::AdminListener::bind(([127, 0, 0, 1], 0).into(), None)
        .expect("bind the admin");
    let addr = admin.local_addr().to_string();
    let opts = mesh_proxy::app::ServeOptions {
        drain_time: Duration::from_secs(1),
        admin: Some(admin),
        config_path: None,
    };
    tokio::spawn(mesh_proxy::app::serve(cfg, bound, None, opts));
    addr
}

/// Runs `mesh-cli fault ARGS`: (exit code, stdout, stderr).
async fn fault(args: &[&str]) -> (i32, String, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .arg("fault")
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .expect("mesh-cli fault finished in time")
        .expect("mesh-cli runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_lists_and_clears_an_override_and_exits_2_on_bad_input() {
    let admin = proxy();
    let a = admin.as_str();
    let (code, out, _) = fault(&["--admin", a]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, format!("no fault overrides on {a}\n").as_str())
    );

    let (code, out, err) = fault(&[
        "--admin",
        a,
        "--route",
        "main/0",
        "--abort",
        "503",
        "--percent",
        "50",
        "--ttl",
        "30s",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("fault override on main/0: abort 503 (50%)\nreverts by itself in 30s (at "),
        "{out}"
    );
    let (code, out, _) = fault(&["--admin", a]).await;
    assert_eq!(code, 0);
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("main/0 "), "{out}");
    assert!(
        row.contains("abort 503 (50%)") && row.contains(" - "),
        "{out}"
    );

    let (code, _, err) = fault(&["--admin", a, "--route", "main/9", "--delay", "1s"]).await;
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: the proxy refused: unknown route \"main/9\" (routes: main/0)"),
        "{err}"
    );
    let (code, _, err) = fault(&["--admin", a, "--route", "main/0"]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = fault(&["--admin", a, "--route", "main/0", "--abort", "302"]).await;
    assert_eq!(code, 2);

    let (code, out, _) = fault(&["--admin", a, "--route", "main/0", "--clear"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "cleared the fault override on main/0\n")
    );
    let (_, out, _) = fault(&["--admin", a]).await;
    assert_eq!(out, format!("no fault overrides on {a}\n"));
}

#[tokio::test]
async fn an_admin_that_does_not_answer_exits_1() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr").to_string();
    drop(free);
    let (code, _, err) = fault(&["--admin", &addr]).await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("error: cannot reach the admin API at {addr}: ")),
        "{err}"
    );
}
