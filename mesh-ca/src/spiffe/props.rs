//! Property tests of SPIFFE ID and allow-pattern parsing and matching, and
//! the replay of the seed corpus (`fuzz/corpus/spiffe/`, also the seeds of
//! the `spiffe` fuzz target).

use proptest::prelude::*;

use super::*;

/// A segment of a generated pattern, matched by [`model`].
#[derive(Debug, Clone)]
enum Want {
    Lit(String),
    One,
    Rest,
}

/// The definition of a match, written independently of the parser:
/// literals equal, `*` exactly one segment, `**` one or more remaining.
fn model(want: &[Want], got: &[String]) -> bool {
    match (want.first(), got.first()) {
        (None, None) => true,
        (Some(Want::Rest), _) => want.len() == 1 && !got.is_empty(),
        (Some(Want::One), Some(_)) => model(&want[1..], &got[1..]),
        (Some(Want::Lit(l)), Some(g)) => l == g && model(&want[1..], &got[1..]),
        _ => false,
    }
}

fn trust_domain() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["td", "td2", "td.x", "t-d_1"]).prop_map(str::to_owned)
}

/// Few distinct segments, so patterns and IDs often line up.
fn segments() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "ns", "A.b-c_9"]).prop_map(str::to_owned),
        1..6,
    )
}

fn pattern_segments() -> impl Strategy<Value = Vec<Want>> {
    let one = prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "ns", "A.b-c_9"])
            .prop_map(|s| Want::Lit(s.to_owned())),
        1 => Just(Want::One),
    ];
    (prop::collection::vec(one, 0..5), any::<bool>()).prop_map(|(mut segs, rest)| {
        if rest || segs.is_empty() {
            segs.push(if segs.is_empty() && !rest {
                Want::One
            } else {
                Want::Rest
            });
        }
        segs
    })
}

fn render(want: &[Want]) -> String {
    let parts: Vec<&str> = want
        .iter()
        .map(|w| match w {
            Want::Lit(l) => l.as_str(),
            Want::One => "*",
            Want::Rest => "**",
        })
        .collect();
    parts.join("/")
}

/// Strings near the grammar: the scheme, separators, stars, dots and
/// characters the grammar refuses.
fn spiffe_like() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "spiffe://",
        "/",
        "*",
        "**",
        ".",
        "..",
        "a",
        "Z",
        "td",
        "%2e",
        "é",
        ":",
        "@",
        "?",
        "#",
        "",
        " ",
        "\u{0}",
    ]);
    prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

/// Checks what must hold for any input; panics on a violation.
fn check_any(input: &str) {
    if let Ok(id) = SpiffeId::parse(input) {
        let again = SpiffeId::parse(&id.to_string());
        assert_eq!(again.as_ref(), Ok(&id), "{input:?} does not round-trip");
        assert_eq!(id.as_str(), input);
        let exact = SpiffePattern::parse(input);
        assert!(
            exact.as_ref().is_ok_and(|p| p.is_exact() && p.matches(&id)),
            "{input:?}: an ID is a pattern matching itself ({exact:?})"
        );
    }
    if let Ok(p) = SpiffePattern::parse(input) {
        assert_eq!(p.to_string(), input);
        assert_eq!(SpiffePattern::parse(&p.to_string()).as_ref(), Ok(&p));
        let rest_at = input.find("**");
        assert!(
            rest_at.is_none_or(|i| i + 2 == input.len() && input[..i].ends_with('/')),
            "{input:?}: '**' accepted elsewhere than as the last segment"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_strings_never_panic(input in any::<String>()) {
        check_any(&input);
    }

    #[test]
    fn near_miss_strings_never_panic_and_round_trip(input in spiffe_like()) {
        check_any(&input);
    }

    #[test]
    fn patterns_match_exactly_what_their_definition_says(
        ptd in trust_domain(),
        want in pattern_segments(),
        itd in trust_domain(),
        got in segments(),
    ) {
        let pattern = SpiffePattern::parse(&format!("spiffe://{ptd}/{}", render(&want)))
            .expect("generated pattern parses");
        let id = SpiffeId::parse(&format!("spiffe://{itd}/{}", got.join("/")))
            .expect("generated id parses");
        prop_assert_eq!(pattern.matches(&id), ptd == itd && model(&want, &got));
        if ptd != itd {
            prop_assert!(!pattern.matches(&id));
        }
    }
}

#[test]
fn the_model_says_what_the_readme_says() {
    let segs = |s: &str| s.split('/').map(str::to_owned).collect::<Vec<_>>();
    let lit = |s: &str| Want::Lit(s.to_owned());
    assert!(!model(&[lit("a"), Want::One], &segs("a")));
    assert!(!model(&[lit("a"), Want::Rest], &segs("a")));
    assert!(model(&[lit("a"), Want::Rest], &segs("a/b/c")));
    assert!(model(&[Want::One], &segs("a")));
    assert!(!model(&[Want::One], &segs("a/b")));
}

/// Every seed of `fuzz/corpus/spiffe/` goes through both parsers (as the
/// fuzz target feeds them, lossily decoded) and the invariants above.
#[test]
fn fuzz_corpus_replays_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/spiffe");
    let (mut seen, mut ids, mut patterns) = (0, 0, 0);
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let data = std::fs::read(entry.expect("entry").path()).expect("seed");
        let input = String::from_utf8_lossy(&data);
        check_any(&input);
        ids += usize::from(SpiffeId::parse(&input).is_ok());
        patterns += usize::from(SpiffePattern::parse(&input).is_ok());
        seen += 1;
    }
    assert!(seen >= 20, "corpus has only {seen} seeds");
    assert!(
        ids >= 1 && patterns >= 3,
        "valid seeds must parse ({ids}, {patterns})"
    );
}
