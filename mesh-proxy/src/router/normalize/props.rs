//! Property tests of the normal form (issue 12 item 6): the normalizer
//! never panics, is idempotent, and its output has no dot segment, no `//`,
//! no escaped unreserved character; a prefix rewrite stays under the new
//! prefix and keeps what followed the matched one.

use proptest::prelude::*;

use super::*;

/// Paths built from the pieces that attacks are made of, so the
/// interesting cases come up far more often than from random bytes.
pub(in crate::router) fn nasty_path() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "/",
        "/",
        "/",
        ".",
        "..",
        ";",
        ";x=1",
        "%2e",
        "%2E",
        "%2f",
        "%5C",
        "%",
        "%4",
        "%41",
        "%c3%a9",
        "é",
        "\u{10348}",
        "a",
        "admin",
        "api",
        "v1",
        "//",
        "\\",
        "#",
        " ",
        "~",
        "%7e",
        "%3b",
        "\u{7f}",
        "_",
    ]);
    prop::collection::vec(token, 0..14).prop_map(|t| format!("/{}", t.concat()))
}

fn is_unreserved_escape(s: &[u8]) -> bool {
    match (
        s.get(1).and_then(|&h| hex(h)),
        s.get(2).and_then(|&l| hex(l)),
    ) {
        (Some(h), Some(l)) => is_unreserved((h << 4) | l),
        _ => false,
    }
}

/// Every structural promise of the normal form.
fn assert_normal_form(n: &str) -> Result<(), TestCaseError> {
    prop_assert!(n.starts_with('/'), "{n:?}");
    prop_assert!(n.is_ascii(), "{n:?}");
    prop_assert!(!n.contains("//"), "{n:?}");
    let segments: Vec<&str> = n[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let name = seg.split(';').next().unwrap_or("");
        prop_assert!(name != "." && name != "..", "dot segment in {n:?}");
        prop_assert!(
            !name.is_empty() || (!seg.contains(';') && i + 1 == segments.len()),
            "empty segment in {n:?}"
        );
    }
    let bytes = n.as_bytes();
    for (i, _) in n.match_indices('%') {
        prop_assert!(
            !is_unreserved_escape(&bytes[i..]),
            "escaped unreserved in {n:?}"
        );
        prop_assert!(
            bytes[i + 1..]
                .iter()
                .take(2)
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()),
            "bad escape in {n:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut input = vec![b'/'];
        input.extend_from_slice(&bytes);
        if let Ok(n) = normalize_path_bytes(&input) {
            assert_normal_form(&n)?;
        }
        let _ = normalize_path_bytes(&bytes);
    }

    #[test]
    fn output_is_normal_and_a_fixed_point(p in nasty_path()) {
        let once = normalize_path(&p);
        prop_assert_eq!(once.clone().map(|c| c.into_owned()), normalize_path_bytes(p.as_bytes()));
        if let Ok(n) = once {
            assert_normal_form(&n)?;
            let twice = normalize_path(&n);
            prop_assert!(matches!(twice, Ok(Cow::Borrowed(_))), "{n:?} is not borrowed");
            prop_assert_eq!(twice.map(|c| c.into_owned()), Ok(n.into_owned()));
        }
    }

    #[test]
    fn a_rewrite_stays_under_the_new_prefix_and_keeps_the_rest(
        p in nasty_path(),
        prefix in prop::sample::select(vec!["/", "/a", "/ap", "/api", "/api/", "/api/v1", "/admin"]),
        new in prop::sample::select(vec!["/", "/x", "/x/", "/x/y", "/api"]),
    ) {
        let Ok(n) = normalize_path(&p) else { return Ok(()) };
        let routed = without_params(&n);
        // Only a matched route rewrites: the proxy forwards `n` untouched
        // otherwise, so "forwarded is under the prefix" ⇔ "matched".
        if !routed.starts_with(prefix) {
            return Ok(());
        }
        let rest = &routed[prefix.len()..];
        match rewrite_prefix(&n, prefix.len(), new) {
            Ok(fwd) => {
                assert_normal_form(&fwd)?;
                let seen = without_params(&fwd);
                prop_assert!(seen.starts_with(new), "{fwd:?} not under {new}");
                let tail = &seen[new.len()..];
                let want = rest.trim_start_matches('/');
                prop_assert_eq!(tail.trim_start_matches('/'), want, "{} -> {}", n, fwd);
            }
            Err(e) => {
                prop_assert_eq!(e, TargetError::BadRewrite);
                // Only a cut inside a segment can join into a dot segment.
                prop_assert!(!prefix.ends_with('/') && !rest.is_empty() && !rest.starts_with('/'));
            }
        }
    }
}
