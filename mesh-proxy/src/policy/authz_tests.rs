use std::path::Path;

use http::HeaderMap;

use super::*;
use crate::config::validate::Ctx;

fn id(text: &str) -> SpiffeId {
    text.parse().expect("a SPIFFE ID")
}

/// Validates `authz:` given as YAML; the errors as `path: message` lines.
fn load(yaml: &str, inherited: Option<&AuthzSpec>) -> Result<AuthzSpec, Vec<String>> {
    let raw: AuthzConfig = serde_yaml::from_str(yaml).expect("yaml");
    let mut cx = Ctx {
        errors: Vec::new(),
        base_dir: Path::new("."),
    };
    let spec = validate(&mut cx, "listeners[0].authz", raw, inherited);
    match (spec, cx.errors.is_empty()) {
        (Some(spec), true) => Ok(spec),
        _ => Err(cx.errors.iter().map(|e| e.to_string()).collect()),
    }
}

const POLICY: &str = "
rules:
  - name: web-reads
    from: [spiffe://mesh.local/web]
    methods: [GET, HEAD]
    paths: [/api/*, /healthz]
  - name: edge-all
    from: [spiffe://mesh.local/ns/*/sa/edge]
  - name: tenant
    from: ['spiffe://mesh.local/team/**']
    headers: { x-tenant: acme }
  - name: probes
    from: [unauthenticated]
    paths: [/healthz]
";

fn decide(
    p: &AuthzSpec,
    who: Option<&str>,
    method: Method,
    path: &str,
    h: &HeaderMap,
) -> (bool, Option<String>) {
    let caller = who.map(id);
    let d = p.decide(caller.as_ref(), &method, path, h);
    (d.allowed, d.rule.map(|r| r.to_string()))
}

#[test]
fn the_first_matching_rule_allows_and_nothing_else_does() {
    let p = load(POLICY, None).expect("valid");
    let none = HeaderMap::new();
    let web = Some("spiffe://mesh.local/web");
    let allow = |r: &str| (true, Some(r.to_owned()));
    assert_eq!(
        decide(&p, web, Method::GET, "/api/orders", &none),
        allow("web-reads")
    );
    assert_eq!(
        decide(&p, web, Method::HEAD, "/healthz", &none),
        allow("web-reads")
    );
    assert_eq!(
        decide(&p, web, Method::POST, "/api/orders", &none),
        (false, None)
    );
    assert_eq!(
        decide(&p, web, Method::GET, "/api", &none),
        (false, None),
        "/api/* is under /api/ only"
    );
    assert_eq!(
        decide(&p, web, Method::GET, "/healthz/x", &none),
        (false, None),
        "exact path"
    );
    let edge = Some("spiffe://mesh.local/ns/prod/sa/edge");
    assert_eq!(
        decide(&p, edge, Method::DELETE, "/anything", &none),
        allow("edge-all")
    );
    let deep = Some("spiffe://mesh.local/ns/a/b/sa/edge");
    assert_eq!(
        decide(&p, deep, Method::GET, "/x", &none),
        (false, None),
        "'*' is one segment"
    );
    let team = Some("spiffe://mesh.local/team/a/b");
    let mut acme = HeaderMap::new();
    acme.insert("x-tenant", HeaderValue::from_static("acme"));
    assert_eq!(decide(&p, team, Method::GET, "/x", &acme), allow("tenant"));
    assert_eq!(
        decide(&p, team, Method::GET, "/x", &none),
        (false, None),
        "header required"
    );
    assert_eq!(
        decide(&p, None, Method::GET, "/healthz", &none),
        allow("probes")
    );
    assert_eq!(
        decide(&p, None, Method::GET, "/api/orders", &none),
        (false, None)
    );
    let other_domain = Some("spiffe://other.local/web");
    assert_eq!(
        decide(&p, other_domain, Method::GET, "/api/orders", &none),
        (false, None)
    );
}

#[test]
fn default_allow_lets_unmatched_requests_through_without_a_rule() {
    let p = load(
        "default: allow\nrules: [ { name: r, from: [spiffe://mesh.local/web], paths: [/x] } ]",
        None,
    )
    .expect("valid");
    assert!(p.default_allow);
    let none = HeaderMap::new();
    assert_eq!(decide(&p, None, Method::GET, "/y", &none), (true, None));
}

#[test]
fn a_route_policy_inherits_mode_and_default_unless_it_says_them() {
    let listener = load("mode: audit\ndefault: allow\nrules: []", None).expect("valid");
    let route = load(
        "rules: [ { name: ops, from: [spiffe://mesh.local/ops] } ]",
        Some(&listener),
    )
    .expect("valid");
    assert_eq!((route.mode, route.default_allow), (Mode::Audit, true));
    let strict = load("mode: enforce\ndefault: deny\nrules: []", Some(&listener)).expect("valid");
    assert_eq!((strict.mode, strict.default_allow), (Mode::Enforce, false));
    let fresh = load("rules: []", None).expect("valid");
    assert_eq!(
        (fresh.mode, fresh.default_allow),
        (Mode::Enforce, false),
        "deny once authz is present"
    );
}

#[test]
fn bad_policies_are_named_by_key_path() {
    let cases = [
        ("mode: loud\nrules: []", "listeners[0].authz.mode"),
        ("default: maybe\nrules: []", "listeners[0].authz.default"),
        (
            "rules: [ { from: [spiffe://mesh.local/web] } ]",
            "listeners[0].authz.rules[0].name",
        ),
        ("rules: [ { name: a } ]", "listeners[0].authz.rules[0].from"),
        (
            "rules: [ { name: a, from: [] } ]",
            "listeners[0].authz.rules[0].from",
        ),
        (
            "rules: [ { name: a, from: [web] } ]",
            "listeners[0].authz.rules[0].from[0]",
        ),
        (
            "rules: [ { name: a, from: [unauthenticated], methods: ['G T'] } ]",
            "listeners[0].authz.rules[0].methods[0]",
        ),
        (
            "rules: [ { name: a, from: [unauthenticated], paths: [api] } ]",
            "listeners[0].authz.rules[0].paths[0]",
        ),
        (
            "rules: [ { name: a, from: [unauthenticated], paths: ['/a/*/b'] } ]",
            "listeners[0].authz.rules[0].paths[0]",
        ),
        (
            "rules: [ { name: a, from: [unauthenticated], headers: { 'bad name': x } } ]",
            "listeners[0].authz.rules[0].headers.bad name",
        ),
        (
            "rules: [ { name: a, from: [unauthenticated] }, { name: a, from: [unauthenticated] } ]",
            "listeners[0].authz.rules[1].name",
        ),
    ];
    for (yaml, path) in cases {
        let errors = load(yaml, None).expect_err(yaml);
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "{yaml}: {errors:?}"
        );
    }
}

fn view<'a>(
    peer: Option<&'a SpiffeId>,
    method: &'a Method,
    path: &'a str,
    headers: &'a HeaderMap,
) -> RequestView<'a> {
    RequestView {
        route: "ingress/main",
        method,
        path,
        headers,
        peer,
    }
}

#[test]
fn an_enforced_denial_is_403_uaex_naming_the_caller_and_the_request_not_the_rule() {
    let authz = Authz::new(load(POLICY, None).expect("valid"));
    let h = HeaderMap::new();
    let web = id("spiffe://mesh.local/web");
    let denied = authz
        .check(
            &view(Some(&web), &Method::POST, "/api/orders", &h),
            "ingress/main",
        )
        .expect_err("POST is not a read");
    assert_eq!(denied.flag(), crate::router::ResponseFlag::Unauthorized);
    assert_eq!(denied.status(), http::StatusCode::FORBIDDEN);
    let body = denied.to_string();
    assert!(
        body.contains("spiffe://mesh.local/web may not POST /api/orders"),
        "{body}"
    );
    assert!(
        !body.contains("web-reads"),
        "the rules stay private: {body}"
    );
    let anon = authz
        .check(&view(None, &Method::GET, "/api/orders", &h), "ingress/main")
        .expect_err("no certificate");
    assert!(
        anon.to_string()
            .contains("unauthenticated may not GET /api/orders")
    );
    let allowed = authz
        .check(
            &view(Some(&web), &Method::GET, "/api/orders", &h),
            "ingress/main",
        )
        .expect("a read");
    assert_eq!(allowed.rule.as_deref(), Some("web-reads"));
    let mut counted = Vec::new();
    authz.counters(&mut |name, n| counted.push((name.to_owned(), n)));
    assert!(
        counted.contains(&("authz.allowed.web-reads".to_owned(), 1)),
        "{counted:?}"
    );
    assert!(
        counted.contains(&("authz.denied".to_owned(), 2)),
        "{counted:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn audit_mode_lets_a_would_be_denial_through_and_counts_it() {
    let authz = Authz::new(
        load(
            "mode: audit\nrules: [ { name: ops, from: [spiffe://mesh.local/ops] } ]",
            None,
        )
        .expect("valid"),
    );
    let h = HeaderMap::new();
    let web = id("spiffe://mesh.local/web");
    for _ in 0..3 {
        let d = authz
            .check(&view(Some(&web), &Method::DELETE, "/x", &h), "r")
            .expect("audit lets it through");
        assert!(!d.allowed && d.rule.is_none());
    }
    let mut counted = Vec::new();
    authz.counters(&mut |name, n| counted.push((name.to_owned(), n)));
    assert!(
        counted.contains(&("authz.would_deny".to_owned(), 3)),
        "{counted:?}"
    );
    assert!(
        counted.contains(&("authz.denied".to_owned(), 0)),
        "{counted:?}"
    );
}

/// The errors of a whole config with `listener` as its only listener.
fn listener_errors(listener: &str) -> String {
    let yaml = format!(
        "node: {{ name: t }}\nidentity: {{ cert: /nonexistent.crt, key: /nonexistent.key, trust_bundle: /nonexistent.pem }}\nlisteners:\n{listener}clusters:\n  - {{ name: app, endpoints: [127.0.0.1:1] }}\n"
    );
    match crate::config::load_str(&yaml, "t.yaml", Path::new(".")) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rules_a_listener_could_never_enforce_are_validation_errors() {
    let tcp = "  - name: raw\n    address: 127.0.0.1:0\n    protocol: tcp\n    cluster: app\n    tls: { mode: mutual, allow: ['spiffe://mesh.local/**'] }\n    authz: { rules: [ { name: r, from: [spiffe://mesh.local/web], methods: [GET], paths: [/x], headers: { a: b } } ] }\n";
    let e = listener_errors(tcp);
    for key in ["methods", "paths", "headers"] {
        let at = format!("listeners[0].authz.rules[0].{key}");
        assert!(e.contains(&at) && e.contains("tcp listener"), "{key}: {e}");
    }
    let plain = "  - name: http\n    address: 127.0.0.1:0\n    authz: { rules: [ { name: r, from: [spiffe://mesh.local/web, unauthenticated] } ] }\n    routes: [ { match: { prefix: / }, cluster: app } ]\n";
    let e = listener_errors(plain);
    assert!(
        e.contains("listeners[0].authz.rules[0].from[0]") && e.contains("no mutual TLS"),
        "{e}"
    );
    assert!(!e.contains("from[1]"), "unauthenticated is fine there: {e}");
    let outside = "  - name: http\n    address: 127.0.0.1:0\n    tls: { mode: mutual, allow: [spiffe://mesh.local/web] }\n    authz: { rules: [ { name: r, from: [spiffe://mesh.local/web, spiffe://mesh.local/ops, 'spiffe://other.local/**'] } ] }\n    routes: [ { match: { prefix: / }, cluster: app } ]\n";
    let e = listener_errors(outside);
    assert!(!e.contains("from[0]"), "web is allowed: {e}");
    assert!(
        e.contains("listeners[0].authz.rules[0].from[1]") && e.contains("tls.allow refuses it"),
        "{e}"
    );
    assert!(
        e.contains("listeners[0].authz.rules[0].from[2]")
            && e.contains("no identity of its trust domain"),
        "{e}"
    );
}
