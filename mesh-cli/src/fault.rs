//! `mesh-cli fault --admin ADDR --route R [--abort 503] [--delay 200ms]
//! [--percent 50] [--ttl 60s] [--clear]`: live fault overrides through a
//! proxy's admin `/fault` (SPEC §8). With --abort and/or --delay it installs
//! one that reverts by itself after --ttl; with --clear it removes it now;
//! with neither it lists the active ones. Bad input (here or as the proxy
//! judges it: an unknown route, a status out of range) exits 2.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args};
use http::uri::Authority;
use http::{Method, StatusCode};
use serde_json::Value;

use crate::admin;

pub const EXAMPLES: &str = "\
Examples:
  mesh-cli fault --admin 127.0.0.1:9901 --route ingress/0 --abort 503 --percent 50 --ttl 30s
      (for 30 s, half of the requests on route 0 of listener ingress get a 503)
  mesh-cli fault --admin 127.0.0.1:9901 --route egress/payments --delay 200ms
      (for 60 s, every request on route payments of listener egress waits 200 ms first)
  mesh-cli fault --admin 127.0.0.1:9901                      (list the active overrides)
  mesh-cli fault --admin 127.0.0.1:9901 --route ingress/0 --clear

A route is <listener>/<route name>; an unnamed route is <listener>/<index>
(from 0). An override replaces the route's own fault: config while it lasts.
Exit status: 0 done; 1 the proxy could not be reached; 2 bad input.";

/// The longest override the proxy accepts.
const MAX_TTL: Duration = Duration::from_secs(3600);
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("fault").multiple(true).args(["abort", "delay"])))]
pub struct FaultArgs {
    /// The proxy's admin address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9901", value_parser = admin::parse_admin)]
    admin: Authority,
    /// The route: <listener>/<route name>, or <listener>/<index> for an unnamed one.
    #[arg(long, value_name = "LISTENER/ROUTE")]
    route: Option<String>,
    /// Answer with this status instead of proxying (400-599).
    #[arg(long, value_name = "STATUS", requires = "route", value_parser = clap::value_parser!(u16).range(400..=599))]
    abort: Option<u16>,
    /// Hold requests this long before they go upstream (counts against the route timeout).
    #[arg(long, value_name = "DURATION", requires = "route", value_parser = crate::parse_duration)]
    delay: Option<Duration>,
    /// Share of the requests aborted and/or delayed, 0-100 [default: 100].
    #[arg(long, requires = "fault", value_parser = parse_percent)]
    percent: Option<f64>,
    /// How long the override lasts; it reverts by itself then (at most 1h) [default: 60s].
    #[arg(long, requires = "fault", value_parser = parse_ttl)]
    ttl: Option<Duration>,
    /// Remove the route's override now.
    #[arg(long, requires = "route", conflicts_with = "fault")]
    clear: bool,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err("expected a share from 0 to 100, e.g. 50 or 0.5".to_owned()),
    }
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = crate::parse_duration(text)?;
    if ttl > MAX_TTL {
        return Err("at most 1h: an override is for an experiment, not a config".to_owned());
    }
    Ok(ttl)
}

pub fn run(args: &FaultArgs) -> Result<ExitCode> {
    let (method, path) = request_of(args);
    if args.route.is_some() && method == Method::GET {
        eprintln!(
            "error: --route needs --abort, --delay or --clear (without them, fault lists the overrides)"
        );
        return Ok(ExitCode::from(2));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let answer = runtime
        .block_on(admin::request(&args.admin, method, &path, TIMEOUT))
        .map_err(|why| anyhow::anyhow!("cannot reach the admin API at {}: {why}", args.admin))?;
    let body = String::from_utf8_lossy(&answer.body);
    if answer.status == StatusCode::BAD_REQUEST {
        let why = body.trim().trim_start_matches("bad fault request: ");
        eprintln!("error: the proxy refused: {why}");
        return Ok(ExitCode::from(2));
    }
    if answer.status != StatusCode::OK {
        bail!(
            "the admin API at {} answered {}",
            args.admin,
            answer.summary()
        );
    }
    let value: Value = serde_json::from_str(&body).context("the admin API answered no JSON")?;
    print!("{}", render(args, &value));
    Ok(ExitCode::SUCCESS)
}

/// The admin request the arguments ask for.
fn request_of(args: &FaultArgs) -> (Method, String) {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(route) = &args.route {
        q.append_pair("route", route);
    }
    if args.clear {
        return (Method::POST, format!("/fault/clear?{}", q.finish()));
    }
    if args.abort.is_none() && args.delay.is_none() {
        return (Method::GET, "/fault".to_owned());
    }
    let percent = args.percent.map(|p| p.to_string());
    if let Some(status) = args.abort {
        q.append_pair("abort_status", &status.to_string());
        if let Some(p) = &percent {
            q.append_pair("abort_percent", p);
        }
    }
    if let Some(delay) = args.delay {
        q.append_pair("delay", &humantime::format_duration(delay).to_string());
        if let Some(p) = &percent {
            q.append_pair("delay_percent", p);
        }
    }
    if let Some(ttl) = args.ttl {
        q.append_pair("ttl", &humantime::format_duration(ttl).to_string());
    }
    (Method::POST, format!("/fault?{}", q.finish()))
}

fn render(args: &FaultArgs, v: &Value) -> String {
    if args.clear {
        let route = v["route"].as_str().unwrap_or("?");
        return if v["cleared"].as_bool() == Some(true) {
            format!("cleared the fault override on {route}\n")
        } else {
            format!("no fault override on {route} (nothing to clear)\n")
        };
    }
    if let Some(list) = v.as_array() {
        if list.is_empty() {
            return format!("no fault overrides on {}\n", args.admin);
        }
        let mut out = format!(
            "{:<32} {:<20} {:<22} REVERTS IN\n",
            "ROUTE", "ABORT", "DELAY"
        );
        for o in list {
            out.push_str(&format!(
                "{:<32} {:<20} {:<22} {}\n",
                o["route"].as_str().unwrap_or("?"),
                abort_of(o).unwrap_or_else(|| "-".into()),
                delay_of(o).unwrap_or_else(|| "-".into()),
                seconds(&o["seconds_left"]),
            ));
        }
        return out;
    }
    let what: Vec<String> = [abort_of(v), delay_of(v)].into_iter().flatten().collect();
    format!(
        "fault override on {}: {}\nreverts by itself in {} (at {}); remove it sooner with --clear\n",
        v["route"].as_str().unwrap_or("?"),
        what.join(", "),
        seconds(&v["seconds_left"]),
        v["reverts_at"].as_str().unwrap_or("?"),
    )
}

/// `503 (50%)`, or `None` without an abort.
fn abort_of(o: &Value) -> Option<String> {
    let a = o.get("abort").filter(|a| !a.is_null())?;
    Some(format!(
        "abort {} ({}%)",
        a["status"],
        percent(&a["percent"])
    ))
}

fn delay_of(o: &Value) -> Option<String> {
    let d = o.get("delay").filter(|d| !d.is_null())?;
    Some(format!(
        "delay {} ({}%)",
        d["fixed"].as_str().unwrap_or("?"),
        percent(&d["percent"])
    ))
}

/// `50` for 50.0, `0.5` for 0.5.
fn percent(v: &Value) -> String {
    match v.as_f64() {
        Some(p) => p.to_string(),
        None => "?".to_owned(),
    }
}

fn seconds(v: &Value) -> String {
    match v.as_f64() {
        Some(s) => humantime::format_duration(Duration::from_secs(s.ceil() as u64)).to_string(),
        None => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: FaultArgs,
    }

    fn parse(args: &[&str]) -> Result<FaultArgs, clap::Error> {
        Cli::try_parse_from([&["fault"][..], args].concat()).map(|c| c.args)
    }

    fn request(args: &[&str]) -> (Method, String) {
        request_of(&parse(args).expect("parses"))
    }

    #[test]
    fn arguments_become_the_admin_request() {
        assert_eq!(request(&[]), (Method::GET, "/fault".into()));
        assert_eq!(
            request(&[
                "--route",
                "edge/live",
                "--abort",
                "503",
                "--percent",
                "50",
                "--ttl",
                "30s"
            ]),
            (
                Method::POST,
                "/fault?route=edge%2Flive&abort_status=503&abort_percent=50&ttl=30s".into()
            )
        );
        assert_eq!(
            request(&["--route", "e/0", "--abort", "500", "--delay", "200ms", "--percent", "0.5"]),
            (
                Method::POST,
                "/fault?route=e%2F0&abort_status=500&abort_percent=0.5&delay=200ms&delay_percent=0.5"
                    .into()
            )
        );
        assert_eq!(
            request(&["--route", "e/0", "--clear"]),
            (Method::POST, "/fault/clear?route=e%2F0".into())
        );
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_sent() {
        for bad in [
            &["--abort", "503"][..],
            &["--route", "e/0", "--abort", "200"],
            &["--route", "e/0", "--abort", "503", "--percent", "150"],
            &["--route", "e/0", "--abort", "503", "--ttl", "2h"],
            &["--route", "e/0", "--delay", "soon"],
            &["--route", "e/0", "--percent", "50"],
            &["--route", "e/0", "--abort", "503", "--clear"],
            &["--clear"],
        ] {
            let err = parse(bad).expect_err(&format!("{bad:?} should not parse"));
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }
}
