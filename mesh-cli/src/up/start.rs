//! The start-up sequence of `mesh-cli up`, in order: pick the ports, create
//! the CA and start `mesh-ca serve`, point traces at
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or start a trace receiver, plan every
//! component (tokens and checked configs, before any starts), then start the
//! components one by one, each once the one before is ready. It fills in the
//! `${placeholder}` values as it goes and returns what the banner needs; the
//! caller stops whatever is in `running` if it fails.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use mesh_ca::Ca;

use super::UpArgs;
use super::children::{Ready, Running, spawn, wait_ready};
use super::manifest::Manifest;
use super::plan::{Bins, Plan, plan};
use super::ui::Ui;

/// What the banner needs once everything is up.
pub(super) struct Started {
    pub(super) values: BTreeMap<String, String>,
    /// The waterfall file, when `up` prints it.
    pub(super) traces_text: Option<PathBuf>,
    /// Where traces go, in words.
    pub(super) traces_where: String,
    /// (name, admin address) of each proxy.
    pub(super) admins: Vec<(String, String)>,
}

pub(super) async fn start_all(
    args: &UpArgs,
    manifest: &Manifest,
    bins: &Bins,
    state: &Path,
    ui: &Ui,
    running: &mut Vec<Running>,
) -> Result<Started> {
    let mut values = prepare_state(manifest, state)?;
    let ca = start_ca(
        args.timeout,
        manifest,
        bins,
        state,
        ui,
        running,
        &mut values,
    )
    .await?;
    let (traces_text, traces_where) = start_traces(args, state, ui, running, &mut values).await?;

    // Tokens and configs for every proxy, all checked before any starts.
    let mut plans = Vec::new();
    for c in &manifest.components {
        plans.push(plan(c, manifest, &args.dir, state, &ca, &values, bins)?);
    }

    let admins = start_components(args.timeout, manifest, plans, state, ui, running).await?;
    Ok(Started {
        values,
        traces_text,
        traces_where,
        admins,
    })
}

/// Picks a free port for each declared port and creates the state dir's
/// folders; returns the placeholder values known so far.
fn prepare_state(manifest: &Manifest, state: &Path) -> Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    for port in &manifest.ports {
        values.insert(port.clone(), free_port()?.to_string());
    }
    values.insert("state_dir".into(), state.display().to_string());
    for sub in ["ca", "tokens", "configs", "logs"] {
        fs::create_dir_all(state.join(sub))
            .with_context(|| format!("cannot create {}", state.join(sub).display()))?;
    }
    Ok(values)
}

/// The CA: created here (in `ca/`), served by `mesh-ca serve`.
async fn start_ca(
    timeout: Duration,
    manifest: &Manifest,
    bins: &Bins,
    state: &Path,
    ui: &Ui,
    running: &mut Vec<Running>,
    values: &mut BTreeMap<String, String>,
) -> Result<Ca> {
    let step = ui.step("ca", "creating the CA and starting mesh-ca serve");
    let ca_dir = state.join("ca");
    let ca = Ca::create(&manifest.trust_domain)
        .with_context(|| format!("cannot create a CA for {}", manifest.trust_domain))?;
    ca.save(&ca_dir, false).map_err(crate::certs::exists_hint)?;
    let ca_addr = format!("127.0.0.1:{}", free_port()?);
    values.insert("ca_url".into(), format!("https://{ca_addr}"));
    values.insert(
        "trust_bundle".into(),
        ca_dir.join(mesh_ca::CA_CERT_FILE).display().to_string(),
    );
    let ca_args = [
        "serve".to_owned(),
        "--ca-dir".to_owned(),
        ca_dir.display().to_string(),
        "--listen".to_owned(),
        ca_addr.clone(),
    ];
    spawn(running, state, "ca", &bins.path("mesh-ca")?, &ca_args, None).await?;
    wait_ready(running, &Ready::Listening(vec![ca_addr.clone()]), timeout)
        .await
        .inspect_err(|e| step.fail(e))?;
    step.done(&format!(
        "https://{ca_addr} (trust domain {})",
        manifest.trust_domain
    ));
    Ok(ca)
}

/// Where the proxies send traces: to `OTEL_EXPORTER_OTLP_ENDPOINT` when it is
/// set, else to a trace receiver started here. Returns the waterfall file
/// (when `up` prints it) and where traces go, in words.
async fn start_traces(
    args: &UpArgs,
    state: &Path,
    ui: &Ui,
    running: &mut Vec<Running>,
    values: &mut BTreeMap<String, String>,
) -> Result<(Option<PathBuf>, String)> {
    match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(endpoint) => Ok((None, use_otlp_endpoint(endpoint, values))),
        None => start_trace_receiver(args, state, ui, running, values).await,
    }
}

/// Traces go to an outside collector; returns where, in words.
fn use_otlp_endpoint(endpoint: String, values: &mut BTreeMap<String, String>) -> String {
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL") {
        Ok(p) if p.starts_with("http") => "http",
        _ => "grpc",
    };
    let traces_where =
        format!("sent to {endpoint} (OTLP/{protocol}, from OTEL_EXPORTER_OTLP_ENDPOINT)");
    values.insert("otlp_endpoint".into(), endpoint);
    values.insert("otlp_protocol".into(), protocol.into());
    traces_where
}

/// Starts `mesh-cli traces` (this same executable) writing waterfalls to
/// `traces.txt`, or JSON lines to `--traces-json`.
async fn start_trace_receiver(
    args: &UpArgs,
    state: &Path,
    ui: &Ui,
    running: &mut Vec<Running>,
    values: &mut BTreeMap<String, String>,
) -> Result<(Option<PathBuf>, String)> {
    let mut traces_text = None;
    let traces_where;
    let step = ui.step("traces", "starting the trace receiver (mesh-cli traces)");
    let (http, grpc) = (
        format!("127.0.0.1:{}", free_port()?),
        format!("127.0.0.1:{}", free_port()?),
    );
    let mut targs = vec![
        "traces".to_owned(),
        "--listen".to_owned(),
        http.clone(),
        "--grpc-listen".to_owned(),
        grpc.clone(),
        "--idle".to_owned(),
        "1s".to_owned(),
    ];
    let out = match &args.traces_json {
        Some(file) => {
            targs.push("--json".to_owned());
            traces_where = format!("written as JSON lines to {}", file.display());
            file.clone()
        }
        None => {
            let file = state.join("traces.txt");
            traces_where = format!(
                "printed below as waterfalls, and kept in {}",
                file.display()
            );
            traces_text = Some(file.clone());
            file
        }
    };
    let exe = std::env::current_exe().context("cannot locate mesh-cli itself")?;
    spawn(running, state, "traces", &exe, &targs, Some(&out)).await?;
    wait_ready(
        running,
        &Ready::Listening(vec![http.clone(), grpc]),
        args.timeout,
    )
    .await
    .inspect_err(|e| step.fail(e))?;
    step.done(&format!("OTLP on http://{http}"));
    values.insert("otlp_endpoint".into(), format!("http://{http}"));
    values.insert("otlp_protocol".into(), "http".into());
    Ok((traces_text, traces_where))
}

/// Starts the planned components in manifest order, each once the one before
/// is ready; returns (name, admin address) of each proxy.
async fn start_components(
    timeout: Duration,
    manifest: &Manifest,
    plans: Vec<Plan>,
    state: &Path,
    ui: &Ui,
    running: &mut Vec<Running>,
) -> Result<Vec<(String, String)>> {
    let mut admins = Vec::new();
    for (c, (bin, cargs, ready)) in manifest.components.iter().zip(plans) {
        let what = if c.proxy.is_some() {
            "proxy"
        } else {
            "service"
        };
        let step = ui.step(&c.name, &format!("starting the {what}"));
        spawn(running, state, &c.name, &bin, &cargs, None)
            .await
            .inspect_err(|e| step.fail(e))?;
        wait_ready(running, &ready, timeout)
            .await
            .inspect_err(|e| step.fail(e))?;
        match &ready {
            Ready::Http(a, "/ready") => {
                admins.push((c.name.clone(), a.to_string()));
                step.done(&format!("ready, admin http://{a}/"));
            }
            Ready::Http(a, _) => step.done(&format!("healthy on {a}")),
            Ready::Listening(_) => step.done("listening"),
        }
    }
    Ok(admins)
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .context("cannot find a free port on 127.0.0.1")
}
