//! Per-route policies: the stages a request meets between routing and
//! dispatch, in the order [`Policies::apply`] lists them.
//!
//! A policy is one module here with three parts: its validated config
//! (a field of [`RoutePolicies`], checked by [`RoutePolicies::validate`]
//! from the raw route), its runtime built once per route table (a field of
//! [`Policies`]), and its line in [`Policies::apply`]. Each decides
//! `Ok(())` (continue) or an `Err` that becomes the local reply. A policy
//! that is not configured is a `None` and costs a branch. Order: rate
//! limit (shed load before anything else), then fault injection.

pub mod authz;
pub(crate) mod authz_tcp;
pub(crate) mod fault;
pub(crate) mod fault_live;
pub(crate) mod rate_limit;

use std::sync::Arc;

use crate::config::RateLimitSpec;
use crate::config::raw::RouteConfig;
use crate::config::validate::{Ctx, join};
use crate::router::ProxyError;
pub(crate) use fault_live::FaultOverrides;

/// The validated per-route policy config (part of a route's spec;
/// serialized flattened into the route for `/config_dump`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RoutePolicies {
    /// The route's own `authz:`, else its listener's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authz: Option<authz::AuthzSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<fault::FaultSpec>,
}

impl RoutePolicies {
    /// Takes each policy's keys out of the raw route and validates them.
    pub(crate) fn validate(
        cx: &mut Ctx<'_>,
        at: &str,
        raw: &mut RouteConfig,
        listener: &ListenerPolicies,
    ) -> Self {
        let inherited = listener.authz.as_ref();
        Self {
            authz: match raw.authz.take() {
                Some(r) => authz::validate(cx, &join(at, "authz"), r, inherited),
                None => inherited.cloned(),
            },
            rate_limit: raw
                .rate_limit
                .take()
                .and_then(|r| rate_limit::validate(cx, &join(at, "rate_limit"), r)),
            fault: raw
                .fault
                .take()
                .and_then(|f| fault::validate(cx, &join(at, "fault"), f)),
        }
    }
}

/// The listener-level policies its routes inherit (today: `authz`).
#[derive(Debug, Clone, Default)]
pub struct ListenerPolicies {
    pub authz: Option<authz::AuthzSpec>,
}

impl ListenerPolicies {
    /// Takes the listener's policy keys out of its raw config. A `tcp`
    /// listener can only judge the caller, and a listener without mutual
    /// TLS knows no caller identity: rules that could never be enforced
    /// there are errors.
    pub(crate) fn validate(
        cx: &mut Ctx<'_>,
        at: &str,
        raw: &mut crate::config::raw::ListenerConfig,
        is_tcp: bool,
        tls: Option<&crate::config::DownstreamTlsSpec>,
    ) -> Self {
        let Some(raw_authz) = raw.authz.take() else {
            return Self::default();
        };
        let at = join(at, "authz");
        let authz = authz::validate(cx, &at, raw_authz, None);
        if let Some(spec) = &authz {
            authz::check_enforceable(cx, &at, spec, is_tcp, tls);
        }
        Self { authz }
    }
}

/// The keys of the policies' nested config below `listeners[*].routes[*]`
/// (`rest` as `.fault.abort`), for unknown-key hints; `None` where no
/// policy has a struct.
pub(crate) fn fields_at(rest: &str) -> Option<&'static [&'static str]> {
    use crate::config::introspect::fields_of;
    match rest {
        ".rate_limit" => Some(fields_of::<crate::config::raw::RateLimitConfig>()),
        _ => fault::fields_at(rest.strip_prefix(".fault")?),
    }
}

/// What a policy may look at: the request after routing.
pub struct RequestView<'a> {
    pub method: &'a http::Method,
    /// The normalized path, without `;parameters` (what routes match).
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
    /// The caller's SPIFFE ID on a mutual TLS listener.
    pub peer: Option<&'a mesh_ca::SpiffeId>,
    /// The route's name, as logged.
    pub route: &'a str,
}

/// The runtime of one route's policies, built with its route table.
#[derive(Debug, Default)]
pub struct Policies {
    authz: Option<authz::Authz>,
    rate_limit: Option<rate_limit::RateLimit>,
    fault: Option<fault::Fault>,
    /// Live overrides (admin `POST /fault`) of this route, once attached.
    live: Option<fault_live::LiveFault>,
    /// Counts the file's fault and live overrides alike.
    fault_counters: fault::FaultCounters,
}

impl Policies {
    pub fn build(spec: &RoutePolicies) -> Self {
        Self {
            authz: spec.authz.clone().map(authz::Authz::new),
            rate_limit: spec.rate_limit.map(rate_limit::RateLimit::new),
            fault: spec.fault.clone().map(fault::Fault::new),
            live: None,
            fault_counters: fault::FaultCounters::default(),
        }
    }

    /// Lets live fault overrides of route `id` (`<listener>/<route name>`)
    /// apply to this route.
    pub fn attach_fault_overrides(&mut self, registry: &Arc<FaultOverrides>, id: Arc<str>) {
        self.live = Some(fault_live::LiveFault::new(Arc::clone(registry), id));
    }

    /// Whether any policy is configured on the route, or a live override
    /// could apply (else the stages are skipped whole).
    pub fn is_configured(&self) -> bool {
        self.authz.is_some()
            || self.rate_limit.is_some()
            || self.fault.is_some()
            || self.live.as_ref().is_some_and(|l| l.could_apply())
    }

    /// The policy stages, in order; the first that answers ends the request.
    /// `Ok` carries the authz rule that allowed the request (for logs and
    /// spans), if any.
    pub async fn apply(&self, req: &RequestView<'_>) -> Result<Option<Arc<str>>, ProxyError> {
        // Who may ask what comes first: a denied caller uses none of the
        // route's rate-limit tokens and meets none of its faults.
        let rule = match &self.authz {
            Some(authz) => authz.check(req, req.route)?.rule,
            None => None,
        };
        // Shed load first: a request over the limit gets its 429 at once,
        // never after sitting through an injected delay.
        if let Some(rl) = &self.rate_limit {
            rl.check()?;
        }
        // A live override replaces the route's own fault while active.
        if let Some((delay, abort)) = self.live.as_ref().and_then(|l| l.current()) {
            fault::inject(delay, abort, &self.fault_counters).await?;
        } else if let Some(fault) = &self.fault {
            fault.apply(req, &self.fault_counters).await?;
        }
        Ok(rule)
    }

    /// Visits every counter of this route's policies, by its name below
    /// `route.<listener>.<route>.` (e.g. `fault.aborted`). The fault
    /// counters show where a fault is configured or has been injected.
    pub fn counters(&self, visit: &mut dyn FnMut(&str, u64)) {
        if let Some(authz) = &self.authz {
            authz.counters(visit);
        }
        if self.fault.is_some() || self.fault_counters.any() {
            self.fault_counters.visit(visit);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::router::ResponseFlag;

    /// The rate limit comes before the fault: a request over the limit is
    /// refused at once instead of first sleeping through the delay.
    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_refuses_before_a_fault_delays() {
        let spec = RoutePolicies {
            authz: None,
            rate_limit: Some(RateLimitSpec {
                requests_per_second: 0.001,
                burst: 1,
            }),
            fault: Some(fault::FaultSpec {
                delay: Some(fault::FaultDelay {
                    fixed: Duration::from_secs(1),
                    percent: 100.0,
                }),
                abort: None,
                from: Vec::new(),
                headers: Vec::new(),
            }),
        };
        let policies = Policies::build(&spec);
        let headers = http::HeaderMap::new();
        let view = RequestView {
            route: "test",
            method: &http::Method::GET,
            path: "/",
            headers: &headers,
            peer: None,
        };
        let start = tokio::time::Instant::now();
        assert!(policies.apply(&view).await.is_ok());
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "the first is delayed"
        );
        let second = tokio::time::Instant::now();
        let refused = policies.apply(&view).await;
        assert!(matches!(&refused, Err(e) if e.flag() == ResponseFlag::RateLimited));
        assert_eq!(
            second.elapsed(),
            Duration::ZERO,
            "refused without the delay"
        );
    }
}
