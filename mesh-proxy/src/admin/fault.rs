//! `/fault` (SPEC §8): live fault overrides on a route, by its id
//! `<listener>/<route name>`.
//!
//! - `GET /fault`: the active overrides, a JSON list (route, abort, delay,
//!   seconds left).
//! - `POST /fault?route=R&abort_status=503&abort_percent=50&delay=200ms&delay_percent=100&ttl=60s`
//!   installs (or replaces) the override of R: an abort, a delay or both
//!   (each percent defaults to 100, `abort_percent` alone aborts with 503);
//!   `ttl` defaults to 60s, at most 1h. It reverts by itself.
//! - `POST /fault/clear?route=R` removes it.
//!
//! A bad or unknown parameter, or a route no listener has, is a 400 that
//! says which.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{Body, json, text};
use crate::policy::FaultOverrides;
use crate::policy::fault::{self, FaultAbort, FaultDelay};
use crate::policy::fault_live::{DEFAULT_TTL, MAX_TTL, Override};
use crate::router::HttpContext;

/// Whether `path` is one of ours.
pub(super) fn is_fault_path(path: &str) -> bool {
    path == "/fault" || path == "/fault/clear"
}

/// The ids of every route of these HTTP listeners, in order.
pub(super) fn route_ids<'a>(listeners: impl Iterator<Item = &'a HttpContext>) -> Vec<String> {
    let mut ids = Vec::new();
    for http in listeners {
        let table = http.routes.load();
        for route in table.routes() {
            ids.push(route.name.id.to_string());
        }
    }
    ids
}

/// Answers a `/fault` or `/fault/clear` request; `routes` are the route
/// ids that exist now.
pub(super) fn handle(
    faults: &Arc<FaultOverrides>,
    routes: &[String],
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<Body> {
    let result = match (path, method) {
        ("/fault", &Method::GET | &Method::HEAD) => Ok(list(faults)),
        ("/fault", &Method::POST) => install(faults, routes, query),
        ("/fault/clear", &Method::POST) => clear(faults, routes, query),
        _ => return not_allowed(path),
    };
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(why) => text(
            StatusCode::BAD_REQUEST,
            format!("bad fault request: {why}\n"),
        ),
    }
}

fn not_allowed(path: &str) -> Response<Body> {
    let allow = if path == "/fault" {
        "GET, HEAD, POST"
    } else {
        "POST"
    };
    let mut resp = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed: {path} accepts {allow}\n"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

fn list(faults: &FaultOverrides) -> Value {
    Value::Array(
        faults
            .list()
            .iter()
            .map(|(route, o)| entry(route, o))
            .collect(),
    )
}

/// One override as `GET /fault` lists it and `POST /fault` confirms it.
fn entry(route: &str, o: &Override) -> Value {
    let left = o.time_left();
    json!({
        "route": route,
        "abort": o.abort.map(|a| json!({ "status": a.status.as_u16(), "percent": a.percent })),
        "delay": o.delay.map(|d| json!({
            "fixed": humantime::format_duration(d.fixed).to_string(),
            "percent": d.percent,
        })),
        "seconds_left": (left.as_secs_f64() * 10.0).ceil() / 10.0,
        "reverts_at": humantime::format_rfc3339_seconds(SystemTime::now() + left).to_string(),
    })
}

/// Why a `/fault` request was refused (400, with these words).
#[derive(Debug, thiserror::Error)]
enum BadRequest {
    #[error("unknown parameter \"{key}\" (expected {expected})")]
    UnknownParameter { key: String, expected: String },
    #[error("route is missing (route=<listener>/<route name>)")]
    NoRoute,
    #[error("unknown route \"{route}\" (routes: {known})")]
    UnknownRoute { route: String, known: String },
    #[error("{key}: \"{text}\" is not a number")]
    NotANumber { key: &'static str, text: String },
    #[error("abort_status: \"{0}\" is not a status code")]
    NotAStatus(String),
    #[error("{key}: {source}")]
    Value {
        key: &'static str,
        source: fault::FaultValueError,
    },
    #[error("delay_percent needs delay (a duration, as 200ms)")]
    PercentWithoutDelay,
    #[error("give abort_status and/or delay (abort_percent and delay_percent default to 100)")]
    NothingToInject,
    #[error("{key}: invalid duration \"{text}\": {source}")]
    Duration {
        key: &'static str,
        text: String,
        source: humantime::DurationError,
    },
    #[error("{key}: must be greater than 0")]
    Zero { key: &'static str },
    #[error("{key}: {text} is too long (at most {max})")]
    TooLong {
        key: &'static str,
        text: String,
        max: humantime::FormattedDuration,
    },
}

const INSTALL_KEYS: &[&str] = &[
    "route",
    "abort_status",
    "abort_percent",
    "delay",
    "delay_percent",
    "ttl",
];

fn install(
    faults: &Arc<FaultOverrides>,
    routes: &[String],
    query: Option<&str>,
) -> Result<Value, BadRequest> {
    let q = params(query, INSTALL_KEYS)?;
    let route = route(&q, routes)?;
    let percent = |key: &'static str| -> Result<f64, BadRequest> {
        match q.get(key) {
            None => Ok(100.0),
            Some(text) => text
                .parse::<f64>()
                .map_err(|_| BadRequest::NotANumber {
                    key,
                    text: text.clone(),
                })
                .and_then(|p| fault::share(p).map_err(|source| BadRequest::Value { key, source })),
        }
    };
    let abort = match (q.get("abort_status"), q.contains_key("abort_percent")) {
        (None, false) => None,
        (status, _) => Some(FaultAbort {
            status: match status {
                None => StatusCode::SERVICE_UNAVAILABLE,
                Some(s) => s
                    .parse::<u32>()
                    .map_err(|_| BadRequest::NotAStatus(s.clone()))
                    .and_then(|c| {
                        fault::abort_status(c).map_err(|source| BadRequest::Value {
                            key: "abort_status",
                            source,
                        })
                    })?,
            },
            grpc_status: None,
            percent: percent("abort_percent")?,
        }),
    };
    let delay = match (q.get("delay"), q.contains_key("delay_percent")) {
        (None, false) => None,
        (None, true) => return Err(BadRequest::PercentWithoutDelay),
        (Some(d), _) => Some(FaultDelay {
            fixed: duration("delay", d, Duration::from_secs(3600))?,
            percent: percent("delay_percent")?,
        }),
    };
    if abort.is_none() && delay.is_none() {
        return Err(BadRequest::NothingToInject);
    }
    let ttl = match q.get("ttl") {
        None => DEFAULT_TTL,
        Some(t) => duration("ttl", t, MAX_TTL)?,
    };
    let installed = faults.install(route, delay, abort, ttl);
    Ok(entry(route, &installed))
}

fn clear(
    faults: &FaultOverrides,
    routes: &[String],
    query: Option<&str>,
) -> Result<Value, BadRequest> {
    let q = params(query, &["route"])?;
    let route = route(&q, routes)?;
    Ok(json!({ "route": route, "cleared": faults.clear(route) }))
}

/// The query's parameters (decoded), refusing names not in `known`.
fn params(query: Option<&str>, known: &[&str]) -> Result<HashMap<String, String>, BadRequest> {
    let mut out = HashMap::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !known.contains(&key.as_ref()) {
            return Err(BadRequest::UnknownParameter {
                key: key.into_owned(),
                expected: known.join(", "),
            });
        }
        out.insert(key.into_owned(), value.into_owned());
    }
    Ok(out)
}

/// The `route` parameter: the id of a route some listener has now.
fn route<'a>(q: &'a HashMap<String, String>, routes: &[String]) -> Result<&'a str, BadRequest> {
    let route = q.get("route").ok_or(BadRequest::NoRoute)?;
    if routes.iter().any(|r| r == route) {
        return Ok(route);
    }
    let shown: Vec<&str> = routes.iter().take(20).map(String::as_str).collect();
    let more = if routes.len() > shown.len() {
        ", …"
    } else {
        ""
    };
    let known = if shown.is_empty() {
        "none".to_owned()
    } else {
        format!("{}{more}", shown.join(", "))
    };
    Err(BadRequest::UnknownRoute {
        route: route.clone(),
        known,
    })
}

/// A positive duration (`200ms`, `1m`) no longer than `max`.
fn duration(key: &'static str, text: &str, max: Duration) -> Result<Duration, BadRequest> {
    let d = humantime::parse_duration(text).map_err(|source| BadRequest::Duration {
        key,
        text: text.to_owned(),
        source,
    })?;
    if d.is_zero() {
        return Err(BadRequest::Zero { key });
    }
    if d > max {
        return Err(BadRequest::TooLong {
            key,
            text: text.to_owned(),
            max: humantime::format_duration(max),
        });
    }
    Ok(d)
}

#[cfg(test)]
#[path = "fault_tests.rs"]
mod tests;
