//! The admin API (SPEC §3 "Admin API", Envoy's paths) and its dashboard,
//! on a listener of its own: no data-plane route can ever reach it.
//!
//! Key types: [`AdminListener`] (bound before anything serves, so a taken
//! port fails start-up), then `spawn` with an [`AdminHandle`], which `app`
//! builds: admin defines what it reads and never imports `app`. The admin
//! reads snapshots and atomics; it mutates only through explicit handles:
//! the drain trigger (`/quitquitquit`), its own health-check flag
//! (`/healthcheck/fail|ok`) and the log filter (`/logging`).
//!
//! Safety rules (RELIABILITY A1–A4, O17): loopback by default (the config
//! default); mutations are POST only (GET/HEAD get 405 and change nothing);
//! a request whose `Origin` is not the admin's own is refused (CSRF); on a
//! loopback bind, a `Host` that is not a loopback name is refused (DNS
//! rebinding); nothing prints key material, certificates only as metadata.
//!
//! Endpoints: `GET /` (dashboard), `/stats` (`?filter=REGEX`,
//! `?format=json`), `/stats/prometheus`, `/config_dump`, `/clusters`
//! (`?format=json`), `/listeners` (`?format=json`), `/certs`, `/ready`,
//! `/local_replies`, `/help`; `POST /healthcheck/fail`, `/healthcheck/ok`,
//! `/logging?level=L` or `?<component>=L`, `/quitquitquit`; `/fault`
//! (GET lists, POST installs live fault overrides) and `POST /fault/clear`.

mod config_dump;
mod dashboard;
mod families;
mod fault;
mod guard;
mod handle;
mod prometheus;
mod stats;
mod views;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::telemetry::LogControl;
pub(crate) use handle::{AdminHandle, ListenerInfo, Topology};
use stats::Stats;

type Body = Full<Bytes>;

/// The admin socket, bound but not yet serving.
pub struct AdminListener {
    socket: TcpListener,
    local_addr: SocketAddr,
    logs: Option<LogControl>,
}

impl AdminListener {
    /// Binds `addr` (inside a tokio runtime). `logs` lets `/logging` change
    /// levels; without it `/logging` answers 503.
    pub fn bind(addr: SocketAddr, logs: Option<LogControl>) -> std::io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let socket = TcpListener::from_std(std_listener)?;
        let local_addr = socket.local_addr()?;
        Ok(Self {
            socket,
            local_addr,
            logs,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves the admin API for the life of the process (through the
    /// drain too, so `/ready` can say `DRAINING`).
    pub(crate) fn spawn(self, handle: AdminHandle) {
        let admin = Arc::new(Admin::new(handle, self.logs, self.local_addr));
        tracing::info!(address = %self.local_addr, "admin listening");
        let socket = self.socket;
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match socket.accept().await {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let admin = Arc::clone(&admin);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let admin = Arc::clone(&admin);
                        async move { Ok::<_, Infallible>(admin.handle(req)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "admin connection ended with an error");
                    }
                });
            }
        });
    }
}

/// What `/ready` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    Live,
    /// Draining, or `POST /healthcheck/fail`.
    Draining,
    /// An identity is configured but no certificate is loaded.
    NoIdentity,
}

impl Readiness {
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Live => "LIVE",
            Readiness::Draining => "DRAINING",
            Readiness::NoIdentity => "NO_IDENTITY",
        }
    }
}

struct Admin {
    proxy: AdminHandle,
    logs: Option<LogControl>,
    local_addr: SocketAddr,
    health_failed: AtomicBool,
}

/// Whether an endpoint reads or changes state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Mutate,
}

/// Every endpoint, with its access and a line for `/help`.
const ENDPOINTS: &[(&str, Access, &str)] = &[
    ("/", Access::Read, "the dashboard"),
    ("/help", Access::Read, "this list"),
    (
        "/stats",
        Access::Read,
        "counters and gauges; ?filter=REGEX, ?format=json",
    ),
    (
        "/stats/prometheus",
        Access::Read,
        "Prometheus (OpenMetrics) exposition",
    ),
    (
        "/config_dump",
        Access::Read,
        "the effective config as JSON, secrets redacted",
    ),
    (
        "/clusters",
        Access::Read,
        "endpoints with health and activity; ?format=json",
    ),
    (
        "/listeners",
        Access::Read,
        "listeners and their bound addresses; ?format=json",
    ),
    (
        "/certs",
        Access::Read,
        "this workload's certificate (metadata only)",
    ),
    (
        "/ready",
        Access::Read,
        "200 LIVE or 503 DRAINING / NO_IDENTITY",
    ),
    (
        "/local_replies",
        Access::Read,
        "the last local replies as JSON",
    ),
    (
        "/healthcheck/fail",
        Access::Mutate,
        "POST: make /ready fail",
    ),
    (
        "/healthcheck/ok",
        Access::Mutate,
        "POST: make /ready pass again",
    ),
    (
        "/logging",
        Access::Mutate,
        "POST ?level=L or ?<component>=L: change log levels",
    ),
    ("/quitquitquit", Access::Mutate, "POST: drain and exit"),
    // Served by `fault` (GET lists, POST installs), before this table.
    (
        "/fault",
        Access::Read,
        "live fault overrides; POST ?route=<listener>/<route>&abort_status=&abort_percent=&delay=&delay_percent=&ttl= installs one",
    ),
    (
        "/fault/clear",
        Access::Mutate,
        "POST ?route=<listener>/<route>: remove a fault override",
    ),
];

impl Admin {
    fn new(proxy: AdminHandle, logs: Option<LogControl>, local_addr: SocketAddr) -> Self {
        Self {
            proxy,
            logs,
            local_addr,
            health_failed: AtomicBool::new(false),
        }
    }

    fn handle<B>(&self, req: Request<B>) -> Response<Body> {
        if let Err(why) = guard::check(req.headers(), self.local_addr) {
            tracing::info!(reason = why, "admin request refused");
            return text(StatusCode::FORBIDDEN, format!("forbidden: {why}\n"));
        }
        let path = req.uri().path();
        if fault::is_fault_path(path) {
            let topology = self.proxy.topology();
            let http = topology.listeners.iter().filter_map(|l| l.http.as_deref());
            let routes = fault::route_ids(http);
            let (faults, query) = (&self.proxy.faults, req.uri().query());
            return fault::handle(faults, &routes, req.method(), path, query);
        }
        let Some(&(_, access, _)) = ENDPOINTS.iter().find(|(p, _, _)| *p == path) else {
            return text(
                StatusCode::NOT_FOUND,
                "not found; GET /help lists the endpoints\n",
            );
        };
        let method = req.method();
        let allowed = match access {
            Access::Read => method == Method::GET || method == Method::HEAD,
            Access::Mutate => method == Method::POST,
        };
        if !allowed {
            let allow = match access {
                Access::Read => "GET, HEAD",
                Access::Mutate => "POST",
            };
            let mut resp = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method not allowed: {path} accepts {allow}\n"),
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            return resp;
        }
        let query = guard::query_pairs(req.uri().query());
        let format_json = query.iter().any(|(k, v)| k == "format" && v == "json");
        let rt = &self.proxy;
        match path {
            "/" => dashboard::page(),
            "/help" => text(StatusCode::OK, help()),
            "/stats" => self.stats(&query, format_json),
            "/stats/prometheus" => self.prometheus(),
            "/config_dump" => json(StatusCode::OK, &config_dump::dump(&rt.topology().config)),
            "/clusters" if format_json => json(StatusCode::OK, &views::clusters_json(rt)),
            "/clusters" => text(StatusCode::OK, views::clusters_text(rt)),
            "/listeners" if format_json => json(StatusCode::OK, &views::listeners_json(rt)),
            "/listeners" => text(StatusCode::OK, views::listeners_text(rt)),
            "/certs" => json(StatusCode::OK, &views::certs_json(rt)),
            "/local_replies" => json(StatusCode::OK, &views::local_replies_json(rt)),
            "/ready" => {
                let r = self.readiness();
                let status = match r {
                    Readiness::Live => StatusCode::OK,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                text(status, format!("{}\n", r.as_str()))
            }
            "/healthcheck/fail" => {
                self.health_failed.store(true, Ordering::Relaxed);
                tracing::info!("admin: health check failed by request; /ready answers 503");
                text(StatusCode::OK, "OK\n")
            }
            "/healthcheck/ok" => {
                self.health_failed.store(false, Ordering::Relaxed);
                tracing::info!("admin: health check passing again");
                text(StatusCode::OK, "OK\n")
            }
            "/logging" => self.logging(&query),
            "/quitquitquit" => {
                tracing::info!("admin: /quitquitquit; draining");
                rt.drain.start();
                text(StatusCode::OK, "OK\n")
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn readiness(&self) -> Readiness {
        let rt = &self.proxy;
        if rt.drain.is_draining() || self.health_failed.load(Ordering::Relaxed) {
            return Readiness::Draining;
        }
        let has_cert = rt.identity.as_ref().is_some_and(|s| s.current().is_some());
        if rt.topology().config.identity.is_some() && !has_cert {
            return Readiness::NoIdentity;
        }
        Readiness::Live
    }

    fn stats(&self, query: &[(String, String)], format_json: bool) -> Response<Body> {
        let mut stats = Stats::collect(&self.proxy, self.readiness() == Readiness::Live);
        if let Some((_, pattern)) = query.iter().find(|(k, _)| k == "filter") {
            let re = regex::RegexBuilder::new(pattern)
                .size_limit(1 << 20)
                .build();
            match re {
                Ok(re) => stats.retain(&re),
                Err(e) => {
                    return text(StatusCode::BAD_REQUEST, format!("invalid filter: {e}\n"));
                }
            }
        }
        if format_json {
            json(StatusCode::OK, &stats.to_json())
        } else {
            text(StatusCode::OK, stats.to_text())
        }
    }

    fn prometheus(&self) -> Response<Body> {
        let stats = Stats::collect(&self.proxy, self.readiness() == Readiness::Live);
        match prometheus::render(stats) {
            Ok(body) => {
                let mut resp = text(StatusCode::OK, body);
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(prometheus::CONTENT_TYPE),
                );
                resp
            }
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            ),
        }
    }

    fn logging(&self, query: &[(String, String)]) -> Response<Body> {
        let Some(logs) = &self.logs else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "log levels cannot be changed in this process\n",
            );
        };
        if query.is_empty() {
            let components: Vec<&str> = crate::telemetry::COMPONENTS
                .iter()
                .map(|(n, _)| *n)
                .collect();
            return text(
                StatusCode::OK,
                format!(
                    "active: {}\nchange with POST /logging?level=L or ?<component>=L (components: {}; levels: trace, debug, info, warn, error, off)\n",
                    logs.current(),
                    components.join(", ")
                ),
            );
        }
        match logs.apply(query) {
            Ok(active) => text(StatusCode::OK, format!("active: {active}\n")),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        }
    }
}

fn help() -> String {
    let mut out = String::from("mesh-proxy admin endpoints:\n");
    for (path, access, what) in ENDPOINTS {
        let method = match access {
            Access::Read => "GET ",
            Access::Mutate => "POST",
        };
        out.push_str(&format!("  {method} {path:<20} {what}\n"));
    }
    out
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(body.into()),
    )
}

fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", Bytes::from(body))
}

#[cfg(test)]
mod tests;
