//! Unit tests of the normal form and of Host validation.

use std::borrow::Cow;

use super::*;

fn norm(p: &str) -> Result<String, TargetError> {
    normalize_path(p).map(|c| c.into_owned())
}

#[test]
fn normal_paths_are_borrowed_unchanged() {
    for p in [
        "/",
        "/a/b",
        "/a.b/c..d",
        "/.well-known/x",
        "/a/..b",
        "/%20x",
        "/caf%C3%A9;v=1/",
    ] {
        let out = normalize_path(p).expect("valid");
        assert!(matches!(out, Cow::Borrowed(_)), "{p} was copied");
        assert_eq!(out, p);
    }
}

#[test]
fn dot_segments_and_slashes_are_removed() {
    assert_eq!(norm("/a/./b/../c").as_deref(), Ok("/a/c"));
    assert_eq!(norm("/./admin").as_deref(), Ok("/admin"));
    assert_eq!(norm("/public/../admin").as_deref(), Ok("/admin"));
    assert_eq!(norm("//admin").as_deref(), Ok("/admin"));
    assert_eq!(norm("/../../x").as_deref(), Ok("/x"));
    assert_eq!(norm("/a/b/..").as_deref(), Ok("/a/"));
    assert_eq!(norm("/a/.").as_deref(), Ok("/a/"));
    assert_eq!(norm("/a//b///").as_deref(), Ok("/a/b/"));
    assert_eq!(norm("/..").as_deref(), Ok("/"));
}

#[test]
fn unreserved_escapes_are_decoded_before_dot_removal() {
    assert_eq!(norm("/%2e%2e/admin").as_deref(), Ok("/admin"));
    assert_eq!(norm("/public/%2E%2E/admin").as_deref(), Ok("/admin"));
    assert_eq!(norm("/%61dmin").as_deref(), Ok("/admin"));
    assert_eq!(norm("/a%7eb%3f").as_deref(), Ok("/a~b%3F"));
}

#[test]
fn encoded_slashes_and_bad_escapes_are_rejected() {
    assert_eq!(norm("/public/..%2fadmin"), Err(TargetError::EncodedSlash));
    assert_eq!(
        norm("/public/%2e%2e%2fadmin"),
        Err(TargetError::EncodedSlash)
    );
    assert_eq!(norm("/a%5cb"), Err(TargetError::EncodedSlash));
    assert_eq!(norm("/a\\b"), Err(TargetError::EncodedSlash));
    assert_eq!(norm("/a%zz"), Err(TargetError::BadEscape));
    assert_eq!(norm("/a%2"), Err(TargetError::BadEscape));
    assert_eq!(norm("/a#frag"), Err(TargetError::BadChar));
    assert_eq!(norm("a/b"), Err(TargetError::NotAbsolute));
}

#[test]
fn routing_ignores_segment_parameters() {
    assert_eq!(without_params("/admin;x=1"), "/admin");
    assert_eq!(without_params("/a;b/c;d=e/"), "/a/c/");
    assert!(matches!(without_params("/plain"), Cow::Borrowed("/plain")));
}

#[test]
fn hosts_are_validated_and_lowercased() {
    assert_eq!(
        host_for_routing("Example.COM:8080").as_deref(),
        Ok("example.com")
    );
    assert_eq!(
        host_for_routing("svc.mesh.test.").as_deref(),
        Ok("svc.mesh.test")
    );
    assert_eq!(host_for_routing("127.0.0.1:80").as_deref(), Ok("127.0.0.1"));
    assert_eq!(host_for_routing("[::1]:80").as_deref(), Ok("[::1]"));
    assert_eq!(host_for_routing("t").as_deref(), Ok("t"));
    for bad in [
        "a/b", "a\\b", "a@b", "a b", "..x", "a\u{1}", "", "a:", "a:x1", "[zz]", ":80",
    ] {
        assert_eq!(host_for_routing(bad), Err(TargetError::BadHost), "{bad:?}");
    }
}

#[test]
fn dot_and_empty_segments_with_parameters_are_refused() {
    for p in [
        "/public/..;/admin",
        "/public/..;x=1/admin",
        "/public/%2e%2e;/admin",
        "/public/%2E%2e;/admin",
        "/public/.%2E;/admin",
        "/public/.;/admin",
        "/public/%2e;x/admin",
        "/public/;x/admin",
        "/;/admin",
        "/public/..;",
        "/a/;",
    ] {
        assert_eq!(norm(p), Err(TargetError::DotSegmentParams), "{p}");
    }
}

#[test]
fn matrix_parameters_on_ordinary_segments_are_kept() {
    assert_eq!(norm("/a;v=1/b").as_deref(), Ok("/a;v=1/b"));
    assert!(matches!(normalize_path("/a;v=1/b"), Ok(Cow::Borrowed(_))));
    assert_eq!(norm("/a;v=1/./b;w/").as_deref(), Ok("/a;v=1/b;w/"));
    assert_eq!(norm("/x/..a;v/b").as_deref(), Ok("/x/..a;v/b"));
    assert_eq!(norm("/a/%3B/b").as_deref(), Ok("/a/%3B/b"));
}

#[test]
fn non_ascii_bytes_are_percent_encoded_once() {
    assert_eq!(norm("/café/./x").as_deref(), Ok("/caf%C3%A9/x"));
    assert_eq!(norm("/caf%c3%a9/x").as_deref(), Ok("/caf%C3%A9/x"));
    assert_eq!(norm("/api;xé/v1").as_deref(), Ok("/api;x%C3%A9/v1"));
    assert_eq!(
        normalize_path_bytes(b"/\xff\x80/a").as_deref(),
        Ok("/%FF%80/a")
    );
}

#[test]
fn rewrite_maps_the_stripped_prefix_onto_the_path_with_parameters() {
    // The panic of issue 12: prefix /api/v1 matched through "/api;xé".
    let path = norm("/api;xé/v1/users").expect("normal");
    let routed = without_params(&path);
    assert_eq!(routed, "/api/v1/users");
    assert_eq!(
        rewrite_prefix(&path, "/api/v1".len(), "/").as_deref(),
        Ok("/users")
    );
    assert_eq!(
        rewrite_prefix("/api;x/v1", 4, "/new").as_deref(),
        Ok("/new/v1")
    );
    assert_eq!(
        rewrite_prefix("/api/v1;a=b", 4, "/x/").as_deref(),
        Ok("/x/v1;a=b")
    );
    assert_eq!(rewrite_prefix("/api", 4, "/x").as_deref(), Ok("/x"));
}

#[test]
fn a_rewrite_that_joins_into_a_dot_segment_is_refused() {
    assert_eq!(
        rewrite_prefix("/ap..", 3, "/"),
        Err(TargetError::BadRewrite)
    );
    assert_eq!(
        rewrite_prefix("/a../b", 2, "/x/y"),
        Err(TargetError::BadRewrite)
    );
    assert_eq!(
        rewrite_prefix("/a.;v/b", 2, "/x"),
        Err(TargetError::BadRewrite)
    );
}

/// Seeds under `fuzz/corpus/normalize/` (one raw request path per file)
/// replayed through the normalizer and a rewrite: none may panic, every
/// accepted one is a fixed point.
#[test]
fn fuzz_corpus_replays_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/normalize");
    let (mut seen, mut accepted) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let data = std::fs::read(entry.expect("entry").path()).expect("seed");
        seen += 1;
        let Ok(n) = normalize_path_bytes(&data) else {
            continue;
        };
        accepted += 1;
        assert_eq!(normalize_path(&n).as_deref(), Ok(n.as_str()), "{data:?}");
        let routed = without_params(&n);
        for prefix in ["/", "/api", "/api/", "/a"] {
            if routed.starts_with(prefix) {
                let _ = rewrite_prefix(&n, prefix.len(), "/v2");
            }
        }
    }
    assert!(seen >= 20, "corpus has only {seen} seeds");
    assert!(accepted >= 5, "only {accepted} seeds normalized");
}
