//! Route names (SPEC §6): optional, `<listener>/<index>` by default, unique
//! per listener, restricted to what fits metric names and `route=` queries.

use super::super::model::*;
use super::*;

/// Listener `edge` with `routes` (flow mappings, one per entry).
fn edge(routes: &[&str]) -> String {
    let routes: String = routes.iter().map(|r| format!("      - {r}\n")).collect();
    format!(
        "listeners:\n  - name: edge\n    address: 127.0.0.1:8000\n    routes:\n{routes}{CLUSTERS}"
    )
}

fn names(yaml: &str) -> Vec<(String, String)> {
    let config = load_ok(yaml);
    let ListenerKind::Http { routes } = &config.listeners[0].kind else {
        panic!("http listener expected");
    };
    routes
        .iter()
        .map(|r| (r.name.clone(), r.id.clone()))
        .collect()
}

fn pair(name: &str, id: &str) -> (String, String) {
    (name.to_owned(), id.to_owned())
}

#[test]
fn unnamed_routes_are_listener_slash_index() {
    let yaml = edge(&[
        "{name: live, match: {prefix: /live/}, cluster: app}",
        "{match: {prefix: /a/}, cluster: app}",
        "{name: v1.api_x-2, match: {prefix: /b/}, cluster: app}",
        "{match: {prefix: /}, cluster: app}",
    ]);
    assert_eq!(
        names(&yaml),
        [
            pair("live", "edge/live"),
            pair("edge/1", "edge/1"),
            pair("v1.api_x-2", "edge/v1.api_x-2"),
            pair("edge/3", "edge/3"),
        ]
    );
}

#[test]
fn duplicate_route_names_in_one_listener_are_refused() {
    let yaml = edge(&[
        "{name: abort20, match: {prefix: /a/}, cluster: app}",
        "{name: abort20, match: {prefix: /b/}, cluster: app}",
    ]);
    assert_error(
        &yaml,
        "listeners[0].routes[1].name",
        "duplicate route name \"abort20\" (also listeners[0].routes[0])",
    );
}

#[test]
fn the_same_route_name_in_two_listeners_is_fine() {
    let yaml = format!(
        "listeners:\n\
         \x20 - {{name: edge, address: 127.0.0.1:8000, routes: [{{name: r, cluster: app}}]}}\n\
         \x20 - {{name: other, address: 127.0.0.1:8001, routes: [{{name: r, cluster: app}}]}}\n{CLUSTERS}"
    );
    let config = load_ok(&yaml);
    let ids: Vec<&str> = config
        .listeners
        .iter()
        .flat_map(|l| match &l.kind {
            ListenerKind::Http { routes } => routes.iter().map(|r| r.id.as_str()).collect(),
            ListenerKind::Tcp { .. } => Vec::new(),
        })
        .collect();
    assert_eq!(ids, ["edge/r", "other/r"]);
}

#[test]
fn route_names_are_letters_digits_dash_underscore_dot() {
    // Digits alone would take an unnamed route's `<listener>/<index>`.
    for bad in ["\"a/b\"", "\"a b\"", "\"\"", "\"é\"", "\"a=b\"", "\"3\""] {
        let yaml = edge(&[&format!("{{name: {bad}, cluster: app}}")]);
        assert_error(
            &yaml,
            "listeners[0].routes[0].name",
            "use letters, digits, '-', '_' and '.'",
        );
    }
}
