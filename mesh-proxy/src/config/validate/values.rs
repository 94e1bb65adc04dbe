//! Parsers for the leaf values of the config: durations, addresses, names,
//! SPIFFE IDs, headers, methods, files. Each returns the [`ValueError`] to
//! report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use mesh_ca::SpiffePattern;

use super::super::model::{EndpointAddr, HostMatch};
use super::super::suggest::did_you_mean;
use super::value_error::ValueError;

/// humantime syntax (`250ms`, `1m30s`); a bare `0` is zero.
pub(super) fn duration(text: &str) -> Result<Duration, ValueError> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(trimmed).map_err(|source| ValueError::Duration {
        text: text.to_owned(),
        source,
    })
}

/// One word out of a fixed set, with a suggestion for a near miss.
pub(super) fn one_of<T: Copy>(
    what: &str,
    text: &str,
    options: &[(&str, T)],
) -> Result<T, ValueError> {
    if let Some((_, value)) = options.iter().find(|(name, _)| *name == text) {
        return Ok(*value);
    }
    let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
    let hint = did_you_mean(text, names.iter().copied());
    let (what, text) = (what.to_owned(), text.to_owned());
    if hint.is_empty() {
        let expected = names.join(", ");
        Err(ValueError::NotOneOf {
            what,
            text,
            expected,
        })
    } else {
        Err(ValueError::NearMiss { what, text, hint })
    }
}

/// A listen address: `IP:port`, `[v6]:port` or `localhost:port`.
pub(super) fn listen_address(text: &str) -> Result<SocketAddr, ValueError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |why: String| ValueError::Address {
        text: text.to_owned(),
        why,
    };
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = port
            .parse::<u16>()
            .map_err(|_| bad(format!("invalid port \"{port}\"")))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(bad(
        "expected IP:port such as 0.0.0.0:15006, [::1]:80 or localhost:8080".to_owned(),
    ))
}

/// `host:port` of an upstream endpoint; with static discovery the host must
/// be an IP literal. IPv6 hosts are stored without brackets.
pub(super) fn endpoint(text: &str, dns: bool) -> Result<EndpointAddr, ValueError> {
    let bad = |why: &str| ValueError::Endpoint {
        text: text.to_owned(),
        why: why.to_owned(),
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("expected [IPv6]:port"))?;
        (host, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| bad("expected host:port"))?;
        if host.contains(':') {
            return Err(bad("write IPv6 addresses in brackets, as [::1]:8080"));
        }
        (host, port)
    };
    let port: u16 = port
        .parse()
        .map_err(|_| bad(&format!("invalid port \"{port}\"")))?;
    if port == 0 {
        return Err(bad("port 0 is not a valid upstream port"));
    }
    let is_ip = host.parse::<IpAddr>().is_ok();
    if !is_ip && !dns {
        return Err(bad(&format!(
            "\"{host}\" is not an IP address; use discovery: dns to resolve host names"
        )));
    }
    if !is_ip && !is_hostname(host) {
        return Err(bad(&format!("\"{host}\" is not a valid host name")));
    }
    Ok(EndpointAddr {
        host: host.to_owned(),
        port,
    })
}

/// RFC 1123 host name (underscores tolerated, as in DNS service names).
pub(super) fn is_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Listener and cluster names end up in dotted metric names.
pub(super) fn name(text: &str) -> Result<(), ValueError> {
    let ok = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then_some(()).ok_or_else(|| ValueError::Name {
        text: text.to_owned(),
    })
}

/// Route names appear in dotted metric names and in `route=<listener>/<name>`.
pub(super) fn route_name(text: &str) -> Result<(), ValueError> {
    // Digits alone would be an unnamed route's `<listener>/<index>`.
    let ok = !text.is_empty()
        && !text.bytes().all(|b| b.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then_some(()).ok_or_else(|| ValueError::RouteName {
        text: text.to_owned(),
    })
}

/// `spiffe://trust-domain/path`; with `wildcards` a `*` may stand for one
/// whole path segment and a last `**` for the rest of the path.
pub(super) fn spiffe_id(text: &str, wildcards: bool) -> Result<(), ValueError> {
    let bad = |why: &str| ValueError::SpiffeId {
        text: text.to_owned(),
        why: why.to_owned(),
    };
    let rest = text
        .strip_prefix("spiffe://")
        .ok_or_else(|| bad("must start with spiffe://"))?;
    let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
    let domain_ok = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
    if !domain_ok {
        return Err(bad(&format!(
            "invalid trust domain \"{domain}\" (lowercase letters, digits, '.', '-', '_')"
        )));
    }
    if path.is_empty() {
        return Err(bad(
            "a workload ID needs a path, as spiffe://mesh.local/orders",
        ));
    }
    let segments = path.split('/').count();
    for (i, segment) in path.split('/').enumerate() {
        if wildcards && segment == "**" && i + 1 < segments {
            return Err(bad(
                "'**' (the rest of the path) may only be the last path segment",
            ));
        }
        let is_glob = wildcards && (segment == "*" || segment == "**");
        let valid = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !is_glob && !valid {
            let why = if segment.contains('*') && wildcards {
                "'*' may only stand for a whole path segment".to_owned()
            } else {
                format!("invalid path segment \"{segment}\"")
            };
            return Err(bad(&why));
        }
    }
    Ok(())
}

/// An allow-list entry: checked by [`spiffe_id`] (the proxy's words), then
/// parsed by the matcher the listener will use.
pub(super) fn spiffe_pattern(text: &str) -> Result<SpiffePattern, ValueError> {
    spiffe_id(text, true)?;
    Ok(SpiffePattern::parse(text)?)
}

pub(super) fn header_name(text: &str) -> Result<HeaderName, ValueError> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| ValueError::HeaderName {
        text: text.to_owned(),
    })
}

pub(super) fn header_value(text: &str) -> Result<HeaderValue, ValueError> {
    HeaderValue::from_str(text).map_err(|_| ValueError::HeaderValue {
        text: text.to_owned(),
    })
}

/// An HTTP method token, uppercased (`get` → `GET`).
pub(super) fn method(text: &str) -> Result<Method, ValueError> {
    let upper = text.to_ascii_uppercase();
    let bad = || ValueError::Method {
        text: text.to_owned(),
    };
    if upper.is_empty() {
        return Err(bad());
    }
    Method::from_bytes(upper.as_bytes()).map_err(|_| bad())
}

/// A status code a proxy may send: 100–599.
pub(super) fn status(code: u32) -> Result<StatusCode, ValueError> {
    u16::try_from(code)
        .ok()
        .filter(|c| (100..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(ValueError::Status { code })
}

/// Route host match: exact or `*.suffix`, lowercase, port dropped; `*` alone
/// matches every host (`None`).
pub(super) fn host_match(text: &str) -> Result<Option<HostMatch>, ValueError> {
    let bad = |why: &'static str| ValueError::HostMatch {
        text: text.to_owned(),
        why,
    };
    let lower = text.trim().to_ascii_lowercase();
    let host = strip_port(&lower);
    if host == "*" {
        return Ok(None);
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.contains('*') || !is_hostname(suffix) {
            return Err(bad("expected a host name or *.suffix"));
        }
        return Ok(Some(HostMatch::Suffix(format!(".{suffix}"))));
    }
    if host.contains('*') {
        return Err(bad("the only wildcard allowed is a leading \"*.\""));
    }
    let is_ip = host.parse::<IpAddr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<IpAddr>().is_ok());
    if !is_ip && !is_hostname(host) {
        return Err(bad("expected a host name or *.suffix"));
    }
    Ok(Some(HostMatch::Exact(host.to_owned())))
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// A path relative to the config folder.
pub(super) fn resolve(base_dir: &Path, text: &str) -> PathBuf {
    base_dir.join(text)
}

/// A file the proxy will read: it must exist and be readable now.
pub(super) fn readable_file(base_dir: &Path, text: &str) -> Result<PathBuf, ValueError> {
    let path = resolve(base_dir, text);
    let shown = if path.as_os_str() == text {
        format!("\"{text}\"")
    } else {
        format!("\"{text}\" ({})", path.display())
    };
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => return Err(ValueError::Directory { shown }),
        Ok(_) => {}
        Err(source) => return Err(ValueError::Unreadable { shown, source }),
    }
    match std::fs::File::open(&path) {
        Ok(_) => Ok(path),
        Err(source) => Err(ValueError::Unreadable { shown, source }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // The messages as the user reads them (these shadow the glob import).
    fn duration(text: &str) -> Result<Duration, String> {
        super::duration(text).map_err(|e| e.to_string())
    }
    fn listen_address(text: &str) -> Result<SocketAddr, String> {
        super::listen_address(text).map_err(|e| e.to_string())
    }
    fn host_match(text: &str) -> Result<Option<HostMatch>, String> {
        super::host_match(text).map_err(|e| e.to_string())
    }
    fn method(text: &str) -> Result<Method, String> {
        super::method(text).map_err(|e| e.to_string())
    }
    fn one_of<T: Copy>(what: &str, text: &str, options: &[(&str, T)]) -> Result<T, String> {
        super::one_of(what, text, options).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_use_humantime_and_bare_zero() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        let err = duration("5 parsecs").unwrap_err().to_string();
        assert!(err.starts_with("invalid duration \"5 parsecs\": "), "{err}");
        assert!(duration("5").is_err());
    }

    #[test]
    fn listen_addresses_need_an_ip_or_localhost() {
        assert_eq!(
            listen_address("0.0.0.0:15006"),
            Ok("0.0.0.0:15006".parse().unwrap())
        );
        assert_eq!(listen_address("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
        assert_eq!(
            listen_address("localhost:8080"),
            Ok("127.0.0.1:8080".parse().unwrap())
        );
        assert!(listen_address("example.com:80").is_err());
        assert!(listen_address("127.0.0.1").is_err());
        assert!(listen_address("localhost:99999").is_err());
    }

    #[test]
    fn endpoints_keep_host_and_port() {
        let ep = endpoint("[::1]:8080", false).unwrap();
        assert_eq!((ep.host.as_str(), ep.port), ("::1", 8080));
        let ep = endpoint("payments:15006", true).unwrap();
        assert_eq!((ep.host.as_str(), ep.port), ("payments", 15006));
        assert!(
            endpoint("payments:15006", false)
                .unwrap_err()
                .to_string()
                .contains("discovery: dns")
        );
        let e = endpoint("::1:80", false).unwrap_err().to_string();
        assert!(e.contains("brackets"), "{e}");
        assert!(endpoint("10.0.0.1:0", false).is_err());
        assert!(endpoint("bad host:80", true).is_err());
    }

    #[test]
    fn spiffe_ids_allow_whole_segment_globs_only_where_asked() {
        assert!(spiffe_id("spiffe://mesh.local/orders", false).is_ok());
        assert!(spiffe_id("spiffe://mesh.local/ns/prod/sa/orders", false).is_ok());
        assert!(spiffe_id("spiffe://mesh.local/ns/*/sa/web", true).is_ok());
        assert!(spiffe_id("spiffe://mesh.local/ns/*/sa/web", false).is_err());
        assert!(spiffe_id("spiffe://mesh.local/web-*", true).is_err());
        assert!(spiffe_id("spiffe://mesh.local", false).is_err());
        assert!(spiffe_id("spiffe://Mesh.local/x", false).is_err());
        assert!(spiffe_id("https://mesh.local/x", false).is_err());
        assert!(spiffe_id("spiffe://mesh.local/a//b", false).is_err());
        assert!(spiffe_id("spiffe://mesh.local/**", true).is_ok());
        assert!(spiffe_id("spiffe://mesh.local/ns/*/sa/**", true).is_ok());
        assert!(spiffe_id("spiffe://mesh.local/**", false).is_err());
        assert!(spiffe_id("spiffe://mesh.local/**/web", true).is_err());
        assert!(spiffe_id("spiffe://mesh.local/***", true).is_err());
        assert!(spiffe_pattern("spiffe://mesh.local/ns/**").is_ok());
    }

    #[test]
    fn hosts_are_lowercased_without_port() {
        assert_eq!(
            host_match("Payments:8080"),
            Ok(Some(HostMatch::Exact("payments".into())))
        );
        assert_eq!(
            host_match("*.Example.com"),
            Ok(Some(HostMatch::Suffix(".example.com".into())))
        );
        assert_eq!(
            host_match("[::1]:80"),
            Ok(Some(HostMatch::Exact("[::1]".into())))
        );
        assert_eq!(host_match("*"), Ok(None));
        assert!(host_match("foo.*.com").is_err());
        assert!(host_match("*foo.com").is_err());
        assert!(host_match("*.*.com").is_err());
    }

    #[test]
    fn methods_are_uppercased_tokens() {
        assert_eq!(method("get"), Ok(Method::GET));
        assert_eq!(method("PURGE").unwrap().as_str(), "PURGE");
        assert!(method("GE T").is_err());
        assert!(method("").is_err());
    }

    #[test]
    fn one_of_suggests_or_lists_options() {
        let opts = [("round_robin", 1), ("least_request", 2), ("random", 3)];
        assert_eq!(one_of("lb", "random", &opts), Ok(3));
        assert_eq!(
            one_of("lb", "least_requests", &opts),
            Err("invalid lb \"least_requests\" (did you mean \"least_request\"?)".into())
        );
        assert_eq!(
            one_of("lb", "fastest", &opts),
            Err(
                "invalid lb \"fastest\": expected one of round_robin, least_request, random".into()
            )
        );
    }
}
