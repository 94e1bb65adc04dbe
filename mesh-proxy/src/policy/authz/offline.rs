//! Offline answers for `mesh-cli authz check` and `explain`: a request as
//! the proxy would see it on one listener of a validated config, through
//! the proxy's own path normalization, route matching and
//! [`AuthzSpec::decide`], so the tool and the proxy cannot disagree.

use std::fmt;

use http::{HeaderMap, Method};
use mesh_ca::SpiffeId;

use super::{AuthzSpec, Caller, Decision, PathRule};
use crate::config::{Config, ListenerKind, RouteSpec};
use crate::router::normalize::{self, TargetError};

/// One request to judge.
#[derive(Debug)]
pub struct Probe<'a> {
    /// The client certificate's SPIFFE ID (`None`: unauthenticated).
    pub caller: Option<&'a SpiffeId>,
    pub method: &'a Method,
    /// The host routes match, as received (`""`: none).
    pub host: &'a str,
    /// The request target's path as received (a `?query` is ignored).
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

/// What the proxy would do with a [`Probe`].
#[derive(Debug)]
pub enum Answer<'c> {
    /// No route matches: the proxy answers 404 (`NR`) before any policy.
    NoRoute,
    /// The route it picks, and its policy's decision (`None`: the route
    /// has no `authz`, so every request is allowed).
    Route {
        route: &'c RouteSpec,
        policy: Option<(&'c AuthzSpec, Decision)>,
    },
}

/// Why a probe cannot be answered: bad input, not a denial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("no listener \"{name}\" in the config (listeners: {known})")]
    UnknownListener { name: String, known: String },
    #[error("listener \"{0}\" is a tcp listener: authz check judges HTTP requests")]
    Tcp(String),
    #[error("invalid path \"{path}\": {why}")]
    Path { path: String, why: String },
    #[error("invalid host \"{0}\"")]
    Host(String),
}

/// The routes of HTTP listener `name`, in matching order.
pub fn http_routes<'c>(config: &'c Config, name: &str) -> Result<&'c [RouteSpec], ProbeError> {
    let Some(listener) = config.listeners.iter().find(|l| l.name == name) else {
        let known: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
        return Err(ProbeError::UnknownListener {
            name: name.to_owned(),
            known: known.join(", "),
        });
    };
    match &listener.kind {
        ListenerKind::Http { routes } => Ok(routes),
        ListenerKind::Tcp { .. } => Err(ProbeError::Tcp(name.to_owned())),
    }
}

/// What the proxy would answer to `probe` on listener `listener`: the path
/// normalized as the target stage does, the first matching route, and that
/// route's effective policy (its own `authz`, else the listener's).
pub fn check<'c>(
    config: &'c Config,
    listener: &str,
    probe: &Probe<'_>,
) -> Result<Answer<'c>, ProbeError> {
    let routes = http_routes(config, listener)?;
    let bad_path = |why: String| ProbeError::Path {
        path: probe.path.to_owned(),
        why,
    };
    let target =
        http::uri::PathAndQuery::try_from(probe.path).map_err(|e| bad_path(e.to_string()))?;
    let normal = normalize::normalize_path(target.path())
        .map_err(|e: TargetError| bad_path(e.to_string()))?;
    let path = normalize::without_params(&normal);
    let host = match probe.host {
        "" => std::borrow::Cow::Borrowed(""),
        h => normalize::host_for_routing(h).map_err(|_| ProbeError::Host(h.to_owned()))?,
    };
    let Some(route) = routes
        .iter()
        .find(|r| r.matcher.matches(&host, &path, probe.method, probe.headers))
    else {
        return Ok(Answer::NoRoute);
    };
    let policy = route.policies.authz.as_ref().map(|spec| {
        let decision = spec.decide(probe.caller, probe.method, &path, probe.headers);
        (spec, decision)
    });
    Ok(Answer::Route { route, policy })
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Unauthenticated => f.write_str("unauthenticated"),
            Caller::Id(pattern) => pattern.fmt(f),
        }
    }
}

/// As written: `/x/*` or the exact path.
impl fmt::Display for PathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathRule::Under(prefix) => write!(f, "{prefix}*"),
            PathRule::Exact(path) => f.write_str(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let yaml = "\
identity: { cert: c.crt, key: c.key, trust_bundle: ca.crt }
listeners:
  - name: ingress
    address: 127.0.0.1:0
    tls: { mode: mutual, allow: [spiffe://mesh.local/**] }
    authz:
      rules: [ { name: web-reads, from: [spiffe://mesh.local/web], methods: [GET], paths: [/api/*] } ]
    routes:
      - { name: admin, match: { prefix: /admin }, cluster: app,
          authz: { rules: [ { name: ops-only, from: [spiffe://mesh.local/ops] } ] } }
      - { name: open, match: { prefix: /open, host: open.example }, cluster: app,
          authz: { default: allow } }
      - { name: main, match: { prefix: / }, cluster: app }
  - { name: raw, address: 127.0.0.1:0, protocol: tcp, cluster: app }
clusters: [ { name: app, endpoints: [127.0.0.1:9] } ]
";
        // Validation only checks that the identity files can be read.
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["c.crt", "c.key", "ca.crt"] {
            std::fs::write(dir.path().join(name), "placeholder\n").expect("write");
        }
        crate::config::load_str(yaml, "t.yaml", dir.path()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ask(config: &Config, who: &str, path: &str, host: &str) -> Result<String, ProbeError> {
        let id: SpiffeId = format!("spiffe://mesh.local/{who}").parse().expect("id");
        let probe = Probe {
            caller: Some(&id),
            method: &Method::GET,
            host,
            path,
            headers: &HeaderMap::new(),
        };
        Ok(match check(config, "ingress", &probe)? {
            Answer::NoRoute => "no route".to_owned(),
            Answer::Route { route, policy } => {
                let (_, d) = policy.expect("policy");
                format!("{} {} {:?}", route.name, d.allowed, d.rule.as_deref())
            }
        })
    }

    #[test]
    fn the_route_the_proxy_picks_decides_on_the_normalized_path() {
        let c = config();
        assert_eq!(
            ask(&c, "web", "/api/x?q=1", ""),
            Ok("main true Some(\"web-reads\")".into())
        );
        // Normalized as the proxy does: /api/../admin is /admin, its route's rules.
        assert_eq!(
            ask(&c, "web", "/api/../admin", ""),
            Ok("admin false None".into())
        );
        assert_eq!(
            ask(&c, "web", "/%61pi/x;p", ""),
            Ok("main true Some(\"web-reads\")".into())
        );
        assert_eq!(
            ask(&c, "ops", "/admin/x", ""),
            Ok("admin true Some(\"ops-only\")".into())
        );
        // A host-matched route needs its host; default: allow keeps the listener's rules.
        assert_eq!(ask(&c, "ops", "/open", ""), Ok("main false None".into()));
        assert_eq!(
            ask(&c, "ops", "/open", "Open.Example:80"),
            Ok("open true None".into())
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_denial() {
        let c = config();
        assert!(matches!(
            ask(&c, "web", "api", ""),
            Err(ProbeError::Path { .. })
        ));
        assert!(matches!(
            ask(&c, "web", "/a%2fb", ""),
            Err(ProbeError::Path { .. })
        ));
        let err = http_routes(&c, "nosuch").map(|_| ()).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "no listener \"nosuch\" in the config (listeners: ingress, raw)"
        );
        assert_eq!(
            http_routes(&c, "raw").map(|_| ()),
            Err(ProbeError::Tcp("raw".into()))
        );
    }
}
