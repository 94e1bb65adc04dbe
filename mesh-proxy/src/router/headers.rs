//! Header rules every proxied message follows: hop-by-hop removal
//! (RFC 9110 §7.6.1), request ids, forwarding headers and the route's
//! add/remove mutations.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::{HeaderMutations, UnderscoreAction};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
pub static X_MESH_ERROR: HeaderName = HeaderName::from_static("x-mesh-error");
pub static X_MESH_OVERLOADED: HeaderName = HeaderName::from_static("x-mesh-overloaded");
pub static X_MESH_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-mesh-attempt-count");
pub static X_MESH_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-mesh-upstream-service-time");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Is this request asking for a protocol upgrade we proxy (WebSocket and
/// other HTTP/1.1 upgrades, never `h2c`: RELIABILITY F16)?
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    let Some(upgrade) = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    connection_upgrade
        && !upgrade
            .split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("h2c"))
}

/// Removes hop-by-hop fields: `Connection` and every field it names, plus the
/// standard ones. `te: trailers` survives (HTTP/2 and gRPC need it). With
/// `keep_upgrade`, `Connection: upgrade` and `Upgrade` stay for a proxied upgrade.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(keep_upgrade && n == header::UPGRADE))
            .collect();
        for name in named {
            if name != header::TE {
                headers.remove(&name);
            }
        }
        headers.remove(header::CONNECTION);
        if keep_upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(&HTTP2_SETTINGS);
    if !keep_upgrade {
        headers.remove(header::UPGRADE);
    }
    if let Some(te) = headers.get(header::TE) {
        let trailers = te.to_str().is_ok_and(|v| {
            v.split(',').any(|t| {
                t.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        } else {
            headers.remove(header::TE);
        }
    }
}

pub fn apply_mutations(headers: &mut HeaderMap, m: &HeaderMutations) {
    for name in &m.remove {
        headers.remove(name);
    }
    for (name, value) in &m.add {
        headers.insert(name.clone(), value.clone());
    }
}

/// Headers the proxy sets, reads or strips itself (besides `x-mesh-*`):
/// no `_` spelling of these ever reaches an app, whatever the setting,
/// since many upstreams (CGI, PHP, Django, nginx with
/// `underscores_in_headers`) read `_` as `-`.
const OWN_HEADERS: [&str; 12] = [
    "x-forwarded-client-cert",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "forwarded",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "content-length",
];

/// Whether `name` is a spelling (with `-` or `_`) of a header the proxy owns.
fn is_own_header_spelling(name: &str) -> bool {
    let n = name.as_bytes();
    n.get(..7).is_some_and(|head| dash_eq(b"x-mesh-", head))
        || OWN_HEADERS.iter().any(|own| dash_eq(own.as_bytes(), n))
}

/// `name` equals `own` with any of its `-` written as `_`.
fn dash_eq(own: &[u8], name: &[u8]) -> bool {
    own.len() == name.len()
        && own
            .iter()
            .zip(name)
            .all(|(o, n)| o == n || (*o == b'-' && *n == b'_'))
}

/// Applies `limits.headers_with_underscores` to a request known to have a
/// header name with an `_` (names are lower-case). Returns how many names
/// were removed, or the 400 `DPE` the request gets under `reject`.
pub fn underscores(
    headers: &mut HeaderMap,
    action: UnderscoreAction,
) -> Result<u64, super::ProxyError> {
    if action == UnderscoreAction::Reject {
        return Err(super::ProxyError::UnderscoreHeader);
    }
    Ok(remove_where(headers, |name| {
        name.contains('_') && (action == UnderscoreAction::Drop || is_own_header_spelling(name))
    }))
}

/// The request's trailer section follows the rules of its header section
/// (`limits.headers_with_underscores`): the proxy's own fields, in any
/// spelling, never pass, nor do names with an `_` unless `allow` (a trailer
/// arrives after the head went upstream, so `reject` drops it too). Some
/// servers merge trailers into headers. Returns how many names were removed.
pub fn sanitize_trailers(trailers: &mut HeaderMap, action: UnderscoreAction) -> u64 {
    remove_where(trailers, |name| {
        is_own_header_spelling(name) || (action != UnderscoreAction::Allow && name.contains('_'))
    })
}

/// Removes every field whose name `barred` says so; returns how many names
/// went. Allocates only when one does.
fn remove_where(headers: &mut HeaderMap, barred: impl Fn(&str) -> bool) -> u64 {
    if !headers.keys().any(|n| barred(n.as_str())) {
        return 0;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| barred(n.as_str()))
        .cloned()
        .collect();
    for name in &doomed {
        headers.remove(name);
    }
    doomed.len() as u64
}

/// A fresh UUID v4 for `x-request-id`. Request ids need uniqueness, not
/// secrecy, so a fast thread-local generator is used instead of a syscall.
pub fn new_request_id() -> HeaderValue {
    let bytes = fastrand::u128(..).to_le_bytes();
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let s = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s)
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-4000-8000-000000000000"))
}

/// Sets `x-forwarded-for` / `x-forwarded-proto`. Untrusted downstreams get
/// their values replaced by what the proxy saw; trusted ones get the peer
/// appended (RELIABILITY P2).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer_ip: &HeaderValue,
    proto: &'static str,
    trust: bool,
) {
    let incoming = if trust {
        let values: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    } else {
        None
    };
    match incoming {
        Some(prev) => {
            let joined = format!("{prev}, {}", peer_ip.to_str().unwrap_or_default());
            match HeaderValue::from_str(&joined) {
                Ok(v) => headers.insert(X_FORWARDED_FOR.clone(), v),
                Err(_) => headers.insert(X_FORWARDED_FOR.clone(), peer_ip.clone()),
            };
        }
        None => {
            headers.insert(X_FORWARDED_FOR.clone(), peer_ip.clone());
        }
    }
    if !(trust && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    headers.remove(header::FORWARDED);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn connection_named_and_standard_hop_by_hop_fields_are_removed() {
        let mut h = map(&[
            ("connection", "close, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=99"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers, deflate"),
            ("upgrade", "foo"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["te", "x-kept"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn te_without_trailers_is_dropped() {
        let mut h = map(&[("te", "deflate")]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }

    #[test]
    fn websocket_upgrade_is_kept_but_h2c_is_not() {
        let ws = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&ws));
        let mut kept = ws.clone();
        strip_hop_by_hop(&mut kept, true);
        assert_eq!(kept["upgrade"], "websocket");
        assert_eq!(kept["connection"], "upgrade");
        let h2c = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAA"),
        ]);
        assert!(!wants_upgrade(&h2c));
        let mut stripped = h2c.clone();
        strip_hop_by_hop(&mut stripped, false);
        assert!(stripped.is_empty());
    }

    #[test]
    fn forwarded_headers_replace_or_append_by_trust() {
        let peer = HeaderValue::from_static("127.0.0.1");
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=x"),
        ]);
        set_forwarded(&mut h, &peer, "http", false);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("forwarded"));
        let mut t = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(&mut t, &peer, "http", true);
        assert_eq!(t["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
        assert_eq!(t["x-forwarded-proto"], "https");
    }

    #[test]
    fn underscore_names_are_dropped_refused_or_kept_but_never_as_own_headers() {
        let forged = [
            ("x-forwarded_client_cert", "URI=spiffe://td/admin"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x_request_id", "forged"),
            ("x-mesh_error", "NR"),
            ("content_length", "5"),
            ("x_custom", "1"),
            ("x-kept", "yes"),
        ];
        let mut dropped = map(&forged);
        assert_eq!(
            underscores(&mut dropped, UnderscoreAction::Drop).ok(),
            Some(6)
        );
        assert_eq!(
            dropped.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["x-kept"]
        );
        let mut allowed = map(&forged);
        assert_eq!(
            underscores(&mut allowed, UnderscoreAction::Allow).ok(),
            Some(5)
        );
        let mut names: Vec<&str> = allowed.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["x-kept", "x_custom"]);
        let mut refused = map(&forged);
        assert!(underscores(&mut refused, UnderscoreAction::Reject).is_err());
        assert_eq!(refused.len(), forged.len());
    }

    #[test]
    fn trailers_lose_own_fields_in_any_spelling_and_underscores_unless_allowed() {
        let trailers = [
            ("x-forwarded-client-cert", "URI=spiffe://td/admin"),
            ("x_forwarded_client_cert", "URI=spiffe://td/admin"),
            ("x-mesh-error", "UAEX"),
            ("content-length", "5"),
            ("grpc_custom", "1"),
            ("x-sum", "42"),
        ];
        for (action, removed, kept) in [
            (UnderscoreAction::Drop, 5, vec!["x-sum"]),
            (UnderscoreAction::Reject, 5, vec!["x-sum"]),
            (UnderscoreAction::Allow, 4, vec!["grpc_custom", "x-sum"]),
        ] {
            let mut t = map(&trailers);
            assert_eq!(sanitize_trailers(&mut t, action), removed, "{action:?}");
            let mut names: Vec<&str> = t.keys().map(|k| k.as_str()).collect();
            names.sort_unstable();
            assert_eq!(names, kept, "{action:?}");
        }
        let mut clean = map(&[("x-sum", "42")]);
        assert_eq!(sanitize_trailers(&mut clean, UnderscoreAction::Drop), 0);
    }

    #[test]
    fn own_header_spellings_need_the_same_letters() {
        assert!(is_own_header_spelling("x_forwarded_proto"));
        assert!(is_own_header_spelling("x_mesh_anything"));
        assert!(!is_own_header_spelling("x_forwarded_protocol"));
        assert!(!is_own_header_spelling("x_meshy"));
        assert!(!is_own_header_spelling("x_forwarded"));
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        let id = uuid::Uuid::parse_str(a.to_str().expect("ascii")).expect("uuid");
        assert_eq!(id.get_version_num(), 4);
    }
}
