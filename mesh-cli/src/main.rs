//! `mesh-cli`: the operator's tool. Certificate commands (`ca init`,
//! `issue`, `token create`, `inspect`), `validate`, `authz check`/`explain`
//! (offline answers from a config), the operator's views of
//! running proxies (`stat`, `wait`, `fault`), a small OTLP receiver (`traces`) and
//! `up`, which runs a whole demo mesh as local processes.
//!
//! Every failure is printed as one sentence, `error: ...`, with exit code 1
//! (`fault` and `authz` exit 2 on bad input, as clap does on a bad argument).

mod admin;
mod authz;
mod certs;
mod fault;
mod inspect;
mod online;
mod stat;
mod traces;
mod up;
mod wait;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use http::uri::Authority;

#[derive(Debug, Parser)]
#[command(name = "mesh-cli", version, about = "The mesh operator's tool")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Manage the mesh's root certificate authority.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Issue a workload certificate (X.509-SVID): offline from a CA
    /// directory, or online by sending a CSR to a running mesh-ca.
    #[command(after_help = certs::ISSUE_EXAMPLES)]
    Issue(IssueArgs),
    /// Join tokens for the CA server.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Show what a PEM certificate file holds, and check its chain.
    #[command(after_help = inspect::EXAMPLES)]
    Inspect {
        /// A PEM file with one or more certificates (leaf first).
        #[arg(value_name = "FILE.pem")]
        file: PathBuf,
        /// Verify the chain against this trust bundle (PEM roots); exit 1 if
        /// it does not verify.
        #[arg(long, value_name = "ca.crt")]
        bundle: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check proxy configs with exactly the checks of `mesh-proxy --mode validate`.
    #[command(
        after_help = "Examples:\n  mesh-cli validate examples/quickstart.yaml\n  mesh-cli validate examples/*.yaml"
    )]
    Validate {
        /// One or more config files.
        #[arg(required = true, value_name = "CONFIG.yaml")]
        files: Vec<PathBuf>,
    },
    /// Ask a config, offline, what the proxy's authorization decides
    /// (SPEC §7): check one request, or explain a listener's policy.
    #[command(subcommand)]
    Authz(authz::AuthzCmd),
    /// Show the golden metrics of running proxies, per cluster and per
    /// listener: requests/s, success rate, latency, activity, endpoints.
    #[command(after_help = stat::EXAMPLES)]
    Stat {
        /// A proxy's admin address (repeatable).
        #[arg(long = "admin", value_name = "HOST:PORT", default_value = "127.0.0.1:9901", value_parser = admin::parse_admin)]
        admins: Vec<Authority>,
        /// Redraw the tables every --interval until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// The window for rates and latencies (and the refresh period).
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        interval: Duration,
    },
    /// Exit 0 as soon as a proxy is ready (its admin /ready answers 200),
    /// or 1 at the timeout; for healthchecks and entrypoints.
    #[command(after_help = wait::EXAMPLES)]
    Wait {
        /// The proxy's admin address.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9901", value_parser = admin::parse_admin)]
        admin: Authority,
        /// Give up after this long.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Inject faults into a route of a running proxy for a while (aborts
    /// and/or delays for a share of its requests), list or clear them.
    #[command(after_help = fault::EXAMPLES)]
    Fault(fault::FaultArgs),
    /// Receive OTLP traces (HTTP protobuf/JSON and gRPC) and print each
    /// finished trace as a waterfall, or as one JSON object per line.
    #[command(after_help = traces::HELP)]
    Traces(traces::TracesArgs),
    /// Run a whole demo mesh as local processes: the CA, a trace receiver,
    /// proxies and services from DIR/mesh.yaml, on free loopback ports;
    /// Ctrl-C stops everything.
    #[command(after_help = up::HELP)]
    Up(up::UpArgs),
}

#[derive(Debug, Subcommand)]
enum CaCmd {
    /// Create a root CA (ECDSA P-256, valid 10 years): writes ca.crt and
    /// ca.key (mode 0600) into --out.
    #[command(after_help = certs::CA_INIT_EXAMPLES)]
    Init {
        /// The trust domain: SPIFFE IDs will be spiffe://<trust-domain>/<service>.
        #[arg(long, env = "MESH_TRUST_DOMAIN", default_value = "mesh.local")]
        trust_domain: String,
        /// Directory to write ca.crt and ca.key into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace an existing CA in --out.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Print a join token that lets one workload obtain its first
    /// certificate for exactly one SPIFFE ID.
    #[command(after_help = certs::TOKEN_EXAMPLES)]
    Create {
        /// A service name (orders → spiffe://<trust-domain>/orders) or a full spiffe:// ID.
        #[arg(value_name = "SERVICE")]
        service: String,
        /// The CA directory written by `mesh-cli ca init`.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// How long the token can be used.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// Must match the CA's trust domain (default: the CA's).
        #[arg(long)]
        trust_domain: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["ca_dir", "ca_url"])))]
pub(crate) struct IssueArgs {
    /// A service name (orders → spiffe://<trust-domain>/orders) or a full spiffe:// ID.
    #[arg(value_name = "SERVICE")]
    service: String,
    /// Issue offline with the CA in this directory (from `mesh-cli ca init`).
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Issue online: send a CSR to the mesh-ca server at this https:// URL.
    #[arg(long, value_name = "URL", requires_all = ["bundle", "token_file"])]
    ca_url: Option<String>,
    /// With --ca-url: the trust bundle (ca.crt) that verifies the CA server.
    #[arg(long, value_name = "ca.crt", requires = "ca_url")]
    bundle: Option<PathBuf>,
    /// With --ca-url: a file holding the join token (from `mesh-cli token create`).
    #[arg(long, value_name = "FILE", requires = "ca_url")]
    token_file: Option<PathBuf>,
    /// Directory for SERVICE.crt, SERVICE.key and ca.crt (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Certificate lifetime [default: 24h offline; online, the CA server's
    /// default, and a CA server caps it at its --max-ttl].
    #[arg(long, value_parser = parse_duration)]
    ttl: Option<Duration>,
    /// An extra DNS SAN (offline only; repeatable).
    #[arg(long = "dns", value_name = "NAME", conflicts_with = "ca_url")]
    dns: Vec<String>,
    /// An extra IP SAN (offline only; repeatable).
    #[arg(long = "ip", value_name = "ADDR", conflicts_with = "ca_url")]
    ips: Vec<IpAddr>,
    /// The trust domain for a bare service name (default: the CA's, or the bundle's).
    #[arg(long)]
    trust_domain: Option<String>,
    /// Replace existing files in --out.
    #[arg(long)]
    force: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 90m, 24h, 7d)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(d)
}

fn main() -> ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::Validate { files } => return validate(&files),
        Cmd::Authz(cmd) => return authz::run(&cmd),
        Cmd::Ca(CaCmd::Init {
            trust_domain,
            out,
            force,
        }) => certs::ca_init(&trust_domain, &out, force),
        Cmd::Issue(args) => match args.ca_url.clone() {
            Some(url) => online::issue(&args, &url),
            None => certs::issue_offline(&args),
        },
        Cmd::Token(TokenCmd::Create {
            service,
            ca_dir,
            ttl,
            trust_domain,
        }) => certs::token_create(&service, &ca_dir, ttl, trust_domain.as_deref()),
        Cmd::Inspect { file, bundle, json } => inspect::run(&file, bundle.as_deref(), json),
        Cmd::Stat {
            admins,
            watch,
            interval,
        } => stat::run(&admins, watch, interval),
        Cmd::Wait { admin, timeout } => wait::run(&admin, timeout),
        Cmd::Fault(args) => fault::run(&args),
        Cmd::Traces(args) => traces::run(&args),
        Cmd::Up(args) => up::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", render(&err));
            ExitCode::FAILURE
        }
    }
}

/// One sentence from an error chain: each cause is appended unless the text
/// so far already says it (library errors often include their source).
fn render(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let bare = match text.rfind(" (os error ") {
            Some(i) if text.ends_with(')') => &text[..i],
            _ => &text,
        };
        if out.contains(bare) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(bare);
    }
    out
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
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
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

    #[test]
    fn issue_needs_exactly_one_source() {
        let base = ["mesh-cli", "issue", "orders", "--out", "certs"];
        assert!(Cli::try_parse_from(base).is_err());
        let offline = [&base[..], &["--ca-dir", "ca"]].concat();
        assert!(Cli::try_parse_from(&offline).is_ok());
        let online = [
            &base[..],
            &[
                "--ca-url",
                "https://ca:8443",
                "--bundle",
                "ca.crt",
                "--token-file",
                "t",
            ],
        ]
        .concat();
        assert!(Cli::try_parse_from(&online).is_ok());
        let both = [&online[..], &["--ca-dir", "ca"]].concat();
        assert!(Cli::try_parse_from(&both).is_err());
        let no_token = [
            &base[..],
            &["--ca-url", "https://ca:8443", "--bundle", "ca.crt"],
        ]
        .concat();
        assert!(Cli::try_parse_from(&no_token).is_err());
        let dns_online = [&online[..], &["--dns", "x"]].concat();
        assert!(Cli::try_parse_from(&dns_online).is_err());
    }

    #[test]
    fn operator_commands_parse_with_their_defaults() {
        let Ok(Cli {
            cmd:
                Cmd::Stat {
                    admins,
                    watch,
                    interval,
                },
        }) = Cli::try_parse_from(["mesh-cli", "stat"])
        else {
            panic!("stat parses");
        };
        let admins: Vec<String> = admins.iter().map(ToString::to_string).collect();
        assert_eq!(admins, ["127.0.0.1:9901"]);
        assert_eq!((watch, interval), (false, Duration::from_secs(2)));
        let two = [
            "mesh-cli", "stat", "--admin", "a:1", "--admin", "b:2", "--watch",
        ];
        assert!(matches!(
            Cli::try_parse_from(two),
            Ok(Cli { cmd: Cmd::Stat { admins, watch: true, .. } }) if admins.len() == 2
        ));
        assert!(Cli::try_parse_from(["mesh-cli", "stat", "--admin", "nohost"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["mesh-cli", "wait"]),
            Ok(Cli { cmd: Cmd::Wait { timeout, .. } }) if timeout == Duration::from_secs(30)
        ));
        assert!(Cli::try_parse_from(["mesh-cli", "wait", "--timeout", "0s"]).is_err());
        let Ok(Cli {
            cmd: Cmd::Traces(t),
        }) = Cli::try_parse_from(["mesh-cli", "traces", "-v", "--json"])
        else {
            panic!("traces parses");
        };
        assert_eq!(
            (t.listen.as_str(), t.grpc_listen.as_str()),
            ("127.0.0.1:4318", "127.0.0.1:4317")
        );
        assert!(t.verbose && t.json);
        assert_eq!(t.idle, Duration::from_secs(2));
    }

    #[test]
    fn durations_are_humantime_and_positive() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn render_does_not_repeat_causes() {
        let io = std::io::Error::from_raw_os_error(2);
        let err = anyhow::Error::new(io).context("cannot read x.pem: No such file or directory");
        assert_eq!(render(&err), "cannot read x.pem: No such file or directory");
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(render(&err), "outer: inner");
    }
}
