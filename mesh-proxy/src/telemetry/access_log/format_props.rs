//! Property tests of the access-log format parser, and the replay of its
//! seed corpus (`mesh-proxy/fuzz/corpus/access_log_format/`, nasty inputs
//! kept as regression cases).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};
use proptest::prelude::*;

use super::Record;
use super::format::{Format, FormatError, Token, parse, render};

/// Each canonical operator and what it renders for [`record`].
const OPERATORS: &[(&str, &str)] = &[
    ("START_TIME", "2023-11-14T22:13:20Z"),
    ("REQ(:METHOD)", "GET"),
    ("REQ(:PATH)", "/pay?x=1"),
    ("PROTOCOL", "HTTP/1.1"),
    ("RESPONSE_CODE", "503"),
    ("RESPONSE_FLAGS", "UF"),
    ("BYTES_RECEIVED", "7"),
    ("BYTES_SENT", "25"),
    ("DURATION", "12"),
    ("UPSTREAM_HOST", "10.0.0.1:8080"),
    ("UPSTREAM_CLUSTER", "payments"),
    ("RESP(X-MESH-UPSTREAM-SERVICE-TIME)", "4"),
    ("DOWNSTREAM_REMOTE_ADDRESS", "127.0.0.1:5555"),
    ("ROUTE_NAME", "egress/0"),
    ("TRACE_ID", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("DOWNSTREAM_PEER_URI_SAN", "spiffe://mesh.test/web"),
    ("REQ(x-request-id)", "req-1"),
    ("REQ(user-agent)", "curl/8"),
    ("REQ(x-absent)", "-"),
];

fn record(wanted: &[HeaderName]) -> Record {
    Record {
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        duration: Duration::from_millis(12),
        method: http::Method::GET,
        path: "/pay?x=1".to_owned(),
        protocol: "HTTP/1.1",
        status: 503,
        flag: "UF",
        bytes_received: 7,
        bytes_sent: 25,
        upstream_host: "10.0.0.1:8080".parse().ok(),
        upstream_cluster: Some(Arc::from("payments")),
        upstream_ms: Some(4),
        downstream: "127.0.0.1:5555".parse().expect("addr"),
        listener: Arc::from("egress"),
        route: Some(Arc::from("egress/0")),
        authz_rule: None,
        attempts: 1,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
        peer_identity: Some("spiffe://mesh.test/web".to_owned()),
        headers: wanted
            .iter()
            .map(|w| match w.as_str() {
                "x-request-id" => Some(HeaderValue::from_static("req-1")),
                "user-agent" => Some(HeaderValue::from_static("curl/8")),
                _ => None,
            })
            .collect(),
    }
}

/// The format string a token list came from, in canonical spelling.
fn unparse(tokens: &[Token], wanted: &[HeaderName]) -> String {
    let mut out = String::new();
    for t in tokens {
        let op = match t {
            Token::Literal(s) => {
                out.push_str(s);
                continue;
            }
            Token::Req(i) => format!("REQ({})", wanted[*i]),
            Token::StartTime => "START_TIME".into(),
            Token::Method => "REQ(:METHOD)".into(),
            Token::Path => "REQ(:PATH)".into(),
            Token::Protocol => "PROTOCOL".into(),
            Token::ResponseCode => "RESPONSE_CODE".into(),
            Token::ResponseFlags => "RESPONSE_FLAGS".into(),
            Token::BytesReceived => "BYTES_RECEIVED".into(),
            Token::BytesSent => "BYTES_SENT".into(),
            Token::Duration => "DURATION".into(),
            Token::UpstreamHost => "UPSTREAM_HOST".into(),
            Token::UpstreamCluster => "UPSTREAM_CLUSTER".into(),
            Token::UpstreamServiceTime => "RESP(X-MESH-UPSTREAM-SERVICE-TIME)".into(),
            Token::DownstreamRemoteAddress => "DOWNSTREAM_REMOTE_ADDRESS".into(),
            Token::RouteName => "ROUTE_NAME".into(),
            Token::TraceId => "TRACE_ID".into(),
            Token::PeerIdentity => "DOWNSTREAM_PEER_URI_SAN".into(),
        };
        out.push('%');
        out.push_str(&op);
        out.push('%');
    }
    out
}

/// Parses and, when the format is valid, renders it: must never panic.
fn parse_and_render(format: &str) -> Result<String, FormatError> {
    let mut wanted = Vec::new();
    let tokens = parse(format, &mut wanted)?;
    let mut out = String::new();
    render(&Format::Tokens(tokens), &record(&wanted), &wanted, &mut out);
    Ok(out)
}

/// A valid format: literals without `%` around known operators, with the
/// line it renders for [`record`].
fn valid_format() -> impl Strategy<Value = (String, String)> {
    let literal = "[^%]{0,8}";
    let piece = (literal, 0..OPERATORS.len());
    (proptest::collection::vec(piece, 0..12), literal).prop_map(|(pieces, tail)| {
        let (mut format, mut line) = (String::new(), String::new());
        for (lit, op) in pieces {
            let (name, rendered) = OPERATORS[op];
            format.push_str(&format!("{lit}%{name}%"));
            line.push_str(&lit);
            line.push_str(rendered);
        }
        format.push_str(&tail);
        line.push_str(&tail);
        (format, line)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = parse_and_render(&s);
    }

    #[test]
    fn operator_like_strings_never_panic(s in "[%A-Za-z_():?\\-é ]{0,64}") {
        let _ = parse_and_render(&s);
    }

    #[test]
    fn valid_formats_render_each_operator_and_round_trip((format, line) in valid_format()) {
        let mut wanted = Vec::new();
        let tokens = parse(&format, &mut wanted).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(unparse(&tokens, &wanted), format.clone());
        let mut out = String::new();
        render(&Format::Tokens(tokens), &record(&wanted), &wanted, &mut out);
        prop_assert_eq!(out, line);
    }

    #[test]
    fn an_unknown_operator_is_an_error_naming_it(
        op in prop_oneof!["[^%]{0,24}", "REQ\\([^%()]{0,12}\\)", "RESP\\([^%]{0,12}\\)", "[A-Z_]{1,24}"]
    ) {
        let known = OPERATORS.iter().any(|(name, _)| *name == op)
            || op == "REQ(X-ENVOY-ORIGINAL-PATH?:PATH)"
            || op == "RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)"
            || op
                .strip_prefix("REQ(")
                .and_then(|s| s.strip_suffix(')'))
                .is_some_and(|h| super::format::header_key(h).is_some());
        let result = parse(&format!("a %{op}% b"), &mut Vec::new());
        if known {
            prop_assert!(result.is_ok(), "{:?}", result);
        } else {
            let e = result.expect_err("an unknown operator is an error");
            prop_assert!(e.to_string().contains(&format!("%{op}%")), "{}", e);
        }
    }
}

#[test]
fn fuzz_corpus_replays_without_panicking() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/access_log_format");
    let (mut seen, mut valid) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("seed");
        valid += usize::from(parse_and_render(&String::from_utf8_lossy(&data)).is_ok());
        seen += 1;
    }
    assert!(seen >= 10, "corpus has only {seen} seeds");
    assert!(valid >= 3, "the valid seeds must parse ({valid})");
    assert!(
        seen - valid >= 5,
        "the invalid seeds must fail ({})",
        seen - valid
    );
}
