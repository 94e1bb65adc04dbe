//! End-to-end: `mesh-cli validate` runs the proxy's own validation.

use std::process::Command;

use mesh_tests::bin_path;

#[test]
fn mesh_cli_validate_reports_each_file_and_fails_if_any_is_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.yaml");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &good,
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    routes:\n      - match: { prefix: / }\n        cluster: payments\nclusters:\n  - name: payments\n    endpoints: [127.0.0.1:8080]\n",
    )
    .expect("write");
    std::fs::write(
        &bad,
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    routes:\n      - match: { prefix: / }\n        cluster: paymnts\n        timout: 1s\nclusters:\n  - name: payments\n    endpoints: [127.0.0.1:8080]\n",
    )
    .expect("write");
    let cli = bin_path("mesh-cli").expect("mesh-cli built");

    let ok = Command::new(&cli)
        .arg("validate")
        .arg(&good)
        .output()
        .expect("run");
    assert!(ok.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        format!("{}: OK\n", good.display())
    );

    let both = Command::new(&cli)
        .arg("validate")
        .arg(&good)
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(both.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        stderr.contains("listeners[0].routes[0].cluster: unknown cluster \"paymnts\" (did you mean \"payments\"?)"),
        "{stderr}"
    );
    assert!(stderr.contains(":7:9: listeners[0].routes[0].timout: unknown key \"timout\" (did you mean \"timeout\"?)"), "{stderr}");
    assert!(String::from_utf8_lossy(&both.stdout).contains("good.yaml: OK"));

    // The proxy's validate mode agrees, file for file.
    let proxy = bin_path("mesh-proxy").expect("mesh-proxy built");
    let p = Command::new(&proxy)
        .args(["--mode", "validate", "-c"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(p.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&p.stderr), stderr);
}
