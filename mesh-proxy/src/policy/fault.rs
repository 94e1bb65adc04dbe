//! The fault injection stage (`routes[].fault`, SPEC §8): delay and/or
//! abort a share of a route's requests, optionally only those of some
//! callers (`from:`, SPIFFE patterns) or carrying some headers.
//!
//! The delay comes first and happens before the upstream is contacted, so
//! it counts against the route timeout (the router runs the policies under
//! it: a delay longer than the timeout is a 504 `UT`). The abort is then a
//! local reply with the configured status and the flag `FI`. Each is rolled
//! on its own. `abort.grpc_status` is validated and kept for gRPC callers,
//! but gRPC local replies come with the gRPC work (issue 15): until then
//! every caller gets the HTTP `status`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use mesh_ca::SpiffePattern;
use serde::{Deserialize, Serialize};

use super::RequestView;
use crate::config::raw::{Scalar, ScalarMap};
use crate::config::ser;
use crate::config::validate::{Ctx, index, join};
use crate::router::{PolicyReply, ProxyError, ResponseFlag};

/// `routes[].fault` as written.
#[derive(Debug, Deserialize)]
pub(crate) struct FaultConfig {
    pub delay: Option<DelayConfig>,
    pub abort: Option<AbortConfig>,
    pub from: Option<Vec<String>>,
    pub headers: Option<ScalarMap>,
}

/// `fault.delay`.
#[derive(Debug, Deserialize)]
pub(crate) struct DelayConfig {
    pub fixed: Option<Scalar>,
    pub percent: Option<f64>,
}

/// `fault.abort`.
#[derive(Debug, Deserialize)]
pub(crate) struct AbortConfig {
    pub status: Option<u32>,
    pub grpc_status: Option<u32>,
    pub percent: Option<f64>,
}

/// The keys of `fault` (`rest` = "") and of its parts (".delay", ".abort").
pub(crate) fn fields_at(rest: &str) -> Option<&'static [&'static str]> {
    use crate::config::introspect::fields_of;
    match rest {
        "" => Some(fields_of::<FaultConfig>()),
        ".delay" => Some(fields_of::<DelayConfig>()),
        ".abort" => Some(fields_of::<AbortConfig>()),
        _ => None,
    }
}

/// A validated `routes[].fault` (serialized for `/config_dump`, credential
/// header values redacted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
    /// Only these callers; empty = every caller.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<SpiffePattern>,
    /// Only requests carrying all of these (exact values); empty = all.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "ser::header_pairs"
    )]
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaultDelay {
    #[serde(serialize_with = "ser::duration")]
    pub fixed: Duration,
    /// Share of the requests delayed, 0–100.
    pub percent: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaultAbort {
    /// 400–599.
    #[serde(serialize_with = "ser::status")]
    pub status: StatusCode,
    /// 0–16, for gRPC callers (issue 15; not used yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u8>,
    /// Share of the requests aborted, 0–100.
    pub percent: f64,
}

/// The default share when `percent` is absent: every request (as Istio).
const ALL: f64 = 100.0;

/// `routes[].fault`: at least one of delay and abort; `percent` 0–100
/// (default 100); abort statuses 400–599.
pub(crate) fn validate(cx: &mut Ctx<'_>, at: &str, raw: FaultConfig) -> Option<FaultSpec> {
    if raw.delay.is_none() && raw.abort.is_none() {
        cx.error(at, "a fault needs delay, abort or both");
        return None;
    }
    let delay = raw.delay.map(|d| delay(cx, &join(at, "delay"), d));
    let abort = raw.abort.map(|a| abort(cx, &join(at, "abort"), a));
    let from = raw.from.map(|list| from(cx, &join(at, "from"), &list));
    let headers = raw
        .headers
        .unwrap_or_default()
        .0
        .into_iter()
        .filter_map(|(name, value)| cx.header(&join(&join(at, "headers"), &name), &name, &value))
        .collect();
    Some(FaultSpec {
        delay: given(delay)?,
        abort: given(abort)?,
        from: given(from)?.unwrap_or_default(),
        headers,
    })
}

/// An optional key that, when given, must be valid: `None` when it was
/// given but invalid (the error is recorded).
fn given<T>(value: Option<Option<T>>) -> Option<Option<T>> {
    value.map_or(Some(None), |v| v.map(Some))
}

fn delay(cx: &mut Ctx<'_>, at: &str, raw: DelayConfig) -> Option<FaultDelay> {
    let percent = percent(cx, at, raw.percent);
    let text = cx.required(at, "fixed", raw.fixed.as_ref())?;
    // The default only stands in for an invalid text (already reported).
    let fixed = cx.positive_duration(at, "fixed", Some(text), Duration::from_millis(1));
    Some(FaultDelay {
        fixed,
        percent: percent?,
    })
}

fn abort(cx: &mut Ctx<'_>, at: &str, raw: AbortConfig) -> Option<FaultAbort> {
    let percent = percent(cx, at, raw.percent);
    let grpc_status = match raw.grpc_status {
        Some(code) if code > 16 => {
            cx.error(
                &join(at, "grpc_status"),
                format!("invalid gRPC status {code}: expected 0-16"),
            );
            None
        }
        code => Some(code.and_then(|c| u8::try_from(c).ok())),
    };
    let status = match (raw.status, raw.grpc_status) {
        (Some(code), _) => cx.check(&join(at, "status"), abort_status(code)),
        // Only gRPC callers were thought of: HTTP callers get 503.
        (None, Some(_)) => Some(StatusCode::SERVICE_UNAVAILABLE),
        (None, None) => {
            cx.error(at, "an abort needs status (400-599) or grpc_status (0-16)");
            None
        }
    };
    Some(FaultAbort {
        status: status?,
        grpc_status: grpc_status?,
        percent: percent?,
    })
}

/// A fault value out of its range (shared by the config and the admin's
/// live overrides).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum FaultValueError {
    #[error("invalid status {0}: an abort answers with an error status, 400-599")]
    Status(u32),
    #[error("{0} is invalid: expected 0 to 100 (fractions allowed, as 0.5)")]
    Percent(f64),
}

/// A status an injected abort may answer: a client or server error.
pub(crate) fn abort_status(code: u32) -> Result<StatusCode, FaultValueError> {
    u16::try_from(code)
        .ok()
        .filter(|c| (400..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(FaultValueError::Status(code))
}

/// `<at>.percent`: 0–100, fractions allowed; 100 when absent.
fn percent(cx: &mut Ctx<'_>, at: &str, value: Option<f64>) -> Option<f64> {
    match value {
        None => Some(ALL),
        Some(p) => cx.check(&join(at, "percent"), share(p)),
    }
}

/// A share of the requests in percent: 0–100, fractions allowed.
pub(crate) fn share(percent: f64) -> Result<f64, FaultValueError> {
    if (0.0..=ALL).contains(&percent) {
        Ok(percent)
    } else {
        Err(FaultValueError::Percent(percent))
    }
}

fn from(cx: &mut Ctx<'_>, at: &str, list: &[String]) -> Option<Vec<SpiffePattern>> {
    if list.is_empty() {
        cx.error(
            at,
            "an empty list matches no caller: remove from: to inject for every caller",
        );
        return None;
    }
    let patterns: Vec<SpiffePattern> = list
        .iter()
        .enumerate()
        .filter_map(|(i, text)| cx.spiffe_pattern(&index(at, i), text))
        .collect();
    (patterns.len() == list.len()).then_some(patterns)
}

/// `fault.aborted` and `fault.delayed` of one route.
#[derive(Debug, Default)]
pub(crate) struct FaultCounters {
    aborted: AtomicU64,
    delayed: AtomicU64,
}

impl FaultCounters {
    /// Whether anything was injected yet.
    pub(crate) fn any(&self) -> bool {
        self.aborted.load(Ordering::Relaxed) > 0 || self.delayed.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn visit(&self, visit: &mut dyn FnMut(&'static str, u64)) {
        visit("fault.aborted", self.aborted.load(Ordering::Relaxed));
        visit("fault.delayed", self.delayed.load(Ordering::Relaxed));
    }
}

/// The fault of one route, as configured in its file.
#[derive(Debug)]
pub(crate) struct Fault {
    spec: FaultSpec,
}

impl Fault {
    pub(crate) fn new(spec: FaultSpec) -> Self {
        Self { spec }
    }

    /// Whether the request is one the fault is for: a caller in `from`
    /// (when given) carrying every header of `headers`.
    fn is_for(&self, req: &RequestView<'_>) -> bool {
        let spec = &self.spec;
        let caller_ok = spec.from.is_empty()
            || req
                .peer
                .is_some_and(|id| spec.from.iter().any(|p| p.matches(id)));
        caller_ok
            && spec
                .headers
                .iter()
                .all(|(name, value)| req.headers.get_all(name).iter().any(|v| v == value))
    }

    pub(crate) async fn apply(
        &self,
        req: &RequestView<'_>,
        counters: &FaultCounters,
    ) -> Result<(), ProxyError> {
        if !self.is_for(req) {
            return Ok(());
        }
        inject(self.spec.delay, self.spec.abort, counters).await
    }
}

/// Rolls the delay, sleeps if it hit, then rolls the abort.
pub(crate) async fn inject(
    delay: Option<FaultDelay>,
    abort: Option<FaultAbort>,
    counters: &FaultCounters,
) -> Result<(), ProxyError> {
    if let Some(d) = delay
        && roll(d.percent)
    {
        counters.delayed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(d.fixed).await;
    }
    if let Some(a) = abort
        && roll(a.percent)
    {
        counters.aborted.fetch_add(1, Ordering::Relaxed);
        return Err(ProxyError::Policy(PolicyReply {
            status: a.status,
            flag: ResponseFlag::FaultInjected,
            message: "fault injected: abort\n".into(),
        }));
    }
    Ok(())
}

/// True for `percent` % of the calls.
fn roll(percent: f64) -> bool {
    percent >= ALL || fastrand::f64() * ALL < percent
}

#[cfg(test)]
#[path = "fault_tests.rs"]
mod tests;
