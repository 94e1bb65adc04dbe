//! Telemetry: the log subscriber (levels per component, text or JSON, to
//! stderr or a file). Metrics, access logs and trace export join here.

use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

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
];

/// Builds the filter from `-l LEVEL` and `--component-log-level NAME=LEVEL,...`.
/// `RUST_LOG`, when set, wins (the ecosystem convention).
pub fn filter(level: &str, components: Option<&str>) -> Result<EnvFilter, String> {
    if let Ok(env) = std::env::var("RUST_LOG") {
        return EnvFilter::try_new(env).map_err(|e| format!("RUST_LOG: {e}"));
    }
    let mut directives =
        format!("{level},h2=warn,hyper=warn,hickory_proto=warn,hickory_resolver=warn");
    for item in components
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (name, lvl) = item
            .split_once('=')
            .ok_or_else(|| format!("--component-log-level: expected NAME=LEVEL, got \"{item}\""))?;
        let target = COMPONENTS
            .iter()
            .find(|(n, _)| *n == name.trim())
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = COMPONENTS.iter().map(|(n, _)| *n).collect();
                format!(
                    "--component-log-level: unknown component \"{name}\" (known: {})",
                    names.join(", ")
                )
            })?;
        directives.push_str(&format!(",{target}={}", lvl.trim()));
    }
    EnvFilter::try_new(&directives).map_err(|e| format!("invalid log level: {e}"))
}

pub fn init_logging(
    filter: EnvFilter,
    format: LogFormat,
    path: Option<&Path>,
) -> std::io::Result<()> {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}
