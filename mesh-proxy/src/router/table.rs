//! The route table of one HTTP listener, built once per config load.
//!
//! Routes are checked in order, first match wins (as in Envoy). Cluster
//! names were resolved to `Arc<Cluster>` when the table was built, so a
//! request never looks a cluster up by name.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::cluster::Cluster;
use crate::config::{HeaderMutations, HostMatch, PathMatch, RouteAction, RouteMatch, RouteSpec};
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

pub struct Route {
    /// `listener/index`, for logs and spans.
    pub name: Arc<str>,
    matcher: RouteMatch,
    pub action: Action,
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub rewrite_prefix: Option<String>,
    pub host_rewrite: Option<HeaderValue>,
    pub request_headers: HeaderMutations,
    pub response_headers: HeaderMutations,
    /// The per-route policy stages (rate limit, fault, …).
    pub policies: crate::policy::Policies,
}

impl Route {
    fn matches(&self, host: &str, path: &str, method: &Method, headers: &HeaderMap) -> bool {
        let m = &self.matcher;
        if let Some(h) = &m.host {
            let ok = match h {
                HostMatch::Exact(e) => host == e,
                HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            };
            if !ok {
                return false;
            }
        }
        let path_ok = match &m.path {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::Regex(r) => r.is_match(path),
        };
        path_ok
            && (m.methods.is_empty() || m.methods.contains(method))
            && m.headers
                .iter()
                .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
    }

    /// The route's name within `listener`: `abort20` for a named route,
    /// `3` for the default `edge/3` (the `<listener>/` prefix dropped).
    /// `<listener>/<local name>` is its id for admin fault overrides, and
    /// `route.<listener>.<local name>.` prefixes its `/stats` counters.
    pub fn local_name<'a>(&'a self, listener: &str) -> &'a str {
        self.name
            .strip_prefix(listener)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(&self.name)
    }

    /// The path to send upstream, from the normalized `path` whose
    /// `;parameter`-free view this route matched: `rewrite_prefix` replaces
    /// the matched prefix (prefix routes) or the whole path (exact routes).
    pub fn rewrite_path<'a>(&self, path: &'a str) -> Result<Cow<'a, str>, TargetError> {
        match (&self.rewrite_prefix, &self.matcher.path) {
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

impl RouteTable {
    /// Builds the table; `cluster` resolves a validated cluster name.
    pub fn build(
        listener: &str,
        specs: &[RouteSpec],
        cluster: impl Fn(&str) -> Option<Arc<Cluster>>,
    ) -> Result<Self, String> {
        let resolve =
            |name: &str| cluster(name).ok_or_else(|| format!("unknown cluster \"{name}\""));
        let mut routes = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let action = match &spec.action {
                RouteAction::Cluster(name) => Action::Cluster(resolve(name)?),
                RouteAction::Weighted(ws) => {
                    let clusters = ws
                        .iter()
                        .map(|w| Ok((resolve(&w.cluster)?, w.weight)))
                        .collect::<Result<Vec<_>, String>>()?;
                    let total = clusters.iter().map(|(_, w)| *w).sum();
                    if total == 0 {
                        return Err("weighted clusters with zero total weight".to_owned());
                    }
                    Action::Weighted { clusters, total }
                }
                RouteAction::Direct { status, body } => Action::Direct {
                    status: *status,
                    body: body.clone(),
                },
            };
            routes.push(Route {
                name: Arc::from(format!("{listener}/{i}")),
                matcher: spec.matcher.clone(),
                action,
                timeout: spec.timeout,
                retry: spec.retry.clone().map(RetryPolicy::new),
                rewrite_prefix: spec.rewrite_prefix.clone(),
                host_rewrite: spec.host_rewrite.clone(),
                request_headers: spec.request_headers.clone(),
                response_headers: spec.response_headers.clone(),
                policies: crate::policy::Policies::build(&spec.policies),
            });
        }
        Ok(Self { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Lets the live fault overrides of `registry` apply to every route,
    /// each by its id `<listener>/<local name>`.
    pub fn attach_fault_overrides(
        &mut self,
        listener: &str,
        registry: &Arc<crate::policy::FaultOverrides>,
    ) {
        for route in &mut self.routes {
            let id = Arc::from(format!("{listener}/{}", route.local_name(listener)));
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
            .find(|r| r.matches(host, path, method, headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeaderMutations, RouteSpec};

    fn spec(matcher: RouteMatch, status: u16) -> RouteSpec {
        RouteSpec {
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
            let is_prefix_route = r.name.as_ref() == "l/0";
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
        assert!(RouteTable::build("l", &[s], |_| None).is_err());
    }
}
