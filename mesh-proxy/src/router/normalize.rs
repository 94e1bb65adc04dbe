//! Request-target normalization and Host validation (SPEC §3 "Paths and
//! hosts", RELIABILITY P4/F13–F15).
//!
//! Routing and authorization run on the normalized path, and the same
//! normalized path goes upstream, so a deny rule cannot be bypassed with
//! `/./admin`, `/%61dmin` or `//admin`.

use std::borrow::Cow;

/// Why a request target or Host was refused; all map to 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("encoded slash or backslash in the path")]
    EncodedSlash,
    #[error("invalid percent-encoding in the path")]
    BadEscape,
    #[error("invalid character in the path")]
    BadChar,
    #[error("path does not start with '/'")]
    NotAbsolute,
    #[error("invalid host")]
    BadHost,
}

/// Normalizes a path (no query): decodes percent-encoded unreserved
/// characters and upper-cases the remaining escapes (RFC 3986 §6.2.2),
/// merges repeated slashes, and removes dot segments (§5.2.4). Returns the
/// input unchanged (borrowed) when it is already normal, which is the common
/// case, so nothing is allocated.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, TargetError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(TargetError::NotAbsolute);
    }
    let mut needs_work = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                        (*h, *l)
                    }
                    _ => return Err(TargetError::BadEscape),
                };
                let decoded = hex(hi) << 4 | hex(lo);
                if decoded == b'/' || decoded == b'\\' {
                    return Err(TargetError::EncodedSlash);
                }
                needs_work = true;
                i += 3;
                continue;
            }
            b'\\' => return Err(TargetError::EncodedSlash),
            b'#' | b' ' | 0..=0x1f | 0x7f => return Err(TargetError::BadChar),
            b'/' if bytes.get(i + 1) == Some(&b'/') => needs_work = true,
            b'.' if bytes[i - 1] == b'/' => {
                // "/." or "/.." followed by '/' or end is a dot segment.
                let rest = &bytes[i + 1..];
                if rest.is_empty()
                    || rest[0] == b'/'
                    || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/'))
                {
                    needs_work = true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(bytes);
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes escapes of unreserved characters, upper-cases the others and
/// merges slashes. Input was checked by `normalize_path`.
fn decode_unreserved(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let v = hex(bytes[i + 1]) << 4 | hex(bytes[i + 2]);
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(bytes[i + 1].to_ascii_uppercase() as char);
                out.push(bytes[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
            continue;
        }
        if b == b'/' && out.ends_with('/') {
            i += 1;
            continue;
        }
        // Only ASCII reaches here: non-ASCII bytes are not valid in a URI
        // that `http::Uri` accepted, but stay lossless if they do.
        out.push(b as char);
        i += 1;
    }
    out
}

/// RFC 3986 §5.2.4, on a path that starts with '/'.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let trailing_slash = path.ends_with("/.") || path.ends_with("/..") || path.ends_with('/');
    for seg in path.split('/').skip(1) {
        match seg {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    // A kept empty last segment already encodes a trailing slash.
    if segments.last() == Some(&"") {
        segments.pop();
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

/// The path that routes see: `;parameters` removed from every segment, so
/// `/admin;x=1` matches rules for `/admin` the way servlet containers and
/// other lenient upstreams would read it. The path sent upstream keeps them.
pub fn without_params(path: &str) -> Cow<'_, str> {
    if !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(seg.split(';').next().unwrap_or(""));
    }
    Cow::Owned(out)
}

/// Validates a Host / `:authority` value and returns the host part,
/// lower-cased only when needed, without the port or a trailing dot.
/// Accepts DNS names (letters, digits, `-`, `_`, non-empty labels), IPv4 and
/// bracketed IPv6 literals, each with an optional numeric port.
pub fn host_for_routing(authority: &str) -> Result<Cow<'_, str>, TargetError> {
    let (host, port) = split_host_port(authority)?;
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(TargetError::BadHost);
    }
    if host.starts_with('[') {
        let inner = &host[1..host.len() - 1];
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(TargetError::BadHost);
        }
        return Ok(Cow::Borrowed(host));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return Err(TargetError::BadHost);
    }
    let mut has_upper = false;
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(TargetError::BadHost);
        }
        for b in label.bytes() {
            if b.is_ascii_uppercase() {
                has_upper = true;
            } else if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
                return Err(TargetError::BadHost);
            }
        }
    }
    Ok(if has_upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), TargetError> {
    if authority.starts_with('[') {
        let end = authority.find(']').ok_or(TargetError::BadHost)?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err(TargetError::BadHost),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((authority, None)),
    }
}

#[cfg(test)]
mod tests {
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
        ] {
            let out = normalize_path(p).expect("valid");
            if p == "/%20x" {
                assert_eq!(out, "/%20x");
            } else {
                assert!(matches!(out, Cow::Borrowed(_)), "{p} was copied");
                assert_eq!(out, p);
            }
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
}
