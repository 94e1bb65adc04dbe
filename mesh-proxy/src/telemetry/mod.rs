//! Telemetry: the log subscriber (levels per component, text or JSON, to
//! stderr or a file, changeable while running through [`LogControl`]), the
//! lock-free metric primitives of the request path (`metrics`) and the
//! recent local replies (`local_replies`). Access logs and trace export join
//! here.

pub mod access_log;
pub mod local_replies;
pub mod metrics;

pub mod trace;

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, reload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Component names accepted by `--component-log-level` and the modules they map to.
pub const COMPONENTS: &[(&str, &str)] = &[
    ("config", "mesh_proxy::config"),
    ("listener", "mesh_proxy::listener"),
    ("router", "mesh_proxy::router"),
    ("upstream", "mesh_proxy::cluster"),
    ("cluster", "mesh_proxy::cluster"),
    ("app", "mesh_proxy::app"),
    ("health", "mesh_proxy::health"),
    ("identity", "mesh_proxy::identity"),
    ("admin", "mesh_proxy::admin"),
];

/// Why log levels cannot be set, at start (`-l`, `--component-log-level`,
/// `RUST_LOG`) or live (`POST /logging`).
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    #[error("RUST_LOG: {0}")]
    RustLog(#[source] tracing_subscriber::filter::ParseError),
    #[error("--component-log-level: expected NAME=LEVEL, got \"{item}\"")]
    NotNameLevel { item: String },
    #[error(
        "--component-log-level: unknown component \"{name}\" (known: {})",
        component_names()
    )]
    UnknownFlagComponent { name: String },
    #[error("unknown component \"{name}\" (known: level, {})", component_names())]
    UnknownComponent { name: String },
    #[error("invalid level \"{level}\" for {name}: use trace, debug, info, warn, error or off")]
    Level { name: String, level: String },
    #[error("invalid log level: {0}")]
    Directives(#[source] tracing_subscriber::filter::ParseError),
    #[error("cannot change the log level: {0}")]
    Reload(#[source] reload::Error),
}

/// Builds the filter from `-l LEVEL` and `--component-log-level NAME=LEVEL,...`.
/// `RUST_LOG`, when set, wins (the ecosystem convention).
pub fn filter(level: &str, components: Option<&str>) -> Result<EnvFilter, LogLevelError> {
    if let Ok(env) = std::env::var("RUST_LOG") {
        return EnvFilter::try_new(env).map_err(LogLevelError::RustLog);
    }
    let mut directives = base_directives(level);
    for item in components
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (name, lvl) = item
            .split_once('=')
            .ok_or_else(|| LogLevelError::NotNameLevel {
                item: item.to_owned(),
            })?;
        let target = component_module(name).ok_or_else(|| LogLevelError::UnknownFlagComponent {
            name: name.to_owned(),
        })?;
        directives.push_str(&format!(",{target}={}", lvl.trim()));
    }
    EnvFilter::try_new(&directives).map_err(LogLevelError::Directives)
}

/// `LEVEL` for our code, with the chattier dependencies held at warn.
fn base_directives(level: &str) -> String {
    format!("{level},h2=warn,hyper=warn,hickory_proto=warn,hickory_resolver=warn")
}

/// Installs the global subscriber. The returned handle changes its levels
/// later (admin `POST /logging`).
pub fn init_logging(
    filter: EnvFilter,
    format: LogFormat,
    path: Option<&Path>,
) -> std::io::Result<LogControl> {
    let writer = match path {
        Some(p) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            BoxMakeWriter::new(std::sync::Mutex::new(file))
        }
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let ansi = path.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let directives = filter.to_string();
    let (filter, handle) = reload::Layer::new(filter);
    let output = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi);
    let output = match format {
        LogFormat::Text => output.boxed(),
        LogFormat::Json => output.json().boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init();
    Ok(LogControl {
        handle,
        directives: Mutex::new(directives),
    })
}

/// Changes the log levels of the running process. With static directives
/// only, the filter decides once per call site, so the reload layer costs
/// nothing per event.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The directives in force, as `EnvFilter` syntax.
    directives: Mutex<String>,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("directives", &self.current())
            .finish_non_exhaustive()
    }
}

impl LogControl {
    /// The directives in force, e.g. `info,h2=warn,mesh_proxy::router=trace`.
    pub fn current(&self) -> String {
        self.directives
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Applies `(name, level)` changes in order: `level` sets every
    /// component (and drops per-component levels, as Envoy's `?level=`
    /// does); a name from [`COMPONENTS`] sets that component. All changes
    /// are checked before any applies. Returns the new directives.
    pub fn apply(&self, changes: &[(String, String)]) -> Result<String, LogLevelError> {
        let mut directives = self
            .directives
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = directives.clone();
        for (name, level) in changes {
            let level = level.trim().to_ascii_lowercase();
            if level
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .is_err()
            {
                return Err(LogLevelError::Level {
                    name: name.clone(),
                    level,
                });
            }
            if name == "level" {
                next = base_directives(&level);
                continue;
            }
            let target = component_target(name)?;
            let prefix = format!("{target}=");
            let mut kept: Vec<&str> = next
                .split(',')
                .filter(|d| !d.is_empty() && !d.starts_with(&prefix))
                .collect();
            let added = format!("{target}={level}");
            kept.push(&added);
            next = kept.join(",");
        }
        let filter = EnvFilter::try_new(&next).map_err(LogLevelError::Directives)?;
        self.handle.reload(filter).map_err(LogLevelError::Reload)?;
        tracing::info!(directives = %next, "log levels changed");
        *directives = next.clone();
        Ok(next)
    }
}

fn component_target(name: &str) -> Result<&'static str, LogLevelError> {
    component_module(name).ok_or_else(|| LogLevelError::UnknownComponent {
        name: name.to_owned(),
    })
}

/// The module a `COMPONENTS` name stands for.
fn component_module(name: &str) -> Option<&'static str> {
    COMPONENTS
        .iter()
        .find(|(n, _)| *n == name.trim())
        .map(|(_, t)| *t)
}

/// The `COMPONENTS` names, comma-separated (for error messages).
fn component_names() -> String {
    let names: Vec<&str> = COMPONENTS.iter().map(|(n, _)| *n).collect();
    names.join(", ")
}
