//! Listener checks: names, addresses, protocol, TLS, limits.

use std::time::Duration;

use super::super::model::*;
use super::*;

const IDENTITY_FILES: &str =
    "identity: {cert: certs/orders.crt, key: certs/orders.key, trust_bundle: certs/ca.crt}\n";

/// Loads with real certificate files so `tls` is allowed.
fn load_with_identity(yaml: &str) -> Result<Config, ConfigErrors> {
    let dir = super::example::cert_dir();
    load_in(
        &format!("{IDENTITY_FILES}{yaml}"),
        dir.path(),
        &Env::default(),
    )
}

#[test]
fn duplicate_listener_names_are_refused() {
    assert_error(
        &with_listener("{name: web, address: 127.0.0.1:8001, routes: [{cluster: app}]}"),
        "listeners[1].name",
        "duplicate listener name \"web\" (also listeners[0])",
    );
}

#[test]
fn two_listeners_on_one_address_conflict() {
    assert_error(
        &with_listener("{name: api, address: 127.0.0.1:8000, routes: [{cluster: app}]}"),
        "listeners[1].address",
        "address 127.0.0.1:8000 conflicts with listeners[0] \"web\" (127.0.0.1:8000)",
    );
}

#[test]
fn wildcard_and_loopback_on_the_same_port_conflict() {
    assert_error(
        &with_listener("{name: api, address: \"0.0.0.0:8000\", routes: [{cluster: app}]}"),
        "listeners[1].address",
        "both bind port 8000",
    );
}

#[test]
fn different_ports_and_port_zero_do_not_conflict() {
    load_ok(&with_listener(
        "{name: api, address: 0.0.0.0:8001, routes: [{cluster: app}]}",
    ));
    let yaml = "listeners:\n  - {name: a, address: 127.0.0.1:0, routes: [{cluster: app}]}\n  \
                - {name: b, address: 127.0.0.1:0, routes: [{cluster: app}]}\n";
    load_ok(&format!("{yaml}{CLUSTERS}"));
}

#[test]
fn admin_address_must_not_collide_with_a_listener() {
    assert_error(
        &with_top("admin: {address: 0.0.0.0:8000}"),
        "admin.address",
        "conflicts with listeners[0] \"web\"",
    );
}

#[test]
fn listener_address_must_be_an_ip_and_port() {
    assert_error(
        &with_listener("{name: api, address: example.com:80, routes: [{cluster: app}]}"),
        "listeners[1].address",
        "invalid address \"example.com:80\"",
    );
    assert_error(
        &with_listener("{name: api, address: 127.0.0.1, routes: [{cluster: app}]}"),
        "listeners[1].address",
        "invalid address \"127.0.0.1\"",
    );
}

#[test]
fn localhost_and_ipv6_listen_addresses_are_accepted() {
    let config = load_ok(&with_listener(
        "{name: api, address: localhost:8001, routes: [{cluster: app}]}",
    ));
    assert_eq!(
        config.listeners[1].address,
        "127.0.0.1:8001".parse().unwrap()
    );
    let config = load_ok(&with_listener(
        "{name: api, address: \"[::1]:8001\", routes: [{cluster: app}]}",
    ));
    assert_eq!(config.listeners[1].address, "[::1]:8001".parse().unwrap());
}

#[test]
fn listener_name_and_address_are_required() {
    let errors = errors(&with_listener("{routes: [{cluster: app}]}"));
    assert_error_in(&errors, "listeners[1].name", "required key is missing");
    assert_error_in(&errors, "listeners[1].address", "required key is missing");
}

#[test]
fn listener_name_must_fit_in_metric_names() {
    assert_error(
        &with_listener("{name: my api, address: 127.0.0.1:8001, routes: [{cluster: app}]}"),
        "listeners[1].name",
        "invalid name \"my api\"",
    );
}

#[test]
fn unknown_protocol_suggests_the_closest() {
    assert_error(
        &with_listener(
            "{name: api, address: 127.0.0.1:8001, protocol: htp, routes: [{cluster: app}]}",
        ),
        "listeners[1].protocol",
        "invalid protocol \"htp\" (did you mean \"http\"?)",
    );
}

#[test]
fn tcp_listener_takes_a_cluster_not_routes() {
    let yaml = with_listener(
        "{name: db, address: 127.0.0.1:8001, protocol: tcp, cluster: app, routes: [{cluster: app}]}",
    );
    assert_error(&yaml, "listeners[1].routes", "a tcp listener has no routes");
    assert_error(
        &with_listener("{name: db, address: 127.0.0.1:8001, protocol: tcp}"),
        "listeners[1].cluster",
        "required key is missing",
    );
    let config = load_ok(&with_listener(
        "{name: db, address: 127.0.0.1:8001, protocol: tcp, cluster: app}",
    ));
    assert!(
        matches!(&config.listeners[1].kind, ListenerKind::Tcp { cluster, .. } if cluster == "app")
    );
}

/// A tcp listener keeps its `authz` (decided per connection), and
/// `/config_dump` shows it.
#[test]
fn a_tcp_listener_stores_its_authz() {
    let yaml = with_listener(
        "{name: db, address: 127.0.0.1:8001, protocol: tcp, cluster: app, \
         tls: {allow: ['spiffe://mesh.local/**']}, \
         authz: {mode: audit, rules: [{name: web, from: [spiffe://mesh.local/web]}]}}",
    );
    let config = load_with_identity(&yaml).expect("valid");
    let ListenerKind::Tcp {
        authz: Some(authz), ..
    } = &config.listeners[1].kind
    else {
        panic!("tcp listener with authz expected");
    };
    assert_eq!(authz.mode, crate::policy::authz::Mode::Audit);
    assert_eq!(authz.rules.len(), 1);
    let dump = serde_json::to_value(&config.listeners[1]).expect("json");
    assert_eq!(dump["authz"]["rules"][0]["name"], "web");
    let plain = load_ok(&with_listener(
        "{name: db, address: 127.0.0.1:8001, protocol: tcp, cluster: app}",
    ));
    assert!(matches!(
        &plain.listeners[1].kind,
        ListenerKind::Tcp { authz: None, .. }
    ));
}

#[test]
fn tcp_listener_cluster_must_exist() {
    assert_error(
        &with_listener("{name: db, address: 127.0.0.1:8001, protocol: tcp, cluster: ap}"),
        "listeners[1].cluster",
        "unknown cluster \"ap\" (did you mean \"app\"?)",
    );
}

#[test]
fn http_listener_takes_routes_not_a_cluster() {
    assert_error(
        &with_listener(
            "{name: api, address: 127.0.0.1:8001, cluster: app, routes: [{cluster: app}]}",
        ),
        "listeners[1].cluster",
        "an http listener sends to clusters through routes",
    );
    assert_error(
        &with_listener("{name: api, address: 127.0.0.1:8001}"),
        "listeners[1].routes",
        "an http listener needs at least one route",
    );
    assert_error(
        &with_listener("{name: api, address: 127.0.0.1:8001, routes: []}"),
        "listeners[1].routes",
        "at least one route",
    );
}

#[test]
fn tls_on_a_listener_requires_an_identity() {
    assert_error(
        &with_listener(
            "{name: api, address: 127.0.0.1:8001, tls: {mode: server}, routes: [{cluster: app}]}",
        ),
        "listeners[1].tls",
        "add an identity section",
    );
}

#[test]
fn tls_mode_is_mutual_or_server() {
    let yaml = with_listener(
        "{name: api, address: 127.0.0.1:8001, tls: {mode: mutal}, routes: [{cluster: app}]}",
    );
    let errors = load_with_identity(&yaml).unwrap_err().errors;
    assert_error_in(
        &errors,
        "listeners[1].tls.mode",
        "invalid mode \"mutal\" (did you mean \"mutual\"?)",
    );
}

#[test]
fn allow_entries_must_be_spiffe_ids_with_whole_segment_globs() {
    let yaml = with_listener(
        "{name: api, address: 127.0.0.1:8001, routes: [{cluster: app}], \
         tls: {allow: [spiffe://mesh.local/ns/*/sa/web, edge, spiffe://mesh.local/web-*]}}",
    );
    let errors = load_with_identity(&yaml).unwrap_err().errors;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_error_in(
        &errors,
        "listeners[1].tls.allow[1]",
        "invalid SPIFFE ID \"edge\": must start with spiffe://",
    );
    assert_error_in(
        &errors,
        "listeners[1].tls.allow[2]",
        "'*' may only stand for a whole path segment",
    );
}

#[test]
fn a_mutual_listener_without_allow_is_refused_with_the_spelling_for_anyone() {
    for (tls, protocol) in [
        ("{}", "routes: [{cluster: app}]"),
        ("{mode: mutual}", "routes: [{cluster: app}]"),
        ("{allow: []}", "routes: [{cluster: app}]"),
        ("{mode: mutual, allow: []}", "protocol: tcp, cluster: app"),
    ] {
        let yaml = with_listener(&format!(
            "{{name: api, address: 127.0.0.1:8001, tls: {tls}, {protocol}}}"
        ));
        let errors = load_with_identity(&yaml).unwrap_err().errors;
        assert_eq!(errors.len(), 1, "{tls}: {errors:?}");
        assert_error_in(&errors, "listeners[1].tls.allow", "would admit nobody");
        assert_error_in(
            &errors,
            "listeners[1].tls.allow",
            "spiffe://<trust-domain>/** for any workload of the trust domain",
        );
    }
}

#[test]
fn allow_takes_a_final_double_star_only() {
    let yaml = with_listener(
        "{name: api, address: 127.0.0.1:8001, routes: [{cluster: app}], \
         tls: {allow: [spiffe://mesh.local/ns/*/sa/**, spiffe://mesh.local/**/web, spiffe://other.td/**]}}",
    );
    let errors = load_with_identity(&yaml).unwrap_err().errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_error_in(
        &errors,
        "listeners[1].tls.allow[1]",
        "'**' (the rest of the path) may only be the last path segment",
    );
}

#[test]
fn allow_needs_mutual_tls() {
    let yaml = with_listener(
        "{name: api, address: 127.0.0.1:8001, routes: [{cluster: app}], \
         tls: {mode: server, allow: [spiffe://mesh.local/web]}}",
    );
    let errors = load_with_identity(&yaml).unwrap_err().errors;
    assert_error_in(&errors, "listeners[1].tls.allow", "use mode: mutual");
}

#[test]
fn tls_defaults_to_mutual_and_mutual_listeners_trust_forwarded_headers() {
    let yaml = with_listener(
        "{name: api, address: 127.0.0.1:8001, tls: {allow: [spiffe://mesh.local/**]}, routes: [{cluster: app}]}",
    );
    let config = load_with_identity(&yaml).unwrap();
    let api = &config.listeners[1];
    assert_eq!(api.tls.as_ref().unwrap().mode, TlsMode::Mutual);
    let allow: Vec<&str> = api
        .tls
        .as_ref()
        .unwrap()
        .allow
        .iter()
        .map(|p| p.as_str())
        .collect();
    assert_eq!(allow, ["spiffe://mesh.local/**"]);
    assert!(api.trust_forwarded);
    assert!(
        !config.listeners[0].trust_forwarded,
        "plaintext listeners do not trust x-forwarded-*"
    );

    let yaml = with_listener(
        "{name: api, address: 127.0.0.1:8001, tls: {allow: [spiffe://mesh.local/web]}, trust_forwarded: false, routes: [{cluster: app}]}",
    );
    assert!(!load_with_identity(&yaml).unwrap().listeners[1].trust_forwarded);
    let yaml = with_listener(
        "{name: api, address: 127.0.0.1:8001, trust_forwarded: true, routes: [{cluster: app}]}",
    );
    assert!(load_ok(&yaml).listeners[1].trust_forwarded);
}

#[test]
fn listener_limits_override_top_level_limits_per_key() {
    let yaml = format!(
        "{}limits: {{max_uri_kb: 8, header_read_timeout: 5s}}\n",
        with_listener(
            "{name: api, address: 127.0.0.1:8001, routes: [{cluster: app}], limits: {max_uri_kb: 4, buffer_kb: 64}}"
        )
    );
    let config = load_ok(&yaml);
    assert_eq!(config.limits.max_uri_kb, 8);
    assert_eq!(config.limits.header_read_timeout, Duration::from_secs(5));
    let web = &config.listeners[0].limits;
    assert_eq!((web.max_uri_kb, web.buffer_kb), (8, 32));
    let api = &config.listeners[1].limits;
    assert_eq!((api.max_uri_kb, api.buffer_kb), (4, 64));
    assert_eq!(api.header_read_timeout, Duration::from_secs(5));
    assert_eq!(api.max_request_headers_count, 100);
}

#[test]
fn limits_refuse_zero_except_the_body_size() {
    let config = load_ok(&with_top("limits: {max_request_body_mb: 0}"));
    assert_eq!(config.limits.max_request_body_mb, 0);
    assert_error(
        &with_top("limits: {max_uri_kb: 0}"),
        "limits.max_uri_kb",
        "0 is too small: the minimum is 1",
    );
    assert_error(
        &with_top("limits: {idle_timeout: 0s}"),
        "limits.idle_timeout",
        "must be greater than 0",
    );
    assert_error(
        &with_listener(
            "{name: api, address: 127.0.0.1:8001, routes: [{cluster: app}], limits: {max_connections: 0}}",
        ),
        "listeners[1].limits.max_connections",
        "too small",
    );
}

#[test]
fn limits_durations_are_parsed() {
    assert_error(
        &with_top("limits: {header_read_timeout: ten seconds}"),
        "limits.header_read_timeout",
        "invalid duration \"ten seconds\"",
    );
    let config = load_ok(&with_top(
        "limits: {stream_idle_timeout: 5m, idle_timeout: 1h}",
    ));
    assert_eq!(config.limits.stream_idle_timeout, Duration::from_secs(300));
    assert_eq!(config.limits.idle_timeout, Duration::from_secs(3600));
}

#[test]
fn limits_default_when_omitted() {
    let config = load_ok(&with_route("{cluster: app}"));
    assert_eq!(config.limits, LimitsSpec::default());
    assert_eq!(config.listeners[0].limits, LimitsSpec::default());
    assert_eq!(config.limits.max_request_headers_kb, 60);
    assert_eq!(config.limits.header_read_timeout, Duration::from_secs(10));
}

#[test]
fn headers_with_underscores_defaults_to_drop_and_is_set_per_listener() {
    let yaml = format!(
        "{}limits: {{headers_with_underscores: reject}}\n",
        with_listener(
            "{name: api, address: 127.0.0.1:8001, routes: [{cluster: app}], limits: {headers_with_underscores: allow}}"
        )
    );
    let config = load_ok(&yaml);
    assert_eq!(
        config.limits.headers_with_underscores,
        UnderscoreAction::Reject
    );
    assert_eq!(
        config.listeners[0].limits.headers_with_underscores,
        UnderscoreAction::Reject
    );
    assert_eq!(
        config.listeners[1].limits.headers_with_underscores,
        UnderscoreAction::Allow
    );
    let plain = load_ok(&with_top(""));
    assert_eq!(
        plain.limits.headers_with_underscores,
        UnderscoreAction::Drop
    );
    assert_error(
        &with_listener(
            "{name: api, address: 127.0.0.1:8001, routes: [{cluster: app}], limits: {headers_with_underscores: strip}}",
        ),
        "listeners[1].limits.headers_with_underscores",
        "invalid value \"strip\": expected drop, reject or allow",
    );
}
