//! Route checks: match, action, timeout, retry, headers, rate limit.

use std::time::Duration;

use http::{HeaderName, Method, StatusCode};

use super::super::model::*;
use super::*;

const R: &str = "listeners[0].routes[0]";

fn route_of(config: &Config) -> &RouteSpec {
    match &config.listeners[0].kind {
        ListenerKind::Http { routes } => &routes[0],
        ListenerKind::Tcp { .. } => panic!("http listener expected"),
    }
}

fn route_ok(route: &str) -> RouteSpec {
    route_of(&load_ok(&with_route(route))).clone()
}

#[track_caller]
fn route_error(route: &str, key: &str, part: &str) {
    let path = if key.is_empty() {
        R.to_owned()
    } else {
        format!("{R}.{key}")
    };
    assert_error(&with_route(route), &path, part);
}

#[test]
fn unknown_route_cluster_suggests_the_closest() {
    route_error(
        "{cluster: paymnts}",
        "cluster",
        "unknown cluster \"paymnts\" (did you mean \"payments\"?)",
    );
}

#[test]
fn weighted_clusters_must_exist() {
    route_error(
        "{weighted: [{cluster: app, weight: 1}, {cluster: paymens, weight: 1}]}",
        "weighted[1].cluster",
        "unknown cluster \"paymens\" (did you mean \"payments\"?)",
    );
}

#[test]
fn weighted_must_not_be_empty_or_weigh_nothing() {
    route_error("{weighted: []}", "weighted", "needs at least one");
    route_error(
        "{weighted: [{cluster: app, weight: 0}, {cluster: payments, weight: 0}]}",
        "weighted",
        "the total weight is 0",
    );
    route_error(
        "{weighted: [{cluster: app}]}",
        "weighted[0].weight",
        "required key is missing",
    );
}

#[test]
fn weighted_keeps_clusters_and_weights() {
    let route =
        route_ok("{weighted: [{cluster: app, weight: 90}, {cluster: payments, weight: 10}]}");
    let RouteAction::Weighted(split) = &route.action else {
        panic!("weighted expected");
    };
    assert_eq!(split.len(), 2);
    assert_eq!((split[0].cluster.as_str(), split[0].weight), ("app", 90));
    assert_eq!(
        (split[1].cluster.as_str(), split[1].weight),
        ("payments", 10)
    );
}

#[test]
fn a_route_has_exactly_one_action() {
    route_error(
        "{cluster: app, weighted: [{cluster: app, weight: 1}]}",
        "",
        "give only one of cluster, weighted, direct_response (found cluster and weighted)",
    );
    route_error(
        "{cluster: app, direct_response: {status: 200}}",
        "",
        "(found cluster and direct_response)",
    );
    route_error(
        "{timeout: 1s}",
        "",
        "a route needs one of cluster, weighted, direct_response",
    );
}

#[test]
fn match_takes_one_of_prefix_path_regex() {
    route_error(
        "{match: {prefix: /a, path: /b}, cluster: app}",
        "match",
        "give only one of prefix, path, regex (found prefix and path)",
    );
}

#[test]
fn no_path_match_means_prefix_slash() {
    let route = route_ok("{match: {host: x}, cluster: app}");
    assert!(matches!(&route.matcher.path, PathMatch::Prefix(p) if p == "/"));
    let route = route_ok("{cluster: app}");
    assert!(matches!(&route.matcher.path, PathMatch::Prefix(p) if p == "/"));
    assert_eq!(route.matcher.host, None);
}

#[test]
fn prefix_and_path_must_start_with_a_slash() {
    route_error(
        "{match: {prefix: api}, cluster: app}",
        "match.prefix",
        "invalid path \"api\": must start with /",
    );
    route_error(
        "{match: {path: healthz}, cluster: app}",
        "match.path",
        "must start with /",
    );
}

#[test]
fn invalid_regex_is_reported() {
    route_error(
        "{match: {regex: \"/api/(v1\"}, cluster: app}",
        "match.regex",
        "invalid regex \"/api/(v1\"",
    );
}

#[test]
fn regex_must_match_the_whole_path() {
    let route = route_ok("{match: {regex: \"/api/v[0-9]+\"}, cluster: app}");
    let PathMatch::Regex(re) = &route.matcher.path else {
        panic!("regex expected");
    };
    assert!(re.is_match("/api/v2"));
    assert!(!re.is_match("/api/v2/users"));
    assert!(!re.is_match("/x/api/v2"));
}

#[test]
fn host_is_exact_or_suffix_lowercased_without_port() {
    let route = route_ok("{match: {host: \"Payments:8080\"}, cluster: app}");
    assert_eq!(
        route.matcher.host,
        Some(HostMatch::Exact("payments".into()))
    );
    let route = route_ok("{match: {host: \"*.Example.com\"}, cluster: app}");
    assert_eq!(
        route.matcher.host,
        Some(HostMatch::Suffix(".example.com".into()))
    );
    route_error(
        "{match: {host: \"api.*.com\"}, cluster: app}",
        "match.host",
        "the only wildcard allowed is a leading \"*.\"",
    );
}

#[test]
fn header_names_and_values_must_be_valid() {
    route_error(
        "{match: {headers: {\"x bad\": v}}, cluster: app}",
        "match.headers.x bad",
        "invalid header name \"x bad\"",
    );
    route_error(
        "{match: {headers: {x-ok: \"a\\nb\"}}, cluster: app}",
        "match.headers.x-ok",
        "invalid header value \"a\\nb\"",
    );
    route_error(
        "{request_headers: {add: {\"x:y\": 1}}, cluster: app}",
        "request_headers.add.x:y",
        "invalid header name",
    );
    route_error(
        "{response_headers: {remove: [ok, \"n o\"]}, cluster: app}",
        "response_headers.remove[1]",
        "invalid header name \"n o\"",
    );
}

#[test]
fn header_values_may_be_unquoted_scalars() {
    let route = route_ok("{match: {headers: {X-Canary: true, x-n: 3}}, cluster: app}");
    let names: Vec<&str> = route
        .matcher
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let values: Vec<&[u8]> = route
        .matcher
        .headers
        .iter()
        .map(|(_, v)| v.as_bytes())
        .collect();
    assert_eq!(names, ["x-canary", "x-n"]);
    assert_eq!(values, [&b"true"[..], b"3"]);
}

#[test]
fn methods_are_uppercased_tokens() {
    let route = route_ok("{match: {methods: [get, PURGE]}, cluster: app}");
    assert_eq!(route.matcher.methods[0], Method::GET);
    assert_eq!(route.matcher.methods[1].as_str(), "PURGE");
    route_error(
        "{match: {methods: [GET, \"PO ST\"]}, cluster: app}",
        "match.methods[1]",
        "invalid method \"PO ST\"",
    );
}

#[test]
fn direct_response_status_is_100_to_599_and_body_defaults_empty() {
    route_error(
        "{direct_response: {status: 600}}",
        "direct_response.status",
        "invalid status code 600",
    );
    route_error(
        "{direct_response: {status: 99}}",
        "direct_response.status",
        "expected 100-599",
    );
    route_error(
        "{direct_response: {body: x}}",
        "direct_response.status",
        "required key is missing",
    );
    let route = route_ok("{direct_response: {status: 204}}");
    assert!(
        matches!(&route.action, RouteAction::Direct { status, body } if *status == StatusCode::NO_CONTENT && body.is_empty())
    );
}

#[test]
fn timeout_is_a_duration_defaulting_to_15s_and_zero_means_none() {
    route_error(
        "{cluster: app, timeout: 5 parsecs}",
        "timeout",
        "invalid duration \"5 parsecs\": ",
    );
    assert_eq!(
        route_ok("{cluster: app}").timeout,
        Some(Duration::from_secs(15))
    );
    assert_eq!(route_ok("{cluster: app, timeout: 0}").timeout, None);
    assert_eq!(
        route_ok("{cluster: app, timeout: 1m30s}").timeout,
        Some(Duration::from_secs(90))
    );
}

#[test]
fn retry_conditions_are_known_words() {
    route_error(
        "{cluster: app, retry: {on: [5xx, connect_failure]}}",
        "retry.on[1]",
        "invalid retry condition \"connect_failure\" (did you mean \"connect-failure\"?)",
    );
}

#[test]
fn retriable_status_codes_go_with_their_condition() {
    let route = route_ok(
        "{cluster: app, retry: {on: [retriable-status-codes], retriable_status_codes: [503, 429]}}",
    );
    let retry = route.retry.unwrap();
    assert_eq!(
        retry.retriable_status_codes,
        [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(retry.on, RetryOn::default());
    route_error(
        "{cluster: app, retry: {on: [retriable-status-codes]}}",
        "retry.retriable_status_codes",
        "list the codes here",
    );
    route_error(
        "{cluster: app, retry: {on: [5xx], retriable_status_codes: [503]}}",
        "retry.retriable_status_codes",
        "only when on includes retriable-status-codes",
    );
    route_error(
        "{cluster: app, retry: {on: [retriable-status-codes], retriable_status_codes: [503, 700]}}",
        "retry.retriable_status_codes[1]",
        "invalid status code 700",
    );
}

#[test]
fn retry_defaults_when_keys_are_omitted() {
    let retry = route_ok("{cluster: app, retry: {}}").retry.unwrap();
    assert_eq!(retry.attempts, 0);
    assert_eq!(retry.per_try_timeout, None);
    assert_eq!(retry.backoff.base, Duration::from_millis(25));
    assert_eq!(retry.backoff.max, Duration::from_millis(250));
    assert_eq!(retry.budget.ratio, 0.2);
    assert_eq!(retry.budget.min_per_second, 10);
    assert_eq!(
        retry.methods,
        [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
            Method::TRACE
        ]
    );
    assert!(retry.on.connect_failure && retry.on.refused_stream);
    assert!(!(retry.on.reset || retry.on.gateway_error || retry.on.server_error));
    assert!(route_ok("{cluster: app}").retry.is_none());
}

#[test]
fn backoff_base_must_not_exceed_max() {
    route_error(
        "{cluster: app, retry: {backoff: {base: 1s, max: 100ms}}}",
        "retry.backoff.base",
        "base 1s is larger than max 100ms",
    );
    route_error(
        "{cluster: app, retry: {backoff: {base: 0}}}",
        "retry.backoff.base",
        "must be greater than 0",
    );
}

#[test]
fn budget_ratio_is_between_0_and_1() {
    route_error(
        "{cluster: app, retry: {budget: {ratio: 1.5}}}",
        "retry.budget.ratio",
        "1.5 is out of range",
    );
    route_error(
        "{cluster: app, retry: {budget: {ratio: -0.1}}}",
        "retry.budget.ratio",
        "out of range",
    );
}

#[test]
fn per_try_timeout_is_a_duration() {
    route_error(
        "{cluster: app, retry: {per_try_timeout: soon}}",
        "retry.per_try_timeout",
        "invalid duration \"soon\"",
    );
    let retry = route_ok("{cluster: app, retry: {per_try_timeout: 250ms}}")
        .retry
        .unwrap();
    assert_eq!(retry.per_try_timeout, Some(Duration::from_millis(250)));
}

#[test]
fn rate_limit_needs_a_positive_rate_and_burst() {
    route_error(
        "{cluster: app, rate_limit: {requests_per_second: 0}}",
        "rate_limit.requests_per_second",
        "must be greater than 0",
    );
    route_error(
        "{cluster: app, rate_limit: {requests_per_second: 5, burst: 0}}",
        "rate_limit.burst",
        "too small",
    );
    route_error(
        "{cluster: app, rate_limit: {burst: 5}}",
        "rate_limit.requests_per_second",
        "required key is missing",
    );
}

#[test]
fn rate_limit_burst_defaults_to_the_rate_rounded_up() {
    let rl = route_ok("{cluster: app, rate_limit: {requests_per_second: 2.5}}")
        .policies
        .rate_limit
        .unwrap();
    assert_eq!((rl.requests_per_second, rl.burst), (2.5, 3));
    let rl = route_ok("{cluster: app, rate_limit: {requests_per_second: 0.1}}")
        .policies
        .rate_limit
        .unwrap();
    assert_eq!(rl.burst, 1);
}

#[test]
fn rewrites_are_checked() {
    route_error(
        "{cluster: app, rewrite_prefix: v2/}",
        "rewrite_prefix",
        "must start with /",
    );
    route_error(
        "{cluster: app, host_rewrite: \"bad host\"}",
        "host_rewrite",
        "invalid host \"bad host\"",
    );
    let route = route_ok("{cluster: app, host_rewrite: \"payments.internal:8443\"}");
    assert_eq!(route.host_rewrite.unwrap(), "payments.internal:8443");
}

#[test]
fn header_mutations_keep_file_order() {
    let route =
        route_ok("{cluster: app, request_headers: {add: {x-b: 1, x-a: 2}, remove: [X-Debug]}}");
    let names: Vec<&str> = route
        .request_headers
        .add
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, ["x-b", "x-a"]);
    assert_eq!(
        route.request_headers.remove,
        [HeaderName::from_static("x-debug")]
    );
}

#[test]
fn route_paths_must_be_in_the_normal_form_requests_are_matched_in() {
    for (route, key, part) in [
        (
            "{match: {prefix: /a/../b}, cluster: app}",
            "match.prefix",
            "'..' segment",
        ),
        (
            "{match: {prefix: //a}, cluster: app}",
            "match.prefix",
            "empty",
        ),
        ("{match: {path: /a;v=1}, cluster: app}", "match.path", "';'"),
        (
            "{match: {prefix: /caf%c3}, cluster: app}",
            "match.prefix",
            "upper-case hex",
        ),
        (
            "{match: {prefix: /%61dmin}, cluster: app}",
            "match.prefix",
            "decoded",
        ),
        (
            "{match: {prefix: /café}, cluster: app}",
            "match.prefix",
            "non-ASCII",
        ),
        (
            "{cluster: app, rewrite_prefix: /v2/./x}",
            "rewrite_prefix",
            "'.'",
        ),
    ] {
        route_error(route, key, part);
    }
    let r = route_ok("{match: {prefix: /caf%C3%A9/}, cluster: app, rewrite_prefix: /x%20y/}");
    assert_eq!(r.rewrite_prefix.as_deref(), Some("/x%20y/"));
}
