//! Setup shared by the benches: a validated config from YAML text, and its
//! clusters built the way the proxy builds them at start-up.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use mesh_proxy::cluster::Cluster;
use mesh_proxy::config::{self, Config};

/// Parses and validates `yaml` with the proxy's own config loader.
pub fn load(yaml: &str) -> Config {
    config::load_str(yaml, "bench.yaml", Path::new("."))
        .unwrap_or_else(|e| panic!("bench config is invalid:\n{e}"))
}

/// A runtime to build clusters in: `Cluster::try_spawn` starts background
/// tasks (idle-connection reaping), which never run here since the runtime
/// is only entered, not driven.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Every cluster of `config` by name. Call inside `runtime().enter()`.
pub fn clusters(config: &Config) -> HashMap<String, Arc<Cluster>> {
    config
        .clusters
        .iter()
        .map(|spec| {
            let cluster = Cluster::try_spawn(spec.clone(), None)
                .unwrap_or_else(|e| panic!("cluster {}: {e}", spec.name));
            (spec.name.clone(), cluster)
        })
        .collect()
}
