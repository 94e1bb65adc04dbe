//! Reload against a real (unserved) runtime: a `Config` is applied without
//! any file, and a failure anywhere changes nothing.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::reload::reload;
use super::*;

fn config(clusters: &[&str], extra_listener: Option<u16>) -> Config {
    let mut yaml = String::from(
        "node: { name: unit }\nlisteners:\n  - name: main\n    address: 127.0.0.1:0\n    routes:\n      - match: { prefix: / }\n        cluster: a\n",
    );
    if let Some(port) = extra_listener {
        yaml.push_str(&format!(
            "  - name: second\n    address: 127.0.0.1:{port}\n    routes:\n      - match: {{ prefix: / }}\n        cluster: a\n"
        ));
    }
    yaml.push_str("clusters:\n");
    for name in clusters {
        yaml.push_str(&format!("  - name: {name}\n    endpoints: [127.0.0.1:1]\n"));
    }
    match crate::config::load_str(&yaml, "unit.yaml", Path::new(".")) {
        Ok(cfg) => cfg,
        Err(e) => panic!("test config: {e}"),
    }
}

fn runtime() -> Runtime {
    let cfg = config(&["a"], None);
    let bound = bind_all(&cfg).expect("bind port 0");
    start(&cfg, bound, None).expect("start")
}

fn cluster_names(rt: &Runtime) -> Vec<String> {
    let topology = rt.topology();
    topology
        .clusters
        .iter()
        .map(|c| c.name().to_owned())
        .collect()
}

#[tokio::test]
async fn reload_applies_a_config_that_came_from_no_file() {
    let rt = runtime();
    reload(&rt, config(&["a", "b"], None), "test")
        .await
        .expect("reload");
    assert_eq!(cluster_names(&rt), ["a", "b"]);
    assert_eq!(rt.topology().config.clusters.len(), 2);
    assert_eq!(rt.reloads.total.load(Ordering::Relaxed), 1);
    assert_eq!(rt.reloads.failed.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_config_that_cannot_be_applied_changes_nothing() {
    let rt = runtime();
    let before = Arc::clone(&rt.topology().config);
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = held.local_addr().expect("addr").port();
    let result = reload(&rt, config(&["a", "b"], Some(port)), "test").await;
    assert!(
        matches!(&result, Err(AppError::Bind { listener, .. }) if listener == "listener second"),
        "{result:?}"
    );
    assert!(Arc::ptr_eq(&before, &rt.topology().config));
    assert_eq!(cluster_names(&rt), ["a"]);
    assert_eq!(rt.topology().listeners.len(), 1);
    assert_eq!(rt.reloads.failed.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_invalid_file_counts_as_a_failed_reload() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("proxy.yaml");
    std::fs::write(
        &path,
        "listeners: [{ name: main, address: 'not an address' }]\n",
    )
    .expect("write");
    let result = reload_file(&rt, &path).await;
    assert!(
        matches!(result, Err(AppError::InvalidConfig(_))),
        "{result:?}"
    );
    assert_eq!(rt.reloads.total.load(Ordering::Relaxed), 1);
    assert_eq!(rt.reloads.failed.load(Ordering::Relaxed), 1);
    assert_eq!(cluster_names(&rt), ["a"]);
}

fn routes_config(routes: &str) -> Config {
    let yaml = format!(
        "node: {{ name: unit }}\nlisteners:\n  - name: edge\n    address: 127.0.0.1:0\n    routes:\n{routes}clusters:\n  - name: a\n    endpoints: [127.0.0.1:1]\n"
    );
    match crate::config::load_str(&yaml, "unit.yaml", Path::new(".")) {
        Ok(cfg) => cfg,
        Err(e) => panic!("test config: {e}"),
    }
}

/// A live fault override follows its route across a reload: a named route
/// by its name, an unnamed one only while `<listener>/<index>` still
/// matches what it matched; a route inserted before it must not inherit it.
#[test]
fn an_override_survives_a_reload_only_on_the_same_route() {
    use super::reload::same_route;
    let before = routes_config(
        "      - { match: { prefix: /pay }, cluster: a }\n      - { name: live, match: { prefix: /live }, cluster: a }\n",
    );
    let inserted = routes_config(
        "      - { match: { prefix: /admin }, cluster: a }\n      - { match: { prefix: /pay }, cluster: a }\n      - { name: live, match: { prefix: /x }, cluster: a }\n",
    );
    assert!(same_route(&before, &before, "edge/0"));
    assert!(
        !same_route(&before, &inserted, "edge/0"),
        "edge/0 is now /admin"
    );
    assert!(
        same_route(&before, &inserted, "edge/live"),
        "a named route keeps its name"
    );
    assert!(!same_route(&before, &inserted, "edge/9"), "no such route");
    let gone = routes_config("      - { match: { prefix: /pay }, cluster: a }\n");
    assert!(
        !same_route(&before, &gone, "edge/live"),
        "a removed route loses its override"
    );
}
