//! `rewrite_prefix` on the normal form.
//!
//! Routes match the path without `;parameters`, but the parameters go
//! upstream, so the matched prefix's length is a length in the stripped
//! view: it is mapped back onto the normal form before the cut. The form is
//! ASCII, so every cut is on a char boundary.

use super::{TargetError, normalize_path};

/// Replaces the first `matched` bytes of `without_params(path)` (the
/// matched route prefix) with `new`. `path` is in normal form. Parameters
/// of the last replaced segment go with it. The result must itself be in
/// normal form: a prefix that ends inside a segment can join `new` with a
/// dot segment (`/ap` + `..` → `/new/..`), which is refused rather than
/// resolved outside `new`.
pub fn rewrite_prefix(path: &str, matched: usize, new: &str) -> Result<String, TargetError> {
    let rest = &path[cut(path.as_bytes(), matched)..];
    let mut out = String::with_capacity(new.len() + rest.len() + 1);
    out.push_str(new);
    // Exactly one '/' at the seam.
    match (out.ends_with('/'), rest.strip_prefix('/')) {
        (true, Some(tail)) => out.push_str(tail),
        (false, None) if !rest.is_empty() => {
            out.push('/');
            out.push_str(rest);
        }
        _ => out.push_str(rest),
    }
    match normalize_path(&out) {
        Ok(n) if n == out => Ok(out),
        _ => Err(TargetError::BadRewrite),
    }
}

/// The index in `path` after `stripped_len` bytes of its `;parameter`-free
/// view, and after the parameters of the segment that ends there.
fn cut(path: &[u8], stripped_len: usize) -> usize {
    let mut kept = 0;
    let mut i = 0;
    let mut in_params = false;
    while i < path.len() {
        let b = path[i];
        if b == b'/' {
            in_params = false;
        } else if b == b';' {
            in_params = true;
        }
        if !in_params {
            if kept == stripped_len {
                return i;
            }
            kept += 1;
        }
        i += 1;
    }
    path.len()
}
