//! Per-request header work of the router (`router::headers` and
//! `router::normalize`): a fresh `x-request-id`, hop-by-hop removal,
//! `x-forwarded-for` / `x-forwarded-proto`, a route's header mutations,
//! Host and path normalization, and the whole request-header sequence the
//! router runs before a request goes upstream.
//!
//! Functions that rewrite a header map get a fresh clone of the request's
//! headers per iteration; the clone is made outside the timed part.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use mesh_proxy::config::HeaderMutations;
use mesh_proxy::router::{X_REQUEST_ID, headers, normalize};

/// An HTTP/1.1 API request as a client library sends it, carrying
/// forwarding headers it must not be trusted with.
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example.com"),
        ("user-agent", "okhttp/4.12.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip"),
        ("content-type", "application/json"),
        ("content-length", "348"),
        (
            "authorization",
            "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1MTIzIn0.c2ln",
        ),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("x-forwarded-for", "198.51.100.23"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-client-cert", "By=spiffe://evil/x"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-debug", "1"),
    ] {
        h.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    h
}

/// A route's `request_headers: { add: {x-env: prod, x-route: api}, remove: [x-debug] }`.
fn mutations() -> HeaderMutations {
    HeaderMutations {
        add: vec![
            (
                HeaderName::from_static("x-env"),
                HeaderValue::from_static("prod"),
            ),
            (
                HeaderName::from_static("x-route"),
                HeaderValue::from_static("api"),
            ),
        ],
        remove: vec![HeaderName::from_static("x-debug")],
    }
}

fn header_rules(c: &mut Criterion) {
    let req = request_headers();
    let peer_ip = HeaderValue::from_static("10.0.0.7");
    let m = mutations();
    let mut check = req.clone();
    headers::strip_hop_by_hop(&mut check, false);
    headers::set_forwarded(&mut check, &peer_ip, "http", false);
    headers::apply_mutations(&mut check, &m);
    assert!(!check.contains_key("connection") && !check.contains_key("keep-alive"));
    assert_eq!(check["x-forwarded-for"], "10.0.0.7");
    assert!(check.contains_key("x-env") && !check.contains_key("x-debug"));

    let mut group = c.benchmark_group("request_headers");
    group.bench_function("new_request_id", |b| b.iter(headers::new_request_id));
    group.bench_function("strip_hop_by_hop", |b| {
        b.iter_batched_ref(
            || req.clone(),
            |h| headers::strip_hop_by_hop(black_box(h), false),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("set_forwarded_untrusted", |b| {
        b.iter_batched_ref(
            || req.clone(),
            |h| headers::set_forwarded(black_box(h), &peer_ip, "http", false),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("set_forwarded_trusted_append", |b| {
        b.iter_batched_ref(
            || req.clone(),
            |h| headers::set_forwarded(black_box(h), &peer_ip, "https", true),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("apply_mutations", |b| {
        b.iter_batched_ref(
            || req.clone(),
            |h| headers::apply_mutations(black_box(h), &m),
            BatchSize::SmallInput,
        )
    });
    // What the router does to a request's headers on its way upstream, in
    // its order: request id (none came in), hop-by-hop, no client-supplied
    // XFCC, forwarding headers (untrusted listener), the route's mutations.
    group.bench_function("per_request_sequence", |b| {
        b.iter_batched_ref(
            || req.clone(),
            |h| {
                let h = black_box(h);
                if !h.contains_key(&X_REQUEST_ID) {
                    h.insert(X_REQUEST_ID.clone(), headers::new_request_id());
                }
                let upgrade = headers::wants_upgrade(h);
                headers::strip_hop_by_hop(h, upgrade);
                h.remove(&headers::X_FORWARDED_CLIENT_CERT);
                headers::set_forwarded(h, &peer_ip, "http", false);
                headers::apply_mutations(h, &m);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn normalization(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize");
    for (id, path, expect) in [
        (
            "path_clean",
            "/api/v1/orders/8412/items",
            "/api/v1/orders/8412/items",
        ),
        (
            "path_dot_segments_and_escapes",
            "/api//v1/./orders/../users/%7ebob/%2d",
            "/api/v1/users/~bob/-",
        ),
    ] {
        let got = normalize::normalize_path(path).expect("valid path");
        assert_eq!(got, expect, "{id}");
        group.bench_function(id, |b| {
            b.iter(|| normalize::normalize_path(black_box(path)))
        });
    }
    for (id, authority, expect) in [
        ("host_clean", "api.example.com", "api.example.com"),
        (
            "host_mixed_case_with_port",
            "API.Example.com:8443",
            "api.example.com",
        ),
    ] {
        let got = normalize::host_for_routing(authority).expect("valid host");
        assert_eq!(got, expect, "{id}");
        group.bench_function(id, |b| {
            b.iter(|| normalize::host_for_routing(black_box(authority)))
        });
    }
    let with_params = "/admin;jsessionid=a1b2/users;v=2";
    assert_eq!(normalize::without_params(with_params), "/admin/users");
    group.bench_function("without_params", |b| {
        b.iter(|| normalize::without_params(black_box(with_params)))
    });
    group.finish();
}

criterion_group!(benches, header_rules, normalization);
criterion_main!(benches);
