//! Raw types → domain types of `model`, collecting every problem.
//!
//! Each check pushes a `ConfigError` and carries on with a default, so one
//! pass reports everything; the `Config` is returned only when none was found.

mod cluster;
mod global;
mod limits;
mod listener;
mod retry;
mod route;
mod value_error;
mod values;

use std::path::Path;
use std::time::Duration;

use super::error::ConfigError;
use super::model::{Config, LimitsSpec};
use super::raw::{ProxyConfig, Scalar};

/// What validation reads from the environment (kept apart for tests).
#[derive(Debug, Clone, Default)]
pub(crate) struct Env {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            otlp_endpoint: std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|v| !v.trim().is_empty()),
        }
    }
}

pub(crate) fn validate(
    raw: ProxyConfig,
    base_dir: &Path,
    env: &Env,
) -> Result<Config, Vec<ConfigError>> {
    let mut cx = Ctx {
        errors: Vec::new(),
        base_dir,
    };
    let has_identity = raw.identity.is_some();
    let node = global::node(&mut cx, raw.node);
    let admin = global::admin(&mut cx, raw.admin);
    let identity = raw.identity.and_then(|id| global::identity(&mut cx, id));
    let limits = limits::limits(
        &mut cx,
        "limits",
        raw.limits.as_ref(),
        &LimitsSpec::default(),
    );
    let raw_clusters = raw.clusters.unwrap_or_default();
    let cluster_names: Vec<String> = raw_clusters.iter().filter_map(|c| c.name.clone()).collect();
    let listeners = listener::listeners(
        &mut cx,
        raw.listeners.unwrap_or_default(),
        &listener::Shared {
            clusters: &cluster_names,
            limits: &limits,
            has_identity,
        },
    );
    listener::check_admin_address(&mut cx, &admin, &listeners);
    let clusters = cluster::clusters(&mut cx, raw_clusters, has_identity);
    let tracing = global::tracing(&mut cx, raw.tracing, env);
    let access_log = global::access_logs(&mut cx, raw.access_log.unwrap_or_default());
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    Ok(Config {
        node,
        admin,
        identity,
        listeners,
        clusters,
        tracing,
        access_log,
        limits,
        base_dir: base_dir.to_path_buf(),
    })
}

/// The error list being built and what every check may need.
pub(crate) struct Ctx<'a> {
    pub errors: Vec<ConfigError>,
    pub base_dir: &'a Path,
}

impl Ctx<'_> {
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    /// The value, or `None` after recording the error under `path`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        path: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    /// A required key: `None` (and an error) when absent.
    pub fn required<'v, T>(
        &mut self,
        parent: &str,
        key: &str,
        value: Option<&'v T>,
    ) -> Option<&'v T>
    where
        T: ?Sized,
    {
        if value.is_none() {
            self.error(&join(parent, key), "required key is missing");
        }
        value
    }

    /// A duration key; `default` when absent or invalid. `0` is accepted.
    pub fn duration(
        &mut self,
        parent: &str,
        key: &str,
        value: Option<&Scalar>,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(text) => self
                .check(&join(parent, key), values::duration(text.as_str()))
                .unwrap_or(default),
        }
    }

    /// A duration key that must be more than zero.
    pub fn positive_duration(
        &mut self,
        parent: &str,
        key: &str,
        value: Option<&Scalar>,
        default: Duration,
    ) -> Duration {
        let parsed = self.duration(parent, key, value, default);
        if parsed.is_zero() {
            self.error(&join(parent, key), "must be greater than 0");
            return default;
        }
        parsed
    }

    /// An enum-like word out of `options`; `default` when absent or invalid.
    pub fn word<T: Copy>(
        &mut self,
        parent: &str,
        key: &str,
        value: Option<&str>,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        match value {
            None => default,
            Some(text) => self
                .check(&join(parent, key), values::one_of(key, text, options))
                .unwrap_or(default),
        }
    }

    /// A required listener or cluster name.
    pub fn name(&mut self, parent: &str, value: Option<&str>) -> Option<String> {
        let name = self.required(parent, "name", value)?;
        self.check(&join(parent, "name"), values::name(name))?;
        Some(name.to_owned())
    }

    /// A SPIFFE ID pattern (`*` one segment, a last `**` the rest), as
    /// `tls.allow` takes them.
    pub fn spiffe_pattern(&mut self, path: &str, text: &str) -> Option<mesh_ca::SpiffePattern> {
        self.check(path, values::spiffe_pattern(text))
    }

    /// An HTTP method, as written.
    pub fn method(&mut self, path: &str, text: &str) -> Option<http::Method> {
        self.check(path, values::method(text))
    }

    /// A header to match or add: a valid name and value.
    pub fn header(
        &mut self,
        path: &str,
        name: &str,
        value: &Scalar,
    ) -> Option<(http::HeaderName, http::HeaderValue)> {
        let name = self.check(path, values::header_name(name));
        let value = self.check(path, values::header_value(value.as_str()));
        Some((name?, value?))
    }

    /// A count key that must be at least `min`.
    pub fn at_least(
        &mut self,
        parent: &str,
        key: &str,
        value: Option<u32>,
        min: u32,
        default: u32,
    ) -> u32 {
        match value {
            Some(v) if v < min => {
                self.error(
                    &join(parent, key),
                    format!("{v} is too small: the minimum is {min}"),
                );
                default
            }
            Some(v) => v,
            None => default,
        }
    }
}

/// `parent.key`, or `key` at the top level.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}
