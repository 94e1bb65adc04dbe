//! Configuration: raw serde types (`raw`), `validate()` into the domain types
//! of `model`, and the error list a user sees.
//!
//! Owns: YAML parsing, every config check, defaults. Must not: touch sockets
//! or runtime state; `mesh-proxy --mode validate` and `mesh-cli validate`
//! call exactly this code.
//!
//! Every problem is reported, not just the first: unknown keys are collected
//! while parsing (with a "did you mean" from the struct's own field list),
//! and validation carries on past each bad value. Only a YAML syntax error or
//! a value of the wrong YAML type (a list where a number belongs) stops the
//! parse; those carry line:column.

mod error;
pub(crate) mod introspect;
mod limits;
pub mod model;
mod parse;
pub(crate) mod raw;
pub(crate) mod ser;
mod suggest;
pub(crate) mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use model::*;

/// Reads, parses and validates a config file. Relative paths resolve against
/// the file's folder.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::new(
            source.clone(),
            vec![ConfigError::new(
                "",
                format!("cannot read config file: {e}"),
            )],
        )
    })?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base_dir = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
    load_str(&text, &source, &base_dir)
}

/// Parses and validates YAML text. `source` names the file in messages,
/// `base_dir` resolves relative paths.
pub fn load_str(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(text, source, base_dir, &validate::Env::from_process())
}

fn load_with_env(
    text: &str,
    source: &str,
    base_dir: &Path,
    env: &validate::Env,
) -> Result<Config, ConfigErrors> {
    let parsed = parse::parse(text);
    let mut errors = parsed.errors;
    if let Some(raw) = parsed.raw {
        match validate::validate(raw, base_dir, env) {
            Ok(config) if errors.is_empty() => return Ok(config),
            Ok(_) => {}
            Err(more) => errors.extend(more),
        }
    }
    Err(ConfigErrors::new(source, errors))
}
