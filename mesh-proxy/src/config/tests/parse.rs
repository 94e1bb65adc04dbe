//! Parse-level problems: syntax, types, unknown keys, files.

use super::*;

#[test]
fn unknown_top_level_key_suggests_the_real_one() {
    let yaml = format!("listners: []\n{}", with_route("{cluster: app}"));
    let errors = errors(&yaml);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "listners");
    assert_eq!(
        errors[0].message,
        "unknown key \"listners\" (did you mean \"listeners\"?)"
    );
    assert_eq!(errors[0].line_col, Some((1, 1)));
}

#[test]
fn unknown_nested_key_in_a_route_has_path_suggestion_and_location() {
    let yaml = "\
listeners:
  - name: web
    address: 127.0.0.1:8000
    routes:
      - cluster: app
        timout: 2s
clusters:
  - name: app
    endpoints: [127.0.0.1:9000]
";
    let err = load(yaml).unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!(
        err.to_string(),
        "proxy.yaml:6:9: listeners[0].routes[0].timout: unknown key \"timout\" \
         (did you mean \"timeout\"?)"
    );
}

#[test]
fn unknown_keys_are_reported_at_every_depth_with_their_own_suggestions() {
    let yaml = "\
identity: {ca: {urll: x}}
listeners:
  - name: web
    adress: 127.0.0.1:8000
    tls: {allw: []}
    routes:
      - match: {prefx: /}
        retry: {backof: {bse: 1s}, budget: {ratoi: 0.1}}
        weighted: [{cluster: app, wieght: 1}]
        rate_limit: {brust: 1}
clusters:
  - name: app
    endpoints: [127.0.0.1:9000]
    tls: {pear: x}
    health_check: {intervall: 1s}
access_log: [{fromat: json}]
";
    let errors = errors(yaml);
    for (path, suggestion) in [
        ("identity.ca.urll", "url"),
        ("listeners[0].adress", "address"),
        ("listeners[0].tls.allw", "allow"),
        ("listeners[0].routes[0].match.prefx", "prefix"),
        ("listeners[0].routes[0].retry.backof", "backoff"),
        ("listeners[0].routes[0].retry.budget.ratoi", "ratio"),
        ("listeners[0].routes[0].weighted[0].wieght", "weight"),
        ("listeners[0].routes[0].rate_limit.brust", "burst"),
        ("clusters[0].tls.pear", "peer"),
        ("clusters[0].health_check.intervall", "interval"),
        ("access_log[0].fromat", "format"),
    ] {
        assert_error_in(&errors, path, &format!("(did you mean \"{suggestion}\"?)"));
    }
}

#[test]
fn unknown_key_without_a_near_miss_has_no_suggestion() {
    let errors = errors(&with_top("node: {colour: blue}"));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "node.colour");
    assert_eq!(errors[0].message, "unknown key \"colour\"");
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let errors = errors("node:\n  name: a\n service: b\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line_col, Some((3, 2)));
    assert!(
        errors[0].message.starts_with("invalid yaml: "),
        "{:?}",
        errors[0]
    );
    let shown = ConfigErrors::new("bad.yaml", errors).to_string();
    assert!(shown.starts_with("bad.yaml:3:2: invalid yaml: "), "{shown}");
}

#[test]
fn duplicate_yaml_key_names_its_mapping() {
    let errors = errors("node:\n  name: a\n  name: b\n");
    assert_eq!(errors[0].path, "node");
    assert!(
        errors[0]
            .message
            .contains("duplicate entry with key \"name\"")
    );
    assert_eq!(errors[0].line_col, Some((2, 3)));
}

#[test]
fn wrong_value_type_names_the_key_and_location() {
    let yaml = with_route("{cluster: app, retry: {attempts: two}}");
    let errors = errors(&yaml);
    let last = errors.last().unwrap();
    assert_eq!(last.path, "listeners[0].routes[0].retry.attempts");
    assert_eq!(
        last.message,
        "invalid type: string \"two\", expected a whole number from 0 to 4294967295"
    );
    assert_eq!(last.line_col, Some((5, 42)));
}

#[test]
fn a_type_error_still_reports_unknown_keys_seen_before_it() {
    let errors = errors("listners: []\nlimits: {max_uri_kb: -1}\n");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].path, "listners");
    assert_eq!(errors[1].path, "limits.max_uri_kb");
}

#[test]
fn a_non_mapping_document_is_refused() {
    let errors = errors("just words\n");
    assert_eq!(errors[0].path, "");
    assert_eq!(
        errors[0].message,
        "invalid type: string \"just words\", expected a mapping"
    );
}

#[test]
fn several_documents_are_refused() {
    assert_error(
        "node: {}\n---\nnode: {}\n",
        "",
        "more than one yaml document",
    );
    // Located at the second document (found by the property tests: the
    // error had neither a key path nor a line:column).
    for (yaml, line) in [
        ("node: {}\n---\nnode: {}\n", 2),
        ("# c\n---\nnode: {}\n---\nnode: {}\n", 4),
        ("node: {}\n...\n---\nnode: {}\n", 2),
    ] {
        assert_eq!(errors(yaml)[0].line_col, Some((line, 1)), "{yaml:?}");
    }
}

#[test]
fn aliases_expanding_beyond_the_limit_are_refused_at_the_first_alias() {
    let mut yaml = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        yaml.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    yaml.push_str("listeners: *i\n");
    let errors = errors(&yaml);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("repetition limit"), "{errors:?}");
    assert_eq!(errors[0].line_col, Some((2, 8)));
}

#[test]
fn an_empty_key_is_named_in_the_path() {
    let errors = errors("'': 1\n");
    assert_eq!(errors[0].path, "\"\"");
    assert_eq!(errors[0].message, "unknown key \"\"");
}

#[test]
fn an_empty_file_is_an_empty_config() {
    for yaml in ["", "# nothing yet\n", "---\n"] {
        let config = load_ok(yaml);
        assert!(config.listeners.is_empty() && config.clusters.is_empty());
    }
}

#[test]
fn load_file_reports_an_unreadable_file_with_the_os_reason() {
    let err = super::super::load_file(Path::new("/nonexistent/proxy.yaml")).unwrap_err();
    assert_eq!(err.source, "/nonexistent/proxy.yaml");
    assert_eq!(err.errors.len(), 1);
    assert!(
        err.errors[0]
            .message
            .starts_with("cannot read config file: ")
    );
    assert!(
        err.errors[0].message.contains("No such file or directory"),
        "{err}"
    );
}

#[test]
fn load_file_resolves_paths_against_the_file_folder() {
    let dir = super::example::cert_dir();
    let yaml = "identity: {cert: certs/orders.crt, key: certs/orders.key, trust_bundle: certs/ca.crt}\n\
                access_log: [{path: logs/access.log}]\n";
    let file = dir.path().join("proxy.yaml");
    std::fs::write(&file, yaml).unwrap();
    let config = super::super::load_file(&file).unwrap();
    assert_eq!(config.base_dir, dir.path());
    assert_eq!(
        config.access_log[0].path,
        super::super::LogTarget::File(dir.path().join("logs/access.log"))
    );
}

#[test]
fn five_different_mistakes_are_all_reported() {
    let yaml = "\
listners: []
listeners:
  - name: web
    address: 127.0.0.1:8000
    routes:
      - cluster: paymnts
        timeout: 5 parsecs
  - name: api
    address: 0.0.0.0:8000
    routes: [{cluster: app}]
clusters:
  - name: app
    endpoints: [127.0.0.1:9000]
    lb: least_requests
  - name: payments
    endpoints: [127.0.0.1:9001]
";
    let err = load(yaml).unwrap_err();
    let errors = &err.errors;
    assert_eq!(errors.len(), 5, "{err}");
    assert_error_in(errors, "listners", "did you mean \"listeners\"?");
    assert_error_in(
        errors,
        "listeners[0].routes[0].cluster",
        "unknown cluster \"paymnts\" (did you mean \"payments\"?)",
    );
    assert_error_in(
        errors,
        "listeners[0].routes[0].timeout",
        "invalid duration \"5 parsecs\"",
    );
    assert_error_in(
        errors,
        "listeners[1].address",
        "conflicts with listeners[0] \"web\"",
    );
    assert_error_in(
        errors,
        "clusters[0].lb",
        "invalid lb \"least_requests\" (did you mean \"least_request\"?)",
    );
}
