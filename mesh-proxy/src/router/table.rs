//! The route table of one HTTP listener, built once per config load.
//!
//! Routes are checked in order, first match wins (as in Envoy). Cluster
//! names were resolved to `Arc<Cluster>` when the table was built, so a
//! request never looks a cluster up by name.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use crate::cluster::Cluster;
use crate::config::{HostMatch, PathMatch, RouteAction, RouteSpec};
use crate::resilience::RetryPolicy;

use super::normalize::{self, TargetError};

pub enum Action {
    Cluster(Arc<Cluster>),
    Weighted {
        clusters: Vec<(Arc<Cluster>, u32)>,
        total: u32,
    },
    Direct {
        status: StatusCode,
        body: Bytes,
    },
}

impl Action {
    /// Picks the cluster for one request (weighted clusters by weight).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            Action::Cluster(c) => Some(c),
            Action::Weighted { clusters, total } => {
                let mut r = fastrand::u32(..*total);
                for (c, w) in clusters {
                    if r < *w {
                        return Some(c);
                    }
                    r -= w;
                }
                clusters.last().map(|(c, _)| c)
            }
            Action::Direct { .. } => None,
        }
    }
}

/// What logs, spans, metrics and admin call a route.
#[derive(Debug)]
pub struct RouteName {
    /// As logged (`%ROUTE_NAME%`, json `route`) and span `mesh.route`: the
    /// configured name, or `<listener>/<index>`.
    pub name: Arc<str>,
    /// `<listener>/<name>` (`<listener>/<index>` when unnamed): admin's
    /// `route=` and fault overrides.
    pub id: Arc<str>,
    /// Span `http.route`: `P*` for prefix `P`, the exact path, or the regex.
    pub pattern: Arc<str>,
}

impl RouteName {
    fn of(spec: &RouteSpec) -> Self {
        Self {
            name: Arc::from(spec.name.as_str()),
            id: Arc::from(spec.id.as_str()),
            pattern: Arc::from(spec.matcher.path.pattern()),
        }
    }

    /// `route.<listener>.<name>`, the prefix of this route's `/stats` names.
    pub fn stat_prefix(&self) -> String {
        format!("route.{}", self.id.replace('/', "."))
    }
}

impl std::fmt::Display for RouteName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// One route of the table: its validated spec plus what was built from it
/// (resolved clusters, retry policy, rate limiter).
///
/// Derefs to its [`RouteSpec`], so `route.timeout`, `route.host_rewrite`,
/// `route.request_headers`… read the spec; `action` and `retry` are the
/// built forms and shadow the spec's (`route.spec.retry` is the config).
pub struct Route {
    pub name: Arc<RouteName>,
    pub spec: Arc<RouteSpec>,
    pub action: Action,
    pub retry: Option<RetryPolicy>,
    /// The per-route policy stages (rate limit, fault, …).
    pub policies: crate::policy::Policies,
}

impl std::ops::Deref for Route {
    type Target = RouteSpec;

    fn deref(&self) -> &RouteSpec {
        &self.spec
    }
}

impl crate::config::RouteMatch {
    /// Whether a request matches: `host` lower case without port (empty
    /// without one), `path` normalized and without `;parameters`.
    pub(crate) fn matches(
        &self,
        host: &str,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> bool {
        if let Some(h) = &self.host {
            let ok = match h {
                HostMatch::Exact(e) => host == e,
                HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            };
            if !ok {
                return false;
            }
        }
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::Regex(r) => r.is_match(path),
        };
        path_ok
            && (self.methods.is_empty() || self.methods.contains(method))
            && self
                .headers
                .iter()
                .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
    }
}

impl Route {
    /// The path to send upstream, from the normalized `path` whose
    /// `;parameter`-free view this route matched: `rewrite_prefix` replaces
    /// the matched prefix (prefix routes) or the whole path (exact routes).
    pub fn rewrite_path<'a>(&self, path: &'a str) -> Result<Cow<'a, str>, TargetError> {
        match (&self.spec.rewrite_prefix, &self.spec.matcher.path) {
            (Some(new), PathMatch::Prefix(old)) => {
                normalize::rewrite_prefix(path, old.len(), new).map(Cow::Owned)
            }
            (Some(new), PathMatch::Exact(_)) => Ok(Cow::Owned(new.clone())),
            _ => Ok(Cow::Borrowed(path)),
        }
    }
}

#[derive(Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// Why a route table cannot be built (validation rules these out; a
/// cluster map that disagrees with the config would not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("route {route} of listener {listener}: unknown cluster \"{cluster}\"")]
    UnknownCluster {
        listener: String,
        route: String,
        cluster: String,
    },
    #[error("route {route} of listener {listener}: weighted clusters with zero total weight")]
    ZeroWeight { listener: String, route: String },
}

impl RouteTable {
    /// Builds the table of `listener`; `cluster` resolves a validated
    /// cluster name.
    pub fn build(
        listener: &str,
        specs: &[RouteSpec],
        cluster: impl Fn(&str) -> Option<Arc<Cluster>>,
    ) -> Result<Self, TableError> {
        let routes = specs
            .iter()
            .map(|spec| {
                Ok(Route {
                    name: Arc::new(RouteName::of(spec)),
                    action: action(listener, spec, &cluster)?,
                    retry: spec.retry.clone().map(RetryPolicy::new),
                    policies: crate::policy::Policies::build(&spec.policies),
                    spec: Arc::new(spec.clone()),
                })
            })
            .collect::<Result<_, TableError>>()?;
        Ok(Self { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Lets the live fault overrides of `registry` apply to every route,
    /// each by its id (`<listener>/<route name>`).
    pub fn attach_fault_overrides(&mut self, registry: &Arc<crate::policy::FaultOverrides>) {
        for route in &mut self.routes {
            let id = Arc::clone(&route.name.id);
            route.policies.attach_fault_overrides(registry, id);
        }
    }

    pub fn find(
        &self,
        host: &str,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.spec.matcher.matches(host, path, method, headers))
    }
}

/// The action of `spec` with its clusters resolved.
fn action(
    listener: &str,
    spec: &RouteSpec,
    cluster: impl Fn(&str) -> Option<Arc<Cluster>>,
) -> Result<Action, TableError> {
    let resolve = |name: &str| {
        cluster(name).ok_or_else(|| TableError::UnknownCluster {
            listener: listener.to_owned(),
            route: spec.name.clone(),
            cluster: name.to_owned(),
        })
    };
    Ok(match &spec.action {
        RouteAction::Cluster(name) => Action::Cluster(resolve(name)?),
        RouteAction::Weighted(ws) => {
            let clusters = ws
                .iter()
                .map(|w| Ok((resolve(&w.cluster)?, w.weight)))
                .collect::<Result<Vec<_>, TableError>>()?;
            let total = clusters.iter().map(|(_, w)| *w).sum();
            if total == 0 {
                return Err(TableError::ZeroWeight {
                    listener: listener.to_owned(),
                    route: spec.name.clone(),
                });
            }
            Action::Weighted { clusters, total }
        }
        RouteAction::Direct { status, body } => Action::Direct {
            status: *status,
            body: body.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeaderMutations, RouteMatch};
    use http::HeaderValue;

    fn spec(matcher: RouteMatch, status: u16) -> RouteSpec {
        RouteSpec {
            name: "l/0".to_owned(),
            id: "l/0".to_owned(),
            matcher,
            action: RouteAction::Direct {
                status: StatusCode::from_u16(status).expect("status"),
                body: Bytes::new(),
            },
            timeout: None,
            retry: None,
            rewrite_prefix: None,
            host_rewrite: None,
            request_headers: HeaderMutations::default(),
            response_headers: HeaderMutations::default(),
            policies: Default::default(),
        }
    }

    fn status_of(
        t: &RouteTable,
        host: &str,
        path: &str,
        method: Method,
        headers: &HeaderMap,
    ) -> Option<u16> {
        t.find(host, path, &method, headers)
            .map(|r| match &r.action {
                Action::Direct { status, .. } => status.as_u16(),
                _ => 0,
            })
    }

    #[test]
    fn first_match_wins_across_host_path_header_and_method() {
        let specs = vec![
            spec(
                RouteMatch {
                    host: Some(HostMatch::Exact("payments".into())),
                    path: PathMatch::Exact("/pay".into()),
                    headers: vec![(
                        http::header::HeaderName::from_static("x-canary"),
                        HeaderValue::from_static("true"),
                    )],
                    methods: vec![Method::POST],
                },
                201,
            ),
            spec(
                RouteMatch {
                    host: Some(HostMatch::Suffix(".example.com".into())),
                    path: PathMatch::Regex(regex::Regex::new("^/v[0-9]+/").expect("regex")),
                    ..Default::default()
                },
                202,
            ),
            spec(RouteMatch::default(), 203),
        ];
        let t = RouteTable::build("l", &specs, |_| None).expect("table");
        let mut canary = HeaderMap::new();
        canary.insert("x-canary", HeaderValue::from_static("true"));
        let none = HeaderMap::new();
        assert_eq!(
            status_of(&t, "payments", "/pay", Method::POST, &canary),
            Some(201)
        );
        assert_eq!(
            status_of(&t, "payments", "/pay", Method::GET, &canary),
            Some(203)
        );
        assert_eq!(
            status_of(&t, "payments", "/pay", Method::POST, &none),
            Some(203)
        );
        assert_eq!(
            status_of(&t, "api.example.com", "/v2/x", Method::GET, &none),
            Some(202)
        );
        assert_eq!(
            status_of(&t, "example.com", "/v2/x", Method::GET, &none),
            Some(203)
        );
        assert_eq!(
            status_of(&t, "api.example.com", "/x/v2/", Method::GET, &none),
            Some(203)
        );
    }

    #[test]
    fn rewrite_prefix_keeps_exactly_one_slash_at_the_seam() {
        let mut s = spec(
            RouteMatch {
                path: PathMatch::Prefix("/api/".into()),
                ..Default::default()
            },
            200,
        );
        s.rewrite_prefix = Some("/".into());
        let t = RouteTable::build("l", &[s], |_| None).expect("table");
        let r = t
            .find("h", "/api/users", &Method::GET, &HeaderMap::new())
            .expect("route");
        assert_eq!(r.rewrite_path("/api/users").as_deref(), Ok("/users"));
        assert_eq!(r.rewrite_path("/api/"), Ok(Cow::Borrowed("/")));
    }

    #[test]
    fn a_prefix_matched_through_parameters_is_cut_on_the_same_path() {
        let mut s = spec(
            RouteMatch {
                path: PathMatch::Prefix("/api/v1".into()),
                ..Default::default()
            },
            200,
        );
        s.rewrite_prefix = Some("/".into());
        let t = RouteTable::build("l", &[s], |_| None).expect("table");
        let path = normalize::normalize_path("/api;xé/v1/users").expect("normal");
        let routed = normalize::without_params(&path);
        let r = t
            .find("h", &routed, &Method::GET, &HeaderMap::new())
            .expect("route");
        assert_eq!(r.rewrite_path(&path).as_deref(), Ok("/users"));
        let r = t
            .find("h", "/api/v1.", &Method::GET, &HeaderMap::new())
            .expect("route");
        assert_eq!(r.rewrite_path("/api/v1."), Err(TargetError::BadRewrite));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(4096))]

        /// Through the real table: the prefix route is chosen ⇔ the path
        /// routes see is under its prefix, and what goes upstream is then
        /// under the rewritten prefix (else the unchanged path, not under
        /// the prefix), so the upstream reads what was matched.
        #[test]
        fn a_prefix_matches_iff_the_forwarded_path_is_under_it(
            p in normalize::props::nasty_path(),
            prefix in proptest::sample::select(vec!["/a", "/api", "/api/", "/api/v1", "/admin"]),
            new in proptest::sample::select(vec!["/", "/x", "/x/", "/x/y"]),
        ) {
            let mut s = spec(RouteMatch { path: PathMatch::Prefix(prefix.into()), ..Default::default() }, 201);
            s.rewrite_prefix = Some(new.into());
            let t = RouteTable::build("l", &[s, spec(RouteMatch::default(), 202)], |_| None).expect("table");
            let Ok(path) = normalize::normalize_path(&p) else { return Ok(()) };
            let routed = normalize::without_params(&path);
            let r = t.find("h", &routed, &Method::GET, &HeaderMap::new()).expect("catch-all");
            let is_prefix_route = matches!(&r.action, Action::Direct { status, .. } if status.as_u16() == 201);
            proptest::prop_assert_eq!(is_prefix_route, routed.starts_with(prefix));
            match r.rewrite_path(&path) {
                Ok(fwd) if is_prefix_route => {
                    let seen = normalize::without_params(&fwd);
                    proptest::prop_assert!(seen.starts_with(new), "{} -> {}", path, fwd);
                    let again = normalize::normalize_path(&fwd).map(|c| c.into_owned());
                    proptest::prop_assert_eq!(again, Ok(fwd.clone().into_owned()));
                }
                Ok(fwd) => {
                    proptest::prop_assert_eq!(fwd.as_ref(), path.as_ref());
                    proptest::prop_assert!(!normalize::without_params(&fwd).starts_with(prefix));
                }
                Err(e) => {
                    proptest::prop_assert!(is_prefix_route);
                    proptest::prop_assert_eq!(e, TargetError::BadRewrite);
                }
            }
        }
    }

    #[test]
    fn unknown_cluster_fails_the_build() {
        let mut s = spec(RouteMatch::default(), 200);
        s.action = RouteAction::Cluster("nope".into());
        assert_eq!(
            RouteTable::build("l", &[s], |_| None).err(),
            Some(TableError::UnknownCluster {
                listener: "l".into(),
                route: "l/0".into(),
                cluster: "nope".into()
            })
        );
    }

    #[test]
    fn a_route_carries_its_name_id_and_match_pattern() {
        let mut prefix = spec(
            RouteMatch {
                path: PathMatch::Prefix("/api/".into()),
                ..Default::default()
            },
            200,
        );
        prefix.name = "api".into();
        prefix.id = "edge/api".into();
        let mut exact = spec(
            RouteMatch {
                path: PathMatch::Exact("/healthz".into()),
                ..Default::default()
            },
            200,
        );
        exact.name = "edge/1".into();
        exact.id = "edge/1".into();
        let t = RouteTable::build("edge", &[prefix, exact], |_| None).expect("table");
        let none = HeaderMap::new();
        let api = t.find("h", "/api/x", &Method::GET, &none).expect("api");
        assert_eq!(
            (&*api.name.name, &*api.name.id, &*api.name.pattern),
            ("api", "edge/api", "/api/*")
        );
        assert_eq!(api.name.stat_prefix(), "route.edge.api");
        let health = t.find("h", "/healthz", &Method::GET, &none).expect("exact");
        assert_eq!(
            (&*health.name.name, &*health.name.pattern),
            ("edge/1", "/healthz")
        );
        assert_eq!(health.name.stat_prefix(), "route.edge.1");
    }
}
