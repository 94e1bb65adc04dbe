//! Behaviour of `load_str` / `load_file` on whole configs, one test per check.

#![allow(clippy::unwrap_used)]

mod cluster;
mod example;
mod global;
mod listener;
mod parse;
mod props;
mod route;
mod route_names;

use std::path::Path;

use super::validate::Env;
use super::{Config, ConfigError, ConfigErrors, load_with_env};

/// Folder that relative paths resolve against in tests without files.
const NO_DIR: &str = "/nonexistent-mesh-config-dir";

fn load_in(yaml: &str, base_dir: &Path, env: &Env) -> Result<Config, ConfigErrors> {
    load_with_env(yaml, "proxy.yaml", base_dir, env)
}

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    load_in(yaml, Path::new(NO_DIR), &Env::default())
}

fn load_ok(yaml: &str) -> Config {
    match load(yaml) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}\n--- yaml:\n{yaml}"),
    }
}

fn errors(yaml: &str) -> Vec<ConfigError> {
    match load(yaml) {
        Ok(_) => panic!("expected errors, config is valid:\n{yaml}"),
        Err(errors) => errors.errors,
    }
}

/// Asserts one error has exactly `path` and a message containing `part`.
#[track_caller]
fn assert_error_in(errors: &[ConfigError], path: &str, part: &str) {
    let found = errors
        .iter()
        .any(|e| e.path == path && e.message.contains(part));
    let listing: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        found,
        "no error at {path:?} containing {part:?}; got:\n{}",
        listing.join("\n")
    );
}

#[track_caller]
fn assert_error(yaml: &str, path: &str, part: &str) {
    assert_error_in(&errors(yaml), path, part);
}

const CLUSTERS: &str = "\
clusters:
  - name: app
    endpoints: [127.0.0.1:9000]
  - name: payments
    endpoints: [127.0.0.1:9001]
";

/// One http listener `web` whose only route is `route` (a flow mapping);
/// clusters `app` and `payments`.
fn with_route(route: &str) -> String {
    format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:8000\n    routes:\n      - {route}\n{CLUSTERS}"
    )
}

/// Listener `web` (listeners[0]) plus `listener` as listeners[1].
fn with_listener(listener: &str) -> String {
    format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:8000\n    routes: [{{cluster: app}}]\n  - {listener}\n{CLUSTERS}"
    )
}

/// The base config plus `cluster` as clusters[2].
fn with_cluster(cluster: &str) -> String {
    format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:8000\n    routes: [{{cluster: app}}]\n{CLUSTERS}  - {cluster}\n"
    )
}

/// The base config plus top-level `extra` YAML.
fn with_top(extra: &str) -> String {
    format!("{}{extra}\n", with_route("{cluster: app}"))
}
