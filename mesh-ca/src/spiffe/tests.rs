use super::*;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn parses_trust_domain_and_path() {
    let i = id("spiffe://mesh.local/ns/prod/sa/orders");
    assert_eq!(i.trust_domain(), "mesh.local");
    assert_eq!(i.path(), "/ns/prod/sa/orders");
    assert_eq!(i.service_name(), "orders");
    assert_eq!(i.as_str(), "spiffe://mesh.local/ns/prod/sa/orders");
    assert_eq!(i.to_string(), i.as_str());
    assert_eq!(
        "spiffe://mesh.local/ns/prod/sa/orders".parse::<SpiffeId>(),
        Ok(i)
    );
}

#[test]
fn accepts_every_allowed_character() {
    id("spiffe://a-b_c.9/A-Z_a.z-0.9");
    id("spiffe://x/.hidden/a..b");
}

#[test]
fn rejects_ids_outside_the_spec() {
    type Expect = fn(&SpiffeIdError) -> bool;
    let cases: &[(&str, Expect)] = &[
        ("http://mesh.local/web", |e| {
            matches!(e, SpiffeIdError::Scheme { .. })
        }),
        ("SPIFFE://mesh.local/web", |e| {
            matches!(e, SpiffeIdError::Scheme { .. })
        }),
        ("spiffe:/mesh.local/web", |e| {
            matches!(e, SpiffeIdError::Scheme { .. })
        }),
        ("spiffe:///web", |e| {
            matches!(e, SpiffeIdError::EmptyTrustDomain { .. })
        }),
        ("spiffe://Mesh.local/web", |e| {
            matches!(e, SpiffeIdError::TrustDomainChar { ch: 'M', .. })
        }),
        ("spiffe://mesh.local:8443/web", |e| {
            matches!(e, SpiffeIdError::TrustDomainChar { ch: ':', .. })
        }),
        ("spiffe://user@mesh.local/web", |e| {
            matches!(e, SpiffeIdError::TrustDomainChar { ch: '@', .. })
        }),
        ("spiffe://mesh.local", |e| {
            matches!(e, SpiffeIdError::MissingPath { .. })
        }),
        ("spiffe://mesh.local/", |e| {
            matches!(e, SpiffeIdError::EmptySegment { .. })
        }),
        ("spiffe://mesh.local/web/", |e| {
            matches!(e, SpiffeIdError::EmptySegment { .. })
        }),
        ("spiffe://mesh.local//web", |e| {
            matches!(e, SpiffeIdError::EmptySegment { .. })
        }),
        ("spiffe://mesh.local/./web", |e| {
            matches!(e, SpiffeIdError::DotSegment { .. })
        }),
        ("spiffe://mesh.local/a/..", |e| {
            matches!(e, SpiffeIdError::DotSegment { .. })
        }),
        ("spiffe://mesh.local/we%62", |e| {
            matches!(e, SpiffeIdError::PathChar { ch: '%', .. })
        }),
        ("spiffe://mesh.local/web?x=1", |e| {
            matches!(e, SpiffeIdError::PathChar { ch: '?', .. })
        }),
        ("spiffe://mesh.local/web#f", |e| {
            matches!(e, SpiffeIdError::PathChar { ch: '#', .. })
        }),
        ("spiffe://mesh.local/wéb", |e| {
            matches!(e, SpiffeIdError::PathChar { ch: 'é', .. })
        }),
        ("spiffe://mesh.local/*", |e| {
            matches!(e, SpiffeIdError::PathChar { ch: '*', .. })
        }),
    ];
    for (input, expected) in cases {
        let err = SpiffeId::parse(input).expect_err(input);
        assert!(expected(&err), "{input}: unexpected {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("{input:?}")), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
    }
}

#[test]
fn rejects_overlong_ids_without_echoing_them_whole() {
    let long = format!("spiffe://mesh.local/{}", "a".repeat(3000));
    let err = SpiffeId::parse(&long).expect_err("too long");
    assert!(matches!(err, SpiffeIdError::TooLong { max: 2048, .. }));
    assert!(err.to_string().len() < 200);
    let td = format!("spiffe://{}/x", "a".repeat(300));
    assert!(matches!(
        SpiffeId::parse(&td),
        Err(SpiffeIdError::TooLong { max: 255, .. })
    ));
}

#[test]
fn builds_ids_from_service_names() {
    assert_eq!(
        SpiffeId::from_service("mesh.local", "orders").map(|i| i.to_string()),
        Ok("spiffe://mesh.local/orders".to_owned())
    );
    assert_eq!(
        SpiffeId::from_service("mesh.local", "ns/prod/sa/orders").map(|i| i.to_string()),
        Ok("spiffe://mesh.local/ns/prod/sa/orders".to_owned())
    );
    assert_eq!(
        SpiffeId::from_service("mesh.local", "spiffe://other.td/x").map(|i| i.to_string()),
        Ok("spiffe://other.td/x".to_owned())
    );
    assert!(SpiffeId::from_service("mesh.local", "").is_err());
    assert!(SpiffeId::from_service("Mesh", "orders").is_err());
    assert_eq!(
        SpiffeId::new("mesh.local", "/web").map(|i| i.to_string()),
        Ok("spiffe://mesh.local/web".to_owned())
    );
}

#[test]
fn validates_bare_trust_domains() {
    assert!(validate_trust_domain("mesh.local").is_ok());
    assert!(validate_trust_domain("").is_err());
    assert!(validate_trust_domain("mesh.local/x").is_err());
    assert!(validate_trust_domain("MESH").is_err());
}

#[test]
fn ids_are_usable_as_map_keys() {
    let mut set = std::collections::HashSet::new();
    set.insert(id("spiffe://mesh.local/a"));
    set.insert(id("spiffe://mesh.local/a"));
    set.insert(id("spiffe://mesh.local/b"));
    assert_eq!(set.len(), 2);
}

#[test]
fn pattern_star_matches_exactly_one_whole_segment() {
    let p = SpiffePattern::parse("spiffe://mesh.local/ns/*/sa/web").expect("pattern");
    assert!(!p.is_exact());
    assert!(p.matches(&id("spiffe://mesh.local/ns/prod/sa/web")));
    assert!(p.matches(&id("spiffe://mesh.local/ns/dev/sa/web")));
    assert!(!p.matches(&id("spiffe://mesh.local/ns/prod/sa/api")));
    assert!(!p.matches(&id("spiffe://mesh.local/ns/a/b/sa/web")));
    assert!(!p.matches(&id("spiffe://mesh.local/ns/sa/web")));
    assert!(!p.matches(&id("spiffe://other.local/ns/prod/sa/web")));
    assert!(!p.matches(&id("spiffe://mesh.local/ns/prod/sa/web/extra")));
}

#[test]
fn pattern_trailing_star_does_not_match_deeper_paths() {
    let p = SpiffePattern::parse("spiffe://mesh.local/*").expect("pattern");
    assert!(p.matches(&id("spiffe://mesh.local/web")));
    assert!(!p.matches(&id("spiffe://mesh.local/ns/web")));
}

#[test]
fn exact_pattern_matches_only_its_id() {
    let p: SpiffePattern = "spiffe://mesh.local/web".parse().expect("pattern");
    assert!(p.is_exact());
    assert!(p.matches(&id("spiffe://mesh.local/web")));
    assert!(!p.matches(&id("spiffe://mesh.local/web2")));
    assert!(!p.matches(&id("spiffe://mesh.local/we")));
    assert_eq!(p.to_string(), "spiffe://mesh.local/web");
}

#[test]
fn rejects_bad_patterns() {
    for bad in [
        "spiffe://mesh.local/web*",
        "spiffe://mesh.local/*web",
        "spiffe://*/web",
        "spiffe://mesh.local",
        "spiffe://mesh.local/ns//web",
        "spiffe://mesh.local/**/web",
        "spiffe://**/web",
        "spiffe://mesh.local/a**",
        "spiffe://mesh.local/***",
        "mesh.local/web",
    ] {
        assert!(SpiffePattern::parse(bad).is_err(), "{bad}");
    }
    assert!(matches!(
        SpiffePattern::parse("spiffe://mesh.local/web*"),
        Err(SpiffeIdError::PartialWildcard { .. })
    ));
}

#[test]
fn double_star_matches_one_or_more_segments_of_its_own_trust_domain() {
    let any = SpiffePattern::parse("spiffe://mesh.local/**").expect("pattern");
    assert!(!any.is_exact());
    assert!(any.matches(&id("spiffe://mesh.local/web")));
    assert!(any.matches(&id("spiffe://mesh.local/ns/prod/sa/web")));
    assert!(!any.matches(&id("spiffe://other.local/web")));
    assert!(!any.matches(&id("spiffe://mesh.local.evil/web")));
    assert!(!any.matches(&id("spiffe://evil.mesh.local/web")));
    let ns = SpiffePattern::parse("spiffe://mesh.local/ns/**").expect("pattern");
    assert!(ns.matches(&id("spiffe://mesh.local/ns/prod")));
    assert!(ns.matches(&id("spiffe://mesh.local/ns/prod/sa/web")));
    // `**` is "the rest", and there must be a rest: the parent itself is
    // not matched (as `spiffe://td/a/*` does not match `spiffe://td/a`).
    assert!(!ns.matches(&id("spiffe://mesh.local/ns")));
    assert!(!ns.matches(&id("spiffe://mesh.local/nsx/prod")));
    assert!(!ns.matches(&id("spiffe://mesh.local/web")));
    let mixed = SpiffePattern::parse("spiffe://mesh.local/ns/*/sa/**").expect("pattern");
    assert!(mixed.matches(&id("spiffe://mesh.local/ns/prod/sa/web")));
    assert!(mixed.matches(&id("spiffe://mesh.local/ns/prod/sa/web/v2")));
    assert!(!mixed.matches(&id("spiffe://mesh.local/ns/prod/sa")));
    assert!(!mixed.matches(&id("spiffe://mesh.local/ns/prod/x/web")));
}

#[test]
fn double_star_only_as_the_whole_last_segment() {
    let err = SpiffePattern::parse("spiffe://mesh.local/**/web").expect_err("not last");
    assert!(
        matches!(err, SpiffeIdError::DoubleStarNotLast { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("\"spiffe://mesh.local/**/web\""), "{msg}");
    assert!(msg.contains("last path segment"), "{msg}");
    for partial in ["spiffe://mesh.local/a**", "spiffe://mesh.local/***"] {
        assert!(
            matches!(
                SpiffePattern::parse(partial),
                Err(SpiffeIdError::PartialWildcard { .. })
            ),
            "{partial}"
        );
    }
    assert!(matches!(
        SpiffePattern::parse("spiffe://**/web"),
        Err(SpiffeIdError::TrustDomainChar { ch: '*', .. })
    ));
}

#[test]
fn ids_and_patterns_are_strings_in_json() {
    let i: SpiffeId = serde_json::from_str(r#""spiffe://mesh.local/web""#).expect("id");
    assert_eq!(
        serde_json::to_string(&i).expect("json"),
        r#""spiffe://mesh.local/web""#
    );
    let err = serde_json::from_str::<SpiffeId>(r#""spiffe://mesh.local""#).expect_err("root");
    assert!(err.to_string().contains("has no path"), "{err}");
    let p: SpiffePattern = serde_json::from_str(r#""spiffe://mesh.local/*""#).expect("pattern");
    assert!(p.matches(&i));
    assert!(serde_json::from_str::<SpiffePattern>(r#""spiffe://mesh.local/a*""#).is_err());
}
