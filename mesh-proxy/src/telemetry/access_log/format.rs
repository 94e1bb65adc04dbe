//! The access log line formats: `json`, Envoy's default `text` line, and
//! Envoy-style format strings (`%REQ(X-REQUEST-ID)% %RESPONSE_CODE%`)
//! parsed once into tokens.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::SystemTime;

use http::HeaderName;

use super::Record;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    Literal(String),
    StartTime,
    Method,
    Path,
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamServiceTime,
    DownstreamRemoteAddress,
    RouteName,
    TraceId,
    PeerIdentity,
    /// Index into [`Record::headers`].
    Req(usize),
}

/// Envoy's default format, for `format: text`.
pub(super) const ENVOY_TEXT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-MESH-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %TRACE_ID%";

#[derive(Debug)]
pub(super) enum Format {
    Json,
    Tokens(Vec<Token>),
}

/// The header a `%REQ(NAME)%` names: `:authority` is the Host header;
/// `None` for a name that is not a valid header name.
pub(super) fn header_key(name: &str) -> Option<HeaderName> {
    let lower = name.to_ascii_lowercase();
    let mapped = match lower.as_str() {
        ":authority" => "host",
        other => other,
    };
    HeaderName::from_bytes(mapped.as_bytes()).ok()
}

/// Why a format string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("unterminated operator in {format:?}")]
    Unterminated { format: String },
    #[error("unknown operator %{op}%")]
    UnknownOperator { op: String },
    #[error("invalid header name in %{op}%")]
    InvalidHeader { op: String },
}

pub(super) fn parse(format: &str, wanted: &mut Vec<HeaderName>) -> Result<Vec<Token>, FormatError> {
    let mut tokens = Vec::new();
    let mut rest = format;
    while let Some(start) = rest.find('%') {
        if start > 0 {
            tokens.push(Token::Literal(rest[..start].to_owned()));
        }
        let after = &rest[start + 1..];
        let end = after.find('%').ok_or_else(|| FormatError::Unterminated {
            format: format.to_owned(),
        })?;
        let op = &after[..end];
        tokens.push(operator(op, wanted)?);
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        tokens.push(Token::Literal(rest.to_owned()));
    }
    Ok(tokens)
}

fn operator(op: &str, wanted: &mut Vec<HeaderName>) -> Result<Token, FormatError> {
    Ok(match op {
        "START_TIME" => Token::StartTime,
        "PROTOCOL" => Token::Protocol,
        "RESPONSE_CODE" => Token::ResponseCode,
        "RESPONSE_FLAGS" => Token::ResponseFlags,
        "BYTES_RECEIVED" => Token::BytesReceived,
        "BYTES_SENT" => Token::BytesSent,
        "DURATION" => Token::Duration,
        "UPSTREAM_HOST" => Token::UpstreamHost,
        "UPSTREAM_CLUSTER" => Token::UpstreamCluster,
        "DOWNSTREAM_REMOTE_ADDRESS" => Token::DownstreamRemoteAddress,
        "ROUTE_NAME" => Token::RouteName,
        "TRACE_ID" => Token::TraceId,
        "DOWNSTREAM_PEER_URI_SAN" => Token::PeerIdentity,
        "REQ(:METHOD)" => Token::Method,
        "REQ(:PATH)" | "REQ(X-ENVOY-ORIGINAL-PATH?:PATH)" => Token::Path,
        "RESP(X-MESH-UPSTREAM-SERVICE-TIME)" | "RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)" => {
            Token::UpstreamServiceTime
        }
        _ => {
            let Some(name) = op.strip_prefix("REQ(").and_then(|s| s.strip_suffix(')')) else {
                return Err(FormatError::UnknownOperator { op: op.to_owned() });
            };
            let key =
                header_key(name).ok_or_else(|| FormatError::InvalidHeader { op: op.to_owned() })?;
            let idx = match wanted.iter().position(|w| *w == key) {
                Some(i) => i,
                None => {
                    wanted.push(key);
                    wanted.len() - 1
                }
            };
            Token::Req(idx)
        }
    })
}

/// One `format: json` line; keys in a fixed, documented order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    start_time: String,
    method: &'a str,
    path: &'a str,
    protocol: &'a str,
    response_code: u16,
    response_flags: &'a str,
    bytes_received: u64,
    bytes_sent: u64,
    duration_ms: u64,
    upstream_host: Option<SocketAddr>,
    upstream_cluster: Option<&'a str>,
    upstream_service_time_ms: Option<u64>,
    downstream_remote_address: SocketAddr,
    listener: &'a str,
    route: Option<&'a str>,
    /// The rule that allowed the request, `-` when none did.
    authz_rule: &'a str,
    attempts: u32,
    request_id: Option<&'a str>,
    authority: Option<&'a str>,
    user_agent: Option<&'a str>,
    x_forwarded_for: Option<&'a str>,
    trace_id: Option<&'a str>,
    peer_identity: Option<&'a str>,
}

fn rfc3339(t: SystemTime) -> String {
    let odt = time::OffsetDateTime::from(t);
    odt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".to_owned())
}

fn header<'a>(record: &'a Record, wanted: &[HeaderName], name: &str) -> Option<&'a str> {
    let idx = wanted.iter().position(|w| w.as_str() == name)?;
    record.headers.get(idx)?.as_ref()?.to_str().ok()
}

pub(super) fn render(format: &Format, r: &Record, wanted: &[HeaderName], out: &mut String) {
    match format {
        Format::Json => render_json(r, wanted, out),
        Format::Tokens(tokens) => {
            for t in tokens {
                render_token(t, r, out);
            }
        }
    }
}

fn render_json(r: &Record, wanted: &[HeaderName], out: &mut String) {
    // A borrowed struct serialized straight into the line: no map
    // of owned values per record (the writer thread is this
    // process's CPU too).
    let line = JsonLine {
        start_time: rfc3339(r.start),
        method: r.method.as_str(),
        path: &r.path,
        protocol: r.protocol,
        response_code: r.status,
        response_flags: r.flag,
        bytes_received: r.bytes_received,
        bytes_sent: r.bytes_sent,
        duration_ms: r.duration.as_millis() as u64,
        upstream_host: r.upstream_host,
        upstream_cluster: r.upstream_cluster.as_deref(),
        upstream_service_time_ms: r.upstream_ms,
        downstream_remote_address: r.downstream,
        listener: &r.listener,
        route: r.route.as_deref(),
        authz_rule: r.authz_rule.as_deref().unwrap_or("-"),
        attempts: r.attempts,
        request_id: header(r, wanted, "x-request-id"),
        authority: header(r, wanted, "host"),
        user_agent: header(r, wanted, "user-agent"),
        x_forwarded_for: header(r, wanted, "x-forwarded-for"),
        trace_id: r.trace_id.as_deref(),
        peer_identity: r.peer_identity.as_deref(),
    };
    // Serializing plain strings and numbers cannot fail.
    let mut buf = std::mem::take(out).into_bytes();
    let _ = serde_json::to_writer(&mut buf, &line);
    *out = String::from_utf8(buf).unwrap_or_default();
}

fn render_token(t: &Token, r: &Record, out: &mut String) {
    let _ = match t {
        Token::Literal(s) => {
            out.push_str(s);
            Ok(())
        }
        Token::StartTime => write!(out, "{}", rfc3339(r.start)),
        Token::Method => write!(out, "{}", r.method),
        Token::Path => write!(out, "{}", r.path),
        Token::Protocol => write!(out, "{}", r.protocol),
        Token::ResponseCode => write!(out, "{}", r.status),
        Token::ResponseFlags => write!(out, "{}", r.flag),
        Token::BytesReceived => write!(out, "{}", r.bytes_received),
        Token::BytesSent => write!(out, "{}", r.bytes_sent),
        Token::Duration => write!(out, "{}", r.duration.as_millis()),
        Token::UpstreamHost => write!(
            out,
            "{}",
            r.upstream_host.map_or("-".to_owned(), |a| a.to_string())
        ),
        Token::UpstreamCluster => {
            write!(out, "{}", r.upstream_cluster.as_deref().unwrap_or("-"))
        }
        Token::UpstreamServiceTime => write!(
            out,
            "{}",
            r.upstream_ms.map_or("-".to_owned(), |m| m.to_string())
        ),
        Token::DownstreamRemoteAddress => write!(out, "{}", r.downstream),
        Token::RouteName => write!(out, "{}", r.route.as_deref().unwrap_or("-")),
        Token::TraceId => write!(out, "{}", r.trace_id.as_deref().unwrap_or("-")),
        Token::PeerIdentity => {
            write!(out, "{}", r.peer_identity.as_deref().unwrap_or("-"))
        }
        Token::Req(i) => write!(
            out,
            "{}",
            r.headers
                .get(*i)
                .and_then(|v| v.as_ref())
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
        ),
    };
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;

    fn record(wanted: &[HeaderName]) -> Record {
        Record {
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            duration: Duration::from_millis(12),
            method: http::Method::GET,
            path: "/pay?x=1".to_owned(),
            protocol: "HTTP/1.1",
            status: 503,
            flag: "UF",
            bytes_received: 0,
            bytes_sent: 25,
            upstream_host: Some("10.0.0.1:8080".parse().expect("addr")),
            upstream_cluster: Some(Arc::from("payments")),
            upstream_ms: None,
            downstream: "127.0.0.1:5555".parse().expect("addr"),
            listener: Arc::from("egress"),
            route: Some(Arc::from("egress/0")),
            authz_rule: None,
            attempts: 3,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
            peer_identity: None,
            headers: wanted
                .iter()
                .map(|w| (w.as_str() == "x-request-id").then(|| HeaderValue::from_static("req-1")))
                .collect(),
        }
    }

    #[test]
    fn envoy_style_format_strings_render_each_operator() {
        let mut wanted = Vec::new();
        let f = "%START_TIME% %REQ(:METHOD)% %REQ(X-REQUEST-ID)% %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION% %UPSTREAM_HOST% %DOWNSTREAM_REMOTE_ADDRESS% %BYTES_SENT% %REQ(X-MISSING)% %TRACE_ID%";
        let tokens = parse(f, &mut wanted).expect("parses");
        let mut out = String::new();
        render(&Format::Tokens(tokens), &record(&wanted), &wanted, &mut out);
        assert_eq!(
            out,
            "2023-11-14T22:13:20Z GET req-1 503 UF 12 10.0.0.1:8080 127.0.0.1:5555 25 - 4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn unknown_operators_and_unterminated_ones_are_errors() {
        let e = parse("%NOPE%", &mut Vec::new()).expect_err("an unknown operator is an error");
        assert_eq!(e.to_string(), "unknown operator %NOPE%");
        assert!(parse("%START_TIME", &mut Vec::new()).is_err());
    }

    #[test]
    fn json_lines_carry_the_trace_id_and_flags() {
        let wanted = vec![HeaderName::from_static("x-request-id")];
        let mut out = String::new();
        render(&Format::Json, &record(&wanted), &wanted, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["response_flags"], "UF");
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["attempts"], 3);
    }

    #[test]
    fn route_name_operator_and_json_route_carry_the_route_name() {
        let mut wanted = Vec::new();
        let tokens = parse("%ROUTE_NAME% %RESPONSE_CODE%", &mut wanted).expect("parses");
        let mut rec = record(&wanted);
        rec.route = Some(Arc::from("abort20"));
        let mut out = String::new();
        render(&Format::Tokens(tokens.clone()), &rec, &wanted, &mut out);
        assert_eq!(out, "abort20 503");
        out.clear();
        render(&Format::Json, &rec, &wanted, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["route"], "abort20");
        rec.route = None;
        out.clear();
        render(&Format::Tokens(tokens), &rec, &wanted, &mut out);
        assert_eq!(out, "- 503", "no route (a 404 NR): a dash");
    }

    #[test]
    fn the_text_format_parses() {
        let mut wanted = Vec::new();
        assert!(parse(ENVOY_TEXT, &mut wanted).is_ok());
        assert!(wanted.iter().any(|w| w == "user-agent"));
    }
}
