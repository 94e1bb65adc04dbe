//! Route matching on an edge listener's table of 20 routes (exact and
//! `*.suffix` hosts; prefix, exact-path and regex paths; header and method
//! matchers), built from YAML by the proxy's config loader and
//! `RouteTable::build`: a hit on the second route, hits in the middle (a
//! regex; a header matcher), a hit on the last route, and misses that check
//! every route. `route_normalize_and_find` adds what the router does first
//! per request: Host validation and path normalization.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use mesh_proxy::config::ListenerKind;
use mesh_proxy::router::{RouteTable, normalize};

mod support;

const CONFIG: &str = r#"
listeners:
  - name: edge
    address: 127.0.0.1:8000
    routes:
      - match: { path: /healthz }
        direct_response: { status: 200, body: "ok\n" }
      - match: { host: api.example.com, prefix: /payments/ }
        cluster: payments
      - match: { host: api.example.com, prefix: /orders/, methods: [POST, PUT] }
        cluster: orders
      - match: { host: api.example.com, regex: '/v[0-9]+/users/[0-9]+' }
        cluster: users
      - match: { host: "*.shop.example.com", prefix: /cart/, headers: { x-canary: "true" } }
        cluster: shop-canary
      - match: { host: "*.shop.example.com", prefix: /cart/ }
        cluster: shop
      - match: { host: "*.shop.example.com", prefix: / }
        cluster: shop
      - match: { host: www.example.com, path: / }
        cluster: web
      - match: { host: www.example.com, prefix: /static/ }
        cluster: web
      - match: { host: auth.example.com, prefix: /oauth2/ }
        cluster: auth
      - match: { host: auth.example.com, path: /.well-known/openid-configuration }
        cluster: auth
      - match: { host: search.example.com, regex: '/search(/.*)?' }
        cluster: search
      - match: { host: "*.internal.example.net", prefix: /metrics }
        direct_response: { status: 403 }
      - match: { host: grpc.example.com, prefix: /payments.v1.Ledger/, headers: { content-type: application/grpc } }
        cluster: ledger
      - match: { host: grpc.example.com, prefix: /inventory.v1.Stock/ }
        cluster: ledger
      - match: { host: media.example.com, regex: '/images/[a-z0-9]+\.(png|jpg|webp)' }
        cluster: media
      - match: { host: "*.eu.example.com", prefix: /api/ }
        cluster: api-eu
      - match: { host: "*.us.example.com", prefix: /api/ }
        cluster: api-us
      - match: { host: docs.example.com, prefix: /, methods: [GET, HEAD] }
        cluster: web
      - match: { host: status.example.com, prefix: / }
        cluster: status

clusters:
  - { name: payments, endpoints: ["10.0.1.1:8080"] }
  - { name: orders, endpoints: ["10.0.1.2:8080"] }
  - { name: users, endpoints: ["10.0.1.3:8080"] }
  - { name: shop, endpoints: ["10.0.2.1:8080"] }
  - { name: shop-canary, endpoints: ["10.0.2.2:8080"] }
  - { name: web, endpoints: ["10.0.3.1:8080"] }
  - { name: auth, endpoints: ["10.0.4.1:8080"] }
  - { name: search, endpoints: ["10.0.5.1:8080"] }
  - { name: ledger, endpoints: ["10.0.6.1:8080"], protocol: http2 }
  - { name: media, endpoints: ["10.0.7.1:8080"] }
  - { name: api-eu, endpoints: ["10.1.0.1:8080"] }
  - { name: api-us, endpoints: ["10.2.0.1:8080"] }
  - { name: status, endpoints: ["10.0.9.1:8080"] }
"#;

fn table() -> RouteTable {
    let config = support::load(CONFIG);
    let rt = support::runtime();
    let _entered = rt.enter();
    let clusters = support::clusters(&config);
    let listener = &config.listeners[0];
    let ListenerKind::Http { routes } = &listener.kind else {
        panic!("listener {} is not an HTTP listener", listener.name);
    };
    assert_eq!(routes.len(), 20, "the bench table has 20 routes");
    RouteTable::build(&listener.name, routes, |name| clusters.get(name).cloned())
        .expect("route table")
}

/// The header section of a typical browser request.
fn browser_headers(extra: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        (
            "cookie",
            "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark",
        ),
        ("referer", "https://www.example.com/"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        h.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    h
}

struct Case {
    id: &'static str,
    host: &'static str,
    path: &'static str,
    method: Method,
    headers: HeaderMap,
    /// `edge/<index>` of the route it must match; `None` for a miss.
    expect: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    let case = |id, host, path, method, extra: &[(&'static str, &'static str)], expect| Case {
        id,
        host,
        path,
        method,
        headers: browser_headers(extra),
        expect,
    };
    vec![
        case(
            "hit_early",
            "api.example.com",
            "/payments/v1/charges/ch_3PqX",
            Method::GET,
            &[],
            Some("edge/1"),
        ),
        case(
            "hit_header",
            "eu.shop.example.com",
            "/cart/items",
            Method::POST,
            &[("x-canary", "true")],
            Some("edge/4"),
        ),
        case(
            "hit_regex",
            "search.example.com",
            "/search/running-shoes",
            Method::GET,
            &[],
            Some("edge/11"),
        ),
        case(
            "hit_late",
            "status.example.com",
            "/api/v1/incidents",
            Method::GET,
            &[],
            Some("edge/19"),
        ),
        case(
            "miss_after_regex",
            "api.example.com",
            "/v2/users/me",
            Method::GET,
            &[],
            None,
        ),
        case(
            "miss",
            "unknown.example.org",
            "/index.html",
            Method::GET,
            &[],
            None,
        ),
    ]
}

fn find(c: &mut Criterion) {
    let table = table();
    let mut group = c.benchmark_group("route_find");
    for case in cases() {
        let found = table.find(case.host, case.path, &case.method, &case.headers);
        assert_eq!(
            found.map(|r| &*r.name.name),
            case.expect,
            "case {}",
            case.id
        );
        group.bench_function(case.id, |b| {
            b.iter(|| {
                table
                    .find(
                        black_box(case.host),
                        black_box(case.path),
                        black_box(&case.method),
                        black_box(&case.headers),
                    )
                    .is_some()
            })
        });
    }
    group.finish();
}

/// The router's own sequence: Host → routing host, path → normalized path
/// without `;parameters`, then the table. Returns the matched route's name.
fn route<'t>(
    table: &'t RouteTable,
    headers: &HeaderMap,
    authority: &str,
    path: &str,
) -> Option<&'t str> {
    let host = normalize::host_for_routing(authority).expect("valid host");
    let path = normalize::normalize_path(path).expect("valid path");
    table
        .find(
            &host,
            &normalize::without_params(&path),
            &Method::GET,
            headers,
        )
        .map(|r| &*r.name.name)
}

fn normalize_and_find(c: &mut Criterion) {
    let table = table();
    let headers = browser_headers(&[]);
    let mut group = c.benchmark_group("route_normalize_and_find");
    for (id, authority, path) in [
        ("clean", "status.example.com", "/api/v1/incidents"),
        (
            "messy",
            "Status.Example.com:443",
            "/api//v1/./incidents;jsessionid=a1b2",
        ),
    ] {
        assert_eq!(
            route(&table, &headers, authority, path),
            Some("edge/19"),
            "{id}"
        );
        group.bench_function(id, |b| {
            b.iter(|| route(&table, &headers, black_box(authority), black_box(path)))
        });
    }
    group.finish();
}

criterion_group!(benches, find, normalize_and_find);
criterion_main!(benches);
