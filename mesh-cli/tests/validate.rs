//! `mesh-cli validate` runs the proxy's own validation: a config the proxy
//! would refuse at start is refused here too, naming the key path.

use std::path::Path;
use std::process::{Command, Output};

fn validate(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .arg("validate")
        .arg(file)
        .output()
        .expect("run mesh-cli")
}

fn config_with_format(format: &str) -> String {
    format!(
        "access_log: [{{path: stdout, format: \"{format}\"}}]\n\
         listeners:\n\
         \x20 - {{name: edge, address: 127.0.0.1:0, routes: [{{match: {{prefix: /}}, cluster: app}}]}}\n\
         clusters:\n\
         \x20 - {{name: app, endpoints: [127.0.0.1:9]}}\n"
    )
}

#[test]
fn an_unknown_access_log_operator_fails_validation_naming_it_and_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, config_with_format("[%START_TIME%] %RESPONSE_CODE%")).expect("write");
    let out = validate(&good);
    assert!(out.status.success(), "a valid format: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": OK\n"));

    let bogus = dir.path().join("bogus.yaml");
    std::fs::write(
        &bogus,
        config_with_format("[%START_TIME%] %BOGUS% %RESPONSE_CODE%"),
    )
    .expect("write");
    let out = validate(&bogus);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("access_log[0].format: unknown operator %BOGUS%"),
        "{stderr}"
    );
}
