//! Every proxy config shipped in `examples/` passes validation.

use std::path::Path;

#[test]
fn every_example_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            if let Err(errors) = mesh_proxy::config::load_file(&path) {
                panic!("{errors}");
            }
            checked.push(
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    for required in ["quickstart.yaml", "edge.yaml", "sidecar.yaml", "tcp.yaml"] {
        assert!(
            checked.iter().any(|c| c == required),
            "examples/{required} is missing"
        );
    }
}
