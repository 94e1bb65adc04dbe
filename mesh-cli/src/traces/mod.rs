//! `mesh-cli traces`: a small OTLP trace receiver (SPEC §4). Spans arrive
//! over OTLP/HTTP (`POST /v1/traces`, protobuf or JSON) or OTLP/gRPC
//! (`TraceService/Export`), are grouped by trace id, and a trace is printed
//! once no span of it arrived for `--idle`: as an indented waterfall, or with
//! `--json` as one JSON object per line (the form the end-to-end tests read).

mod model;
mod render;
mod server;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use tokio::net::TcpListener;

use model::{Collector, Span, Trace};

pub const HELP: &str = "\
Examples:
  mesh-cli traces        # then point the proxies' tracing.otlp_endpoint here
  mesh-cli traces --listen 0.0.0.0:4318 --grpc-listen 0.0.0.0:4317 -v
  mesh-cli traces --json --idle 1s > traces.jsonl

Text output, per finished trace: a line `trace <trace_id> (<n> spans, <duration>)`,
then one line per span, roots first and children under their parent by start
time, indented two spaces per level:
  <service> <span name>  <KIND>  <duration>  |<bar>|  <OK|ERROR> [<http status>] [<error message>]
The bar is 40 characters for the whole trace; leading spaces show when the
span started. -v adds the span's attributes (key=value) and events under it.

--json prints one object per finished trace per line (a stable schema):
  {\"trace_id\": \"<32 hex>\",
   \"spans\": [{\"span_id\": \"<16 hex>\", \"parent_span_id\": \"<16 hex>\" | null,
              \"name\": \"...\", \"service\": \"<resource service.name>\",
              \"kind\": \"SERVER|CLIENT|INTERNAL|PRODUCER|CONSUMER|UNSPECIFIED\",
              \"start_unix_nano\": <integer>, \"end_unix_nano\": <integer>,
              \"attributes\": {\"<key>\": <string|number|bool|array|object|null>},
              \"status\": {\"code\": \"UNSET|OK|ERROR\", \"message\": \"...\"},
              \"events\": [{\"name\": \"...\", \"time_unix_nano\": <integer>, \"attributes\": {...}}]}]}
Spans are in the text form's order (depth-first, roots first, by start time).
A parent_span_id that names no span of the trace marks a span whose parent
was not received; it is printed as a root.

A trace is finished when no span of it arrived for --idle; spans arriving
later start a new printout. Ctrl-C (or SIGTERM) prints what is still waiting
and exits. Compressed (gzip) OTLP is not accepted.";

#[derive(Debug, Args)]
pub struct TracesArgs {
    /// Address for OTLP/HTTP: POST /v1/traces, application/x-protobuf or application/json.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:4318")]
    pub listen: String,
    /// Address for OTLP/gRPC (opentelemetry.proto.collector.trace.v1.TraceService/Export, h2c).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:4317")]
    pub grpc_listen: String,
    /// Print each span's attributes and events under it.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print one JSON object per finished trace per line (schema below).
    #[arg(long)]
    pub json: bool,
    /// A trace is printed once no new span of it arrived for this long.
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    pub idle: Duration,
}

async fn bind(addr: &str, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        anyhow!(
            "cannot listen on {addr} for {what}: {}",
            mesh_ca::os_reason(&e)
        )
    })
}

pub fn run(args: &TracesArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: &TracesArgs) -> Result<ExitCode> {
    let http = bind(&args.listen, "OTLP/HTTP").await?;
    let grpc = bind(&args.grpc_listen, "OTLP/gRPC").await?;
    let http_addr = http.local_addr().context("cannot read the bound address")?;
    let grpc_addr = grpc.local_addr().context("cannot read the bound address")?;
    let collector = Arc::new(Collector::new(args.idle));
    server::spawn_http(http, Arc::clone(&collector));
    server::spawn_grpc(grpc, Arc::clone(&collector));
    eprintln!(
        "listening for OTLP on http://{http_addr} and grpc://{grpc_addr}; \
         set OTEL_EXPORTER_OTLP_ENDPOINT=http://{http_addr} (or http://{grpc_addr} with \
         OTEL_EXPORTER_OTLP_PROTOCOL=grpc)"
    );

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    let mut ticks = tokio::time::interval(
        (args.idle / 8).clamp(Duration::from_millis(10), Duration::from_millis(250)),
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush = tokio::select! {
            _ = ticks.tick() => false,
            _ = tokio::signal::ctrl_c() => true,
            _ = terminate.recv() => true,
        };
        let finished = collector.take_finished(Instant::now(), flush);
        if !print(finished, args) || flush {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Prints finished traces; `false` once stdout is gone.
fn print(finished: Vec<(String, Vec<Span>)>, args: &TracesArgs) -> bool {
    if finished.is_empty() {
        return true;
    }
    let mut out = String::new();
    for (trace_id, spans) in finished {
        let trace = Trace {
            trace_id,
            spans: render::tree_order(spans)
                .into_iter()
                .map(|(_, s)| s)
                .collect(),
        };
        if args.json {
            out.push_str(&render::json_line(&trace));
            out.push('\n');
        } else {
            out.push_str(&render::waterfall(&trace, args.verbose));
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .is_ok()
}
