//! Host / `:authority` validation (SPEC §3 "Paths and hosts").

use std::borrow::Cow;

use super::TargetError;

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
