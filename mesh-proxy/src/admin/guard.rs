//! Who may talk to the admin API: requests a browser sends on behalf of
//! another site are refused.
//!
//! - `Origin` (sent by browsers on cross-origin requests and on every
//!   POST): only the admin's own origin passes, so a page elsewhere cannot
//!   POST `/quitquitquit` (CSRF).
//! - `Host`, on a loopback bind: only a loopback name or address passes, so
//!   a site whose name was rebound to 127.0.0.1 cannot read the admin API
//!   with its own origin (DNS rebinding).

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header;

/// `Ok` when the request may proceed, else why it may not.
pub(super) fn check(headers: &HeaderMap, local: SocketAddr) -> Result<(), &'static str> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if local.ip().is_loopback() {
        match host {
            Some(h) if !is_loopback_host(h) => return Err("host is not a loopback address"),
            None if headers.contains_key(header::HOST) => return Err("invalid host"),
            _ => {}
        }
    }
    for origin in headers.get_all(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return Err("cross-origin request");
        };
        if !is_own_origin(origin, local, host) {
            return Err("cross-origin request");
        }
    }
    Ok(())
}

/// `host[:port]` with a loopback address or `localhost`.
fn is_loopback_host(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The admin's own origins: `http://127.0.0.1:PORT`, `http://localhost:PORT`,
/// `http://[::1]:PORT`; on a non-loopback bind also `http://<Host>` (the
/// address the operator chose to expose).
fn is_own_origin(origin: &str, local: SocketAddr, host: Option<&str>) -> bool {
    let Some(rest) = origin.strip_prefix("http://") else {
        return false;
    };
    let port = local.port().to_string();
    let (name, origin_port) = match rest.rsplit_once(':') {
        Some((n, p)) if !p.contains(']') => (n, p),
        _ => (rest, "80"),
    };
    if origin_port == port && is_loopback_host(&format!("{name}:{port}")) {
        return true;
    }
    !local.ip().is_loopback() && host.is_some_and(|h| h.eq_ignore_ascii_case(rest))
}

/// `a=1&b=x%20y` → `[("a","1"), ("b","x y")]` (form decoding: `+` is a space).
pub(super) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn loopback() -> SocketAddr {
        "127.0.0.1:9901"
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9901)))
    }

    #[test]
    fn own_origins_pass_and_foreign_ones_are_refused() {
        let local = loopback();
        for ok in [
            "http://127.0.0.1:9901",
            "http://localhost:9901",
            "http://[::1]:9901",
        ] {
            let h = headers(&[("host", "127.0.0.1:9901"), ("origin", ok)]);
            assert_eq!(check(&h, local), Ok(()), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:9902",
            "https://127.0.0.1:9901",
            "null",
            "http://127.0.0.1.evil.example:9901",
        ] {
            let h = headers(&[("host", "127.0.0.1:9901"), ("origin", bad)]);
            assert!(check(&h, local).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_without_origin_pass() {
        let h = headers(&[("host", "localhost:9901")]);
        assert_eq!(check(&h, loopback()), Ok(()));
        assert_eq!(check(&HeaderMap::new(), loopback()), Ok(()));
    }

    #[test]
    fn a_rebound_name_is_refused_on_a_loopback_bind() {
        let h = headers(&[("host", "evil.example:9901")]);
        assert!(check(&h, loopback()).is_err());
        let exposed: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 9901));
        let h = headers(&[("host", "orders:9901"), ("origin", "http://orders:9901")]);
        assert_eq!(check(&h, exposed), Ok(()));
        let h = headers(&[("host", "orders:9901"), ("origin", "http://evil.example")]);
        assert!(check(&h, exposed).is_err());
    }

    #[test]
    fn query_pairs_are_form_decoded() {
        assert_eq!(
            query_pairs(Some("filter=%5Ehttp%5C..*&format=json&x")),
            vec![
                ("filter".to_owned(), "^http\\..*".to_owned()),
                ("format".to_owned(), "json".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
        assert_eq!(
            query_pairs(Some("a=b+c%2")),
            vec![("a".to_owned(), "b c%2".to_owned())]
        );
        assert!(query_pairs(None).is_empty());
    }
}
