//! Authorization by identity (SPEC §7), per request: the first rule that
//! matches the caller, method, normalized path and headers allows; none
//! matching falls to the policy's default (deny once `authz` is present).
//!
//! Here: the config (`listeners[].authz`, `routes[].authz`), its
//! validation, the decision, and the runtime stage (403 `UAEX`, audit mode,
//! counters) that `Policies::apply` runs first; `offline` answers
//! `mesh-cli authz check` with the same code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue, Method};
use mesh_ca::{SpiffeId, SpiffePattern};
use serde::Deserialize;

use crate::config::raw::ScalarMap;
use tokio::time::Instant;

use super::RequestView;
use crate::config::validate::{Ctx, index, join};
use crate::router::{PolicyReply, ProxyError, ResponseFlag};

/// `authz:` as written, on a listener or a route.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuthzConfig {
    pub mode: Option<String>,
    pub default: Option<String>,
    pub rules: Option<Vec<RuleConfig>>,
}

/// One rule as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RuleConfig {
    pub name: Option<String>,
    pub from: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub headers: Option<ScalarMap>,
}

/// Enforce, or only log and count what would be denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Audit,
}

/// Who a rule admits.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Caller {
    /// `unauthenticated`: no client certificate.
    #[serde(serialize_with = "unauthenticated")]
    Unauthenticated,
    /// A SPIFFE ID pattern (`*` one segment, `**` the rest).
    Id(SpiffePattern),
}

fn arc_str<S: serde::Serializer>(name: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name)
}

fn unauthenticated<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("unauthenticated")
}

/// A path a rule admits: `/x/*` everything under `/x/`, else exactly it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum PathRule {
    Under(String),
    Exact(String),
}

impl PathRule {
    fn parse(text: &str) -> Result<Self, &'static str> {
        if !text.starts_with('/') {
            return Err("a path starts with /");
        }
        if text.contains('*') && !text.ends_with("/*") || text.matches('*').count() > 1 {
            return Err("'*' only as a whole last segment, as /api/*");
        }
        Ok(match text.strip_suffix('*') {
            Some(prefix) => PathRule::Under(prefix.to_owned()),
            None => PathRule::Exact(text.to_owned()),
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathRule::Under(prefix) => path.starts_with(prefix.as_str()),
            PathRule::Exact(exact) => path == exact,
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rule {
    #[serde(serialize_with = "arc_str")]
    pub name: Arc<str>,
    pub from: Vec<Caller>,
    /// Empty: any method.
    #[serde(serialize_with = "crate::config::ser::methods")]
    pub methods: Vec<Method>,
    /// Empty: any path.
    pub paths: Vec<PathRule>,
    /// Exact values, all required.
    #[serde(serialize_with = "crate::config::ser::header_pairs")]
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A validated policy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuthzSpec {
    pub mode: Mode,
    /// Whether a request no rule matched is allowed.
    pub default_allow: bool,
    pub rules: Vec<Rule>,
}

/// What the policy says of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The rule that allowed it (`None`: the default decided).
    pub rule: Option<Arc<str>>,
}

impl Rule {
    fn matches(
        &self,
        caller: Option<&SpiffeId>,
        method: &Method,
        path: &str,
        headers: &http::HeaderMap,
    ) -> bool {
        let caller_ok = self.from.iter().any(|c| match (c, caller) {
            (Caller::Unauthenticated, None) => true,
            (Caller::Id(p), Some(id)) => p.matches(id),
            _ => false,
        });
        caller_ok
            && (self.methods.is_empty() || self.methods.contains(method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path)))
            && self
                .headers
                .iter()
                .all(|(n, v)| headers.get_all(n).iter().any(|h| h == v))
    }
}

impl AuthzSpec {
    /// The decision for a request; `path` is the normalized path without
    /// `;parameters` (what routes match).
    pub fn decide(
        &self,
        caller: Option<&SpiffeId>,
        method: &Method,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Decision {
        self.decision(self.first_match(caller, method, path, headers))
    }

    /// The index of the first rule that matches, if any.
    fn first_match(
        &self,
        caller: Option<&SpiffeId>,
        method: &Method,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Option<usize> {
        self.rules
            .iter()
            .position(|r| r.matches(caller, method, path, headers))
    }

    /// The decision of rule `matched` (`None`: the default's).
    fn decision(&self, matched: Option<usize>) -> Decision {
        match matched {
            Some(i) => Decision {
                allowed: true,
                rule: Some(Arc::clone(&self.rules[i].name)),
            },
            None => Decision {
                allowed: self.default_allow,
                rule: None,
            },
        }
    }
}

impl AuthzSpec {
    /// The decision for a whole connection of a `tcp` listener, whose
    /// rules can only name callers (validation refuses the rest).
    pub fn admits_caller(&self, caller: Option<&SpiffeId>) -> Decision {
        self.decide(caller, &Method::GET, "/", &http::HeaderMap::new())
    }
}

/// Validates `authz:` at `at`. `inherited` is the listener's policy when
/// this one is a route's (its mode and default carry over unless given).
pub(crate) fn validate(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: AuthzConfig,
    inherited: Option<&AuthzSpec>,
) -> Option<AuthzSpec> {
    let mode = match raw.mode.as_deref() {
        None => inherited.map_or(Mode::Enforce, |i| i.mode),
        Some(text) => cx.word(
            at,
            "mode",
            Some(text),
            &[("enforce", Mode::Enforce), ("audit", Mode::Audit)],
            Mode::Enforce,
        ),
    };
    let default_allow = match raw.default.as_deref() {
        None => inherited.is_some_and(|i| i.default_allow),
        Some(text) => cx.word(
            at,
            "default",
            Some(text),
            &[("deny", false), ("allow", true)],
            false,
        ),
    };
    let rules = rules(cx, &join(at, "rules"), raw.rules.unwrap_or_default())?;
    Some(AuthzSpec {
        mode,
        default_allow,
        rules,
    })
}

fn rules(cx: &mut Ctx<'_>, at: &str, raw: Vec<RuleConfig>) -> Option<Vec<Rule>> {
    let mut out: Vec<Rule> = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (i, r) in raw.into_iter().enumerate() {
        let at = index(at, i);
        match rule(cx, &at, r) {
            Some(rule) if out.iter().any(|o| o.name == rule.name) => {
                cx.error(
                    &join(&at, "name"),
                    format!(
                        "duplicate rule name \"{}\": rule names are unique in a policy",
                        rule.name
                    ),
                );
                ok = false;
            }
            Some(rule) => out.push(rule),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn rule(cx: &mut Ctx<'_>, at: &str, raw: RuleConfig) -> Option<Rule> {
    let name = cx
        .required(at, "name", raw.name.as_deref())
        .map(Arc::<str>::from);
    let from = callers(cx, &join(at, "from"), raw.from);
    let methods = raw
        .methods
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, m)| cx.method(&index(&join(at, "methods"), i), m))
        .collect::<Option<Vec<_>>>();
    let paths = raw
        .paths
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at = index(&join(at, "paths"), i);
            PathRule::parse(p)
                .map_err(|why| cx.error(&at, format!("invalid path \"{p}\": {why}")))
                .ok()
        })
        .collect::<Option<Vec<_>>>();
    let headers = raw.headers.map_or(Some(Vec::new()), |h| {
        h.0.iter()
            .map(|(k, v)| cx.header(&join(&join(at, "headers"), k), k, v))
            .collect::<Option<Vec<_>>>()
    });
    Some(Rule {
        name: name?,
        from: from?,
        methods: methods?,
        paths: paths?,
        headers: headers?,
    })
}

/// Rules a listener could never enforce as written are errors: L7 fields
/// on a `tcp` listener, SPIFFE IDs without mutual TLS (only
/// `unauthenticated` can match there), and a literal caller that the
/// listener's `tls.allow` refuses at the handshake.
pub(crate) fn check_enforceable(
    cx: &mut Ctx<'_>,
    at: &str,
    spec: &AuthzSpec,
    is_tcp: bool,
    tls: Option<&crate::config::DownstreamTlsSpec>,
) {
    let mutual = tls.is_some_and(|t| t.mode == crate::config::TlsMode::Mutual);
    for (i, rule) in spec.rules.iter().enumerate() {
        let at = index(&join(at, "rules"), i);
        if is_tcp {
            for (key, given) in [
                ("methods", !rule.methods.is_empty()),
                ("paths", !rule.paths.is_empty()),
                ("headers", !rule.headers.is_empty()),
            ] {
                if given {
                    cx.error(
                        &join(&at, key),
                        "a tcp listener sees no HTTP requests: only from: can be enforced here",
                    );
                }
            }
        }
        for (j, caller) in rule.from.iter().enumerate() {
            let Caller::Id(pattern) = caller else {
                continue;
            };
            let at = index(&join(&at, "from"), j);
            if !mutual {
                cx.error(
                    &at,
                    "this listener has no mutual TLS, so no caller has an identity: only unauthenticated can match (hint: tls: { mode: mutual, allow: [...] })",
                );
            } else if let Some(allow) = tls.map(|t| &t.allow)
                && let Ok(id) = pattern.to_string().parse::<SpiffeId>()
                && !allow.iter().any(|a| a.matches(&id))
            {
                cx.error(
                    &at,
                    format!("{id} can never match: tls.allow refuses it at the handshake (add it to tls.allow, or remove it here)"),
                );
            } else if let Some(allow) = tls.map(|t| &t.allow)
                && !allow
                    .iter()
                    .any(|a| trust_domain(&a.to_string()) == trust_domain(&pattern.to_string()))
            {
                cx.error(
                    &at,
                    format!("{pattern} can never match: tls.allow admits no identity of its trust domain"),
                );
            }
        }
    }
}

/// The trust domain of a SPIFFE ID or pattern as written.
fn trust_domain(text: &str) -> &str {
    text.strip_prefix("spiffe://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
}

/// `from:` — required and not empty (a rule for nobody is a mistake).
fn callers(cx: &mut Ctx<'_>, at: &str, raw: Option<Vec<String>>) -> Option<Vec<Caller>> {
    let list = raw.unwrap_or_default();
    if list.is_empty() {
        cx.error(
            at,
            "a rule needs from: (SPIFFE ID patterns, or unauthenticated)",
        );
        return None;
    }
    list.iter()
        .enumerate()
        .map(|(i, text)| match text.as_str() {
            "unauthenticated" => Some(Caller::Unauthenticated),
            _ => cx.spiffe_pattern(&index(at, i), text).map(Caller::Id),
        })
        .collect()
}

/// The authz stage of one route: its policy and what it counted.
#[derive(Debug)]
pub(crate) struct Authz {
    spec: AuthzSpec,
    /// Allowed by each rule (same order as `spec.rules`), then by the default.
    allowed: Vec<AtomicU64>,
    denied: AtomicU64,
    would_deny: AtomicU64,
    audit: AuditLog,
}

impl Authz {
    pub(crate) fn new(spec: AuthzSpec) -> Self {
        let allowed = (0..=spec.rules.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            spec,
            allowed,
            denied: AtomicU64::new(0),
            would_deny: AtomicU64::new(0),
            audit: AuditLog::default(),
        }
    }

    /// Decides; a denial is the 403 `UAEX` local reply in enforce mode,
    /// and logged (once a minute per caller, route and method) and counted
    /// in audit mode, where the request goes on.
    pub(crate) fn check(&self, req: &RequestView<'_>, route: &str) -> Result<Decision, ProxyError> {
        let matched = self
            .spec
            .first_match(req.peer, req.method, req.path, req.headers);
        let d = self.spec.decision(matched);
        if d.allowed {
            let i = matched.unwrap_or(self.spec.rules.len()); // the default's: last
            self.allowed[i].fetch_add(1, Ordering::Relaxed);
            return Ok(d);
        }
        let caller = req
            .peer
            .map_or_else(|| "unauthenticated".to_owned(), |p| p.to_string());
        if self.spec.mode == Mode::Audit {
            self.would_deny.fetch_add(1, Ordering::Relaxed);
            self.audit.note(&caller, route, req.method, req.path);
            return Ok(d);
        }
        self.denied.fetch_add(1, Ordering::Relaxed);
        Err(ProxyError::Policy(PolicyReply {
            status: http::StatusCode::FORBIDDEN,
            flag: ResponseFlag::Unauthorized,
            message: format!("denied: {caller} may not {} {}\n", req.method, req.path).into(),
        }))
    }

    /// `authz.allowed.<rule>` (`-` for the default), `authz.denied`,
    /// `authz.would_deny`.
    pub(crate) fn counters(&self, visit: &mut dyn FnMut(&str, u64)) {
        let names = self.spec.rules.iter().map(|r| r.name.as_ref()).chain(["-"]);
        for (name, n) in names.zip(&self.allowed) {
            visit(&format!("authz.allowed.{name}"), n.load(Ordering::Relaxed));
        }
        visit("authz.denied", self.denied.load(Ordering::Relaxed));
        visit("authz.would_deny", self.would_deny.load(Ordering::Relaxed));
    }
}

/// Audit-mode keys logged in the last minute; a caller inventing keys
/// (methods) cannot grow it past `AUDIT_KEYS` (it is cleared whole then).
#[derive(Debug)]
pub(crate) struct AuditSeen<K>(Mutex<HashMap<K, Instant>>);

impl<K> Default for AuditSeen<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

const AUDIT_KEYS: usize = 4096;
pub(crate) const AUDIT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl<K: std::hash::Hash + Eq> AuditSeen<K> {
    /// Whether `key` was not seen in the last minute (it is now).
    pub(crate) fn first_in_a_while(&self, key: K) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if seen
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < AUDIT_EVERY)
        {
            return false;
        }
        if seen.len() >= AUDIT_KEYS {
            seen.clear();
        }
        seen.insert(key, now);
        true
    }
}

type AuditLog = AuditSeen<(String, String, Method)>;
impl AuditLog {
    fn note(&self, caller: &str, route: &str, method: &Method, path: &str) {
        let key = (caller.to_owned(), route.to_owned(), method.clone());
        if self.first_in_a_while(key) {
            tracing::warn!(caller, route, %method, path, "authz audit: would deny (mode: audit lets it through)");
        }
    }
}

pub mod offline;

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;
