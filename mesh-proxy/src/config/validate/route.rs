//! `listeners[*].routes` — match, action, rewrites, headers, rate limit.

use std::time::Duration;

use bytes::Bytes;

use super::super::model::*;
use super::super::raw::{HeadersConfig, MatchConfig, RouteConfig, ScalarMap};
use super::listener::cluster_ref;
use super::value_error::ValueError;
use super::{Ctx, index, join, retry, values};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The routes of listener `listener` (its name as written, for the
/// default route names).
pub(super) fn routes(
    cx: &mut Ctx<'_>,
    at: &str,
    listener: &str,
    raw: Vec<RouteConfig>,
    clusters: &[String],
    inherited: &crate::policy::ListenerPolicies,
) -> Vec<RouteSpec> {
    let mut seen: Vec<(usize, String)> = Vec::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, mut r) in raw.into_iter().enumerate() {
        let named = r
            .name
            .take()
            .and_then(|name| route_name(cx, at, name, i, &mut seen));
        let at = index(at, i);
        // Unnamed (or badly named): `<listener>/<index>`, addressed by index.
        let (name, id) = match named {
            Some(name) => (name.clone(), format!("{listener}/{name}")),
            None => (format!("{listener}/{i}"), format!("{listener}/{i}")),
        };
        if let Some(spec) = route(cx, &at, r, clusters, (name, id), inherited) {
            out.push(spec);
        }
    }
    out
}

/// The configured name of route `i` of the list at `routes`, if valid and
/// unique in its listener.
fn route_name(
    cx: &mut Ctx<'_>,
    routes: &str,
    name: String,
    i: usize,
    seen: &mut Vec<(usize, String)>,
) -> Option<String> {
    let at = join(&index(routes, i), "name");
    cx.check(&at, values::route_name(&name))?;
    if let Some((first, _)) = seen.iter().find(|(_, n)| *n == name) {
        let also = index(routes, *first);
        cx.error(
            &at,
            format!("duplicate route name \"{name}\" (also {also}): names are unique per listener"),
        );
        return None;
    }
    seen.push((i, name.clone()));
    Some(name)
}

fn route(
    cx: &mut Ctx<'_>,
    at: &str,
    mut raw: RouteConfig,
    clusters: &[String],
    (name, id): (String, String),
    inherited: &crate::policy::ListenerPolicies,
) -> Option<RouteSpec> {
    let matcher = match raw.matcher.take() {
        Some(m) => route_match(cx, &join(at, "match"), m),
        None => Some(RouteMatch::default()),
    };
    let policies = crate::policy::RoutePolicies::validate(cx, at, &mut raw, inherited);
    let action = action(cx, at, &raw, clusters);
    let timeout = cx.duration(at, "timeout", raw.timeout.as_ref(), DEFAULT_TIMEOUT);
    let retry = raw.retry.map(|r| retry::retry(cx, &join(at, "retry"), r));
    let rewrite_prefix = raw.rewrite_prefix.and_then(|p| {
        cx.check(&join(at, "rewrite_prefix"), normal_path(&p))
            .map(|()| p)
    });
    let host_rewrite = raw
        .host_rewrite
        .and_then(|h| cx.check(&join(at, "host_rewrite"), host_rewrite(&h)));
    let request_headers = mutations(cx, &join(at, "request_headers"), raw.request_headers);
    let response_headers = mutations(cx, &join(at, "response_headers"), raw.response_headers);
    Some(RouteSpec {
        name,
        id,
        matcher: matcher?,
        action: action?,
        timeout: (!timeout.is_zero()).then_some(timeout),
        retry,
        rewrite_prefix,
        host_rewrite,
        request_headers,
        response_headers,
        policies,
    })
}

fn route_match(cx: &mut Ctx<'_>, at: &str, raw: MatchConfig) -> Option<RouteMatch> {
    let given: Vec<&str> = [
        ("prefix", &raw.prefix),
        ("path", &raw.path),
        ("regex", &raw.regex),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_some())
    .map(|(k, _)| k)
    .collect();
    if given.len() > 1 {
        cx.error(
            at,
            format!(
                "give only one of prefix, path, regex (found {})",
                given.join(" and ")
            ),
        );
    }
    let path = if let Some(prefix) = raw.prefix {
        cx.check(&join(at, "prefix"), normal_path(&prefix))
            .map(|()| PathMatch::Prefix(prefix))
    } else if let Some(path) = raw.path {
        cx.check(&join(at, "path"), normal_path(&path))
            .map(|()| PathMatch::Exact(path))
    } else if let Some(re) = raw.regex {
        // Anchored: the regex must match the whole path, as Envoy's safe_regex.
        let compiled =
            regex::Regex::new(&format!("^(?:{re})$")).map_err(|source| ValueError::Regex {
                text: re.clone(),
                source,
            });
        cx.check(&join(at, "regex"), compiled).map(PathMatch::Regex)
    } else {
        Some(PathMatch::default())
    };
    let host = raw
        .host
        .and_then(|h| cx.check(&join(at, "host"), values::host_match(&h)))
        .flatten();
    let headers = header_pairs(cx, &join(at, "headers"), raw.headers.unwrap_or_default());
    let methods = raw
        .methods
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, m)| cx.check(&index(&join(at, "methods"), i), values::method(m)))
        .collect();
    Some(RouteMatch {
        host,
        path: path?,
        headers,
        methods,
    })
}

/// A route path or prefix must be in the router's normal form (SPEC §3
/// "Paths and hosts"), or it could never match: requests are matched
/// normalized and without `;parameters`.
fn normal_path(path: &str) -> Result<(), ValueError> {
    let bad = |why: &'static str| ValueError::Path {
        path: path.to_owned(),
        why,
    };
    if !path.starts_with('/') {
        return Err(bad("must start with /"));
    }
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let why = match b {
            b';' => "has a ';' (routes see paths without ;parameters)",
            b'%' => match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(h), Some(l)) if is_upper_hex(*h) && is_upper_hex(*l) => {
                    let v = u8::from_str_radix(&path[i + 1..i + 3], 16).unwrap_or(0);
                    if v.is_ascii_alphanumeric() || b"-._~/\\".contains(&v) {
                        "escapes a character that requests carry decoded (or a slash)"
                    } else {
                        continue;
                    }
                }
                _ => "has a '%' not followed by two upper-case hex digits",
            },
            b'\\' | b'#' | b'?' => "has a '\\', '#' or '?'",
            _ if !b.is_ascii_graphic() => {
                "has a space, control or non-ASCII byte (percent-encode it)"
            }
            _ => continue,
        };
        return Err(bad(why));
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.into_iter().enumerate() {
        if matches!(seg, "." | "..") || (seg.is_empty() && i != last) {
            return Err(bad(
                "has an empty, '.' or '..' segment (paths are matched normalized)",
            ));
        }
    }
    Ok(())
}

fn is_upper_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

/// Exactly one of cluster, weighted, direct_response.
fn action(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: &RouteConfig,
    clusters: &[String],
) -> Option<RouteAction> {
    let given: Vec<&str> = [
        ("cluster", raw.cluster.is_some()),
        ("weighted", raw.weighted.is_some()),
        ("direct_response", raw.direct_response.is_some()),
    ]
    .into_iter()
    .filter(|(_, present)| *present)
    .map(|(k, _)| k)
    .collect();
    match given.len() {
        0 => {
            cx.error(
                at,
                "a route needs one of cluster, weighted, direct_response",
            );
            return None;
        }
        1 => {}
        _ => {
            cx.error(
                at,
                format!(
                    "give only one of cluster, weighted, direct_response (found {})",
                    given.join(" and ")
                ),
            );
            return None;
        }
    }
    if let Some(cluster) = &raw.cluster {
        cluster_ref(cx, &join(at, "cluster"), cluster, clusters);
        return Some(RouteAction::Cluster(cluster.clone()));
    }
    if let Some(direct) = &raw.direct_response {
        let at = join(at, "direct_response");
        let status = cx
            .required(&at, "status", direct.status.as_ref())
            .and_then(|s| cx.check(&join(&at, "status"), values::status(*s)));
        let body = Bytes::from(direct.body.clone().unwrap_or_default());
        return Some(RouteAction::Direct {
            status: status?,
            body,
        });
    }
    weighted(cx, &join(at, "weighted"), raw, clusters)
}

fn weighted(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: &RouteConfig,
    clusters: &[String],
) -> Option<RouteAction> {
    let entries = raw.weighted.as_deref().unwrap_or_default();
    if entries.is_empty() {
        cx.error(at, "needs at least one {cluster, weight} entry");
        return None;
    }
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = index(at, i);
        let cluster = cx.required(&at, "cluster", entry.cluster.as_ref());
        if let Some(cluster) = cluster {
            cluster_ref(cx, &join(&at, "cluster"), cluster, clusters);
        }
        let weight = cx.required(&at, "weight", entry.weight.as_ref());
        if let (Some(cluster), Some(weight)) = (cluster, weight) {
            out.push(WeightedCluster {
                cluster: cluster.clone(),
                weight: *weight,
            });
        }
    }
    let total: u64 = out.iter().map(|w| u64::from(w.weight)).sum();
    if out.len() == entries.len() && total == 0 {
        cx.error(
            at,
            "the total weight is 0: at least one weight must be positive",
        );
    }
    if total > u64::from(u32::MAX) {
        cx.error(at, format!("the total weight {total} is too large"));
    }
    Some(RouteAction::Weighted(out))
}

fn host_rewrite(text: &str) -> Result<http::HeaderValue, ValueError> {
    text.parse::<http::uri::Authority>()
        .map_err(|_| ValueError::Host {
            text: text.to_owned(),
        })?;
    values::header_value(text)
}

fn header_pairs(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: ScalarMap,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    raw.0
        .into_iter()
        .filter_map(|(name, value)| {
            let at = join(at, &name);
            let name = cx.check(&at, values::header_name(&name));
            let value = cx.check(&at, values::header_value(value.as_str()));
            Some((name?, value?))
        })
        .collect()
}

fn mutations(cx: &mut Ctx<'_>, at: &str, raw: Option<HeadersConfig>) -> HeaderMutations {
    let Some(raw) = raw else {
        return HeaderMutations::default();
    };
    let add = header_pairs(cx, &join(at, "add"), raw.add.unwrap_or_default());
    let remove = raw
        .remove
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, name)| cx.check(&index(&join(at, "remove"), i), values::header_name(name)))
        .collect();
    HeaderMutations { add, remove }
}
