//! Request-target normalization and Host validation (SPEC §3 "Paths and
//! hosts", RELIABILITY P4/F13–F15, O10).
//!
//! Routing, authorization, `rewrite_prefix` and the forwarded path all use
//! one normal form, so a deny rule cannot be bypassed with `/./admin`,
//! `/%61dmin`, `//admin` or `/public/..;/admin`: routes see that form with
//! `;parameters` removed from each segment (as a servlet container reads
//! it), and the same form, parameters kept, goes upstream.
//!
//! The normal form: starts with `/`; no empty segment except a trailing
//! slash; no `.`/`..` segment, with or without `;parameters`; escapes of
//! unreserved characters decoded, other escapes upper-cased; bytes outside
//! ASCII percent-encoded (RFC 3986 §2.1), so the form is always ASCII and a
//! string index into it is always a char boundary.

mod host;
#[cfg(test)]
pub(super) mod props;
mod rewrite;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

pub use host::host_for_routing;
pub use rewrite::rewrite_prefix;

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
    /// `..;x`, `.;`, `%2e%2e;` or `;x` as a whole segment: servlet-style
    /// upstreams strip the parameters and then resolve the dot segment.
    #[error("dot or empty segment with ;parameters in the path")]
    DotSegmentParams,
    /// A `rewrite_prefix` would join into a dot segment (`/ap` + `..`).
    #[error("rewritten path is not normal")]
    BadRewrite,
    #[error("invalid host")]
    BadHost,
}

/// Normalizes a path (no query) into the normal form above: decodes
/// percent-encoded unreserved characters and upper-cases the remaining
/// escapes (RFC 3986 §6.2.2), percent-encodes non-ASCII bytes, merges
/// repeated slashes and removes dot segments (§5.2.4). A dot or empty
/// segment that carries `;parameters` is refused rather than resolved: the
/// proxy cannot know whether the upstream treats `..;x` as a name or as
/// `..`. Returns the input unchanged (borrowed) when it is already normal,
/// the common case, so nothing is allocated.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, TargetError> {
    if path.as_bytes().first() != Some(&b'/') {
        return Err(TargetError::NotAbsolute);
    }
    if is_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    normalize_slow(path.as_bytes()).map(Cow::Owned)
}

/// [`normalize_path`] on raw bytes (fuzzing, and targets that are not
/// UTF-8); always allocates.
pub fn normalize_path_bytes(path: &[u8]) -> Result<String, TargetError> {
    if path.first() != Some(&b'/') {
        return Err(TargetError::NotAbsolute);
    }
    normalize_slow(path)
}

/// Whether `path` (starting with '/') is already normal. Anything unusual
/// (an escape, a non-ASCII or forbidden byte) sends it to the slow path,
/// which normalizes it or names the error.
fn is_normal(path: &[u8]) -> bool {
    let mut segments = path[1..].split(|b| *b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let is_last = segments.peek().is_none();
        if seg.is_empty() {
            if is_last {
                return true;
            }
            return false;
        }
        for (i, &b) in seg.iter().enumerate() {
            if !(is_plain(b) || (b == b'%' && is_normal_escape(&seg[i + 1..]))) {
                return false;
            }
        }
        let name = segment_name(seg);
        if matches!(name, b"." | b"..") || (name.is_empty() && seg.contains(&b';')) {
            return false;
        }
    }
    true
}

/// A byte that may stand in the normal form as itself.
fn is_plain(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'%' | b'\\' | b'#' | b'?')
}

/// Whether the two bytes after a `%` are an escape as the normal form
/// writes it: upper-case hex, not an unreserved character nor a slash.
fn is_normal_escape(after: &[u8]) -> bool {
    let upper = |b: &u8| b.is_ascii_digit() || (b'A'..=b'F').contains(b);
    match after {
        [h, l, ..] if upper(h) && upper(l) => {
            let v = (hex(*h).unwrap_or(0) << 4) | hex(*l).unwrap_or(0);
            !is_unreserved(v) && v != b'/' && v != b'\\'
        }
        _ => false,
    }
}

/// The part of a segment before its first `;`.
fn segment_name(seg: &[u8]) -> &[u8] {
    match seg.iter().position(|b| *b == b';') {
        Some(i) => &seg[..i],
        None => seg,
    }
}

fn normalize_slow(path: &[u8]) -> Result<String, TargetError> {
    let mut out = String::with_capacity(path.len() + 8);
    // Where each kept segment starts in `out`, for `..`.
    let mut starts: Vec<usize> = Vec::new();
    let mut seg = String::new();
    let mut trailing_slash = false;
    for raw in path[1..].split(|b| *b == b'/') {
        seg.clear();
        decode_segment(raw, &mut seg)?;
        let has_params = seg.contains(';');
        match (segment_name(seg.as_bytes()), has_params) {
            (b"" | b".", false) => trailing_slash = true,
            (b"..", false) => {
                if let Some(start) = starts.pop() {
                    out.truncate(start);
                }
                trailing_slash = true;
            }
            (b"" | b"." | b"..", true) => return Err(TargetError::DotSegmentParams),
            _ => {
                starts.push(out.len());
                out.push('/');
                out.push_str(&seg);
                trailing_slash = false;
            }
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Appends one segment in normal form: escapes of unreserved characters
/// decoded, other escapes upper-cased, non-ASCII bytes percent-encoded.
fn decode_segment(raw: &[u8], out: &mut String) -> Result<(), TargetError> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'%' => {
                let (hi, lo) = match (raw.get(i + 1), raw.get(i + 2)) {
                    (Some(&h), Some(&l)) => (hex(h), hex(l)),
                    _ => return Err(TargetError::BadEscape),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(TargetError::BadEscape);
                };
                let v = (hi << 4) | lo;
                if v == b'/' || v == b'\\' {
                    return Err(TargetError::EncodedSlash);
                }
                if is_unreserved(v) {
                    out.push(char::from(v));
                } else {
                    push_escape(out, v);
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(TargetError::EncodedSlash),
            b'#' | b'?' | b' ' | 0..=0x1f | 0x7f => return Err(TargetError::BadChar),
            0x80..=0xff => push_escape(out, b),
            _ => out.push(char::from(b)),
        }
        i += 1;
    }
    Ok(())
}

fn push_escape(out: &mut String, v: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(v >> 4)]));
    out.push(char::from(HEX[usize::from(v & 0xf)]));
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
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
