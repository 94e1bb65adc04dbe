//! `mesh-cli authz check` and `authz explain` (SPEC §7): ask a config,
//! offline, what the proxy would decide. The config is loaded with the
//! proxy's validation, and the answer comes from the proxy's own path
//! normalization, route matching and decision
//! (`mesh_proxy::authz::offline`); nothing here decides.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use mesh_ca::SpiffeId;
use mesh_proxy::authz::offline::{self, Answer, Probe};
use mesh_proxy::authz::{AuthzSpec, Mode, Rule};
use mesh_proxy::config::{Config, HostMatch, RouteSpec};

pub const CHECK_EXAMPLES: &str = "\
Examples:
  mesh-cli authz check proxy.yaml --listener ingress --from spiffe://mesh.local/web --method GET --path /api/orders
      ALLOW (rule web-reads)
  mesh-cli authz check proxy.yaml --listener ingress --from unauthenticated --method POST --path /admin/users
      DENY (no rule matched; default deny)
  mesh-cli authz check proxy.yaml --listener ingress --from spiffe://mesh.local/ops --method GET \\
      --path /api/orders --header x-tenant=acme

The path is normalized and the route picked exactly as the proxy does (a
route with a host match needs --host). In audit mode a DENY line adds that
the proxy lets the request through; it still exits 1.
Exit status: 0 allowed; 1 denied (or no route: the proxy answers 404);
2 bad input (an invalid config, unknown listener, SPIFFE ID, method, header or path).";

pub const EXPLAIN_EXAMPLES: &str = "\
Examples:
  mesh-cli authz explain proxy.yaml --listener ingress

One row per route, in matching order, with its effective policy (its own
authz:, else the listener's), then one row per rule, first match allows.";

#[derive(Debug, Subcommand)]
pub enum AuthzCmd {
    /// Would the proxy allow this request? Answers offline with the
    /// proxy's own code: ALLOW (rule NAME) or DENY (...).
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Print the effective authz policy of every route of a listener.
    #[command(after_help = EXPLAIN_EXAMPLES)]
    Explain {
        /// The proxy config.
        #[arg(value_name = "CONFIG.yaml")]
        config: PathBuf,
        /// The listener's name.
        #[arg(long, value_name = "NAME")]
        listener: String,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The proxy config.
    #[arg(value_name = "CONFIG.yaml")]
    config: PathBuf,
    /// The listener's name.
    #[arg(long, value_name = "NAME")]
    listener: String,
    /// The caller: a SPIFFE ID (its client certificate's), or unauthenticated.
    #[arg(long, value_name = "ID")]
    from: String,
    /// The request method (GET, POST, ...).
    #[arg(long, value_name = "METHOD")]
    method: String,
    /// The request path as sent (a ?query is ignored).
    #[arg(long, value_name = "PATH")]
    path: String,
    /// A request header (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// The Host the request carries, for routes that match on it [default: none].
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
}

/// Bad input: one sentence on stderr, exit 2.
struct BadInput(String);

pub fn run(cmd: &AuthzCmd) -> ExitCode {
    let result = match cmd {
        AuthzCmd::Check(args) => check(args),
        AuthzCmd::Explain { config, listener } => explain(config, listener),
    };
    result.unwrap_or_else(|BadInput(why)| {
        eprintln!("error: {why}");
        ExitCode::from(2)
    })
}

fn load(file: &Path) -> Result<Config, BadInput> {
    mesh_proxy::config::load_file(file).map_err(|errors| {
        let first = errors
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        match errors.errors.len() {
            0 | 1 => BadInput(first),
            n => BadInput(format!(
                "{first} (and {} more: see mesh-cli validate {})",
                n - 1,
                file.display()
            )),
        }
    })
}

fn check(args: &CheckArgs) -> Result<ExitCode, BadInput> {
    let caller = match args.from.as_str() {
        "unauthenticated" => None,
        text => Some(text.parse::<SpiffeId>().map_err(|e| {
            BadInput(format!(
                "--from: {e} (give a SPIFFE ID such as spiffe://mesh.local/web, or unauthenticated)"
            ))
        })?),
    };
    let method = parse_method(&args.method)?;
    let headers = parse_headers(&args.headers)?;
    let config = load(&args.config)?;
    let probe = Probe {
        caller: caller.as_ref(),
        method: &method,
        host: args.host.as_deref().unwrap_or(""),
        path: &args.path,
        headers: &headers,
    };
    let answer =
        offline::check(&config, &args.listener, &probe).map_err(|e| BadInput(e.to_string()))?;
    let (line, allowed) = verdict(&answer);
    println!("{line}");
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The answer's line, and whether the request is allowed.
fn verdict(answer: &Answer<'_>) -> (String, bool) {
    let (spec, decision) = match answer {
        Answer::NoRoute => {
            return (
                "NO ROUTE (no route matches: the proxy answers 404)".into(),
                false,
            );
        }
        Answer::Route { policy: None, .. } => return ("ALLOW (no authz policy)".into(), true),
        Answer::Route {
            policy: Some(policy),
            ..
        } => policy,
    };
    match (&decision.rule, decision.allowed) {
        (Some(rule), _) => (format!("ALLOW (rule {rule})"), true),
        (None, true) => ("ALLOW (no rule matched; default allow)".into(), true),
        (None, false) if spec.mode == Mode::Audit => (
            "DENY (no rule matched; default deny) — audit mode: the proxy lets it through".into(),
            false,
        ),
        (None, false) => ("DENY (no rule matched; default deny)".into(), false),
    }
}

/// As the config reads methods: case-insensitive, sent upper case.
fn parse_method(text: &str) -> Result<Method, BadInput> {
    let upper = text.to_ascii_uppercase();
    Method::from_bytes(upper.as_bytes())
        .ok()
        .filter(|_| !upper.is_empty())
        .ok_or_else(|| BadInput(format!("--method \"{text}\": not an HTTP method")))
}

fn parse_headers(pairs: &[String]) -> Result<HeaderMap, BadInput> {
    let mut headers = HeaderMap::new();
    for pair in pairs {
        let bad = |why: &str| BadInput(format!("--header \"{pair}\": {why}"));
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=VALUE, e.g. x-tenant=acme"))?;
        let name = HeaderName::try_from(name).map_err(|_| bad("invalid header name"))?;
        let value = HeaderValue::try_from(value).map_err(|_| bad("invalid header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn explain(file: &Path, listener: &str) -> Result<ExitCode, BadInput> {
    let config = load(file)?;
    let routes = offline::http_routes(&config, listener).map_err(|e| BadInput(e.to_string()))?;
    print!("{}", table(routes));
    Ok(ExitCode::SUCCESS)
}

/// One row per route (its match and policy, with its first rule), then one
/// row per further rule.
fn table(routes: &[RouteSpec]) -> String {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "ROUTE", "MATCH", "MODE", "DEFAULT", "RULE", "FROM", "METHODS", "PATHS", "HEADERS",
        ]);
    for col in table.column_iter_mut() {
        col.set_padding((0, 3));
    }
    for route in routes {
        let mut head = vec![route.name.clone(), match_of(route)];
        let Some(spec) = &route.policies.authz else {
            head.extend(["-".into(), "allow (no authz policy)".into()]);
            table.add_row(head);
            continue;
        };
        head.extend(policy_of(spec));
        let mut rules = spec.rules.iter();
        match rules.next() {
            Some(rule) => head.extend(rule_cells(rule)),
            None => head.push("(no rules)".into()),
        }
        table.add_row(head);
        for rule in rules {
            let mut row = vec![String::new(); 4];
            row.extend(rule_cells(rule));
            table.add_row(row);
        }
    }
    let mut text: String = table
        .to_string()
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    if routes.is_empty() {
        text.push_str("(no routes)\n");
    }
    text
}

fn match_of(route: &RouteSpec) -> String {
    let pattern = route.matcher.path.pattern();
    match &route.matcher.host {
        None => pattern,
        Some(HostMatch::Exact(host)) => format!("{host}{pattern}"),
        Some(HostMatch::Suffix(suffix)) => format!("*{suffix}{pattern}"),
    }
}

fn policy_of(spec: &AuthzSpec) -> [String; 2] {
    let mode = match spec.mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    };
    let default = if spec.default_allow { "allow" } else { "deny" };
    [mode.into(), default.into()]
}

fn rule_cells(rule: &Rule) -> [String; 5] {
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "any".to_owned()
        } else {
            items.join(",")
        }
    };
    let headers: Vec<String> = rule
        .headers
        .iter()
        .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    [
        rule.name.to_string(),
        list(rule.from.iter().map(ToString::to_string).collect()),
        list(rule.methods.iter().map(ToString::to_string).collect()),
        list(rule.paths.iter().map(ToString::to_string).collect()),
        if headers.is_empty() {
            "-".to_owned()
        } else {
            headers.join(",")
        },
    ]
}
