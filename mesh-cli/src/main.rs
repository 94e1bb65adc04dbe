//! `mesh-cli`: the operator's tool. Certificate commands, `stat`, `up`,
//! `traces` and `wait` join `validate` as their issues land.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "mesh-cli", version, about = "The mesh operator's tool")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check proxy configs with exactly the checks of `mesh-proxy --mode validate`.
    #[command(after_help = "Examples:\n  mesh-cli validate examples/quickstart.yaml\n  mesh-cli validate examples/*.yaml")]
    Validate {
        /// One or more config files.
        #[arg(required = true, value_name = "CONFIG.yaml")]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Validate { files } => validate(&files),
    }
}

/// Prints `FILE: OK` or every problem of each file; fails if any file has one.
fn validate(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match mesh_proxy::config::load_file(file) {
            Ok(_) => println!("{}: OK", file.display()),
            Err(errors) => {
                failed = true;
                eprintln!("{errors}");
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn validate_needs_at_least_one_file() {
        assert!(Cli::try_parse_from(["mesh-cli", "validate"]).is_err());
        assert!(Cli::try_parse_from(["mesh-cli", "validate", "a.yaml", "b.yaml"]).is_ok());
    }
}
