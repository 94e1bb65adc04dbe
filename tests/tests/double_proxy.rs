//! The double proxy of SPEC §5.3 on one machine (issue 3 item 10): a real
//! PostgreSQL ← backend `mesh-proxy` (mTLS TCP listener allowing only the
//! frontend's identity) ← frontend `mesh-proxy` (plain TCP listener, mTLS
//! cluster requiring the backend's identity) ← `psql`. The proxies run the
//! configs of `examples/double-proxy/` (only their addresses moved to free
//! ports), with certificates issued by `mesh-cli` exactly as that README
//! says. Straight to the backend proxy, no certificate, a certificate of
//! another CA and one of a non-allowed identity get nothing through, which
//! PostgreSQL's own connection log confirms; an allowed certificate through
//! the same client is the control that makes those negatives mean something.

mod interop_common;

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use interop_common::{Daemon, Ran, command, require_tool, run, s_client};
use mesh_tests::{ProxyProcess, bin_path, curl, free_port, wait_until_async};

const FRONTEND_ID: &str = "spiffe://mesh.test/frontend-proxy";
const INTRUDER_ID: &str = "spiffe://mesh.test/intruder";

/// A throwaway PostgreSQL cluster on 127.0.0.1:`port`, run as the `postgres`
/// user (the server refuses root) in a temp folder it owns; stopped by PID
/// (SIGINT, PostgreSQL's fast shutdown) before the folder is removed.
struct Postgres {
    // Dropped first: the server stops before its folder goes.
    daemon: Daemon,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `postgres`.
fn postgres_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("postgres").is_file() && bin.join("initdb").is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server in /usr/lib/postgresql/*/bin; scripts/test installs it (apt-get install postgresql)"
        )
    })
}

/// uid and gid of the `postgres` system user (created by Debian's package).
fn postgres_user() -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output()?;
        ensure!(
            out.status.success(),
            "no `postgres` user (id {flag} postgres failed)"
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

/// `setpriv` runs the program as `postgres` by exec, so the PID we hold is
/// the server's own (runuser would stay in between as a parent).
fn as_postgres(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ])
    .arg(program);
    cmd
}

impl Postgres {
    async fn start() -> anyhow::Result<Postgres> {
        let bin = postgres_bin_dir();
        let (uid, gid) = postgres_user()?;
        let dir = tempfile::Builder::new().prefix("mesh-pg-").tempdir()?;
        chown(dir.path(), Some(uid), Some(gid)).context("chown of the PostgreSQL temp folder")?;
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        std::fs::create_dir(&sockets)?;
        chown(&sockets, Some(uid), Some(gid))?;

        let mut initdb = tokio::process::Command::from(as_postgres(&bin.join("initdb")));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .current_dir(dir.path());
        let out = run(initdb, b"", Duration::from_secs(20)).await?;
        ensure!(out.ok(), "initdb failed: {}", out.both());
        // Trust only the Unix socket and 127.0.0.1, nothing else.
        let hba = data.join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )?;
        chown(&hba, Some(uid), Some(gid))?;

        let port = free_port();
        let mut server = as_postgres(&bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&sockets)
            .args(["-c", "fsync=off", "-c", "log_connections=on"])
            .current_dir(dir.path());
        let log = dir.path().join("postgres.log");
        let mut daemon = Daemon::spawn("postgres", server, &log, "INT")?;
        daemon
            .wait_ready(Duration::from_secs(15), || async move {
                psql(port, &["-c", "select 1"])
                    .await
                    .is_ok_and(|r| r.ok() && r.stdout.trim() == "1")
            })
            .await?;
        Ok(Postgres {
            daemon,
            port,
            _dir: dir,
        })
    }

    /// How many connections PostgreSQL has logged receiving so far.
    fn connections_received(&self) -> usize {
        self.daemon
            .log_text()
            .matches("connection received:")
            .count()
    }
}

/// `psql` to 127.0.0.1:`port` as `postgres`: unaligned tuples only, no
/// psqlrc, stop at the first error, 5 s connect timeout.
async fn psql(port: u16, args: &[&str]) -> anyhow::Result<Ran> {
    let port = port.to_string();
    let mut cmd = command(
        "psql",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ],
    );
    cmd.args(args).env("PGCONNECT_TIMEOUT", "5");
    run(cmd, b"", Duration::from_secs(20)).await
}

/// Runs `mesh-cli ARGS` in `dir` and requires success.
async fn mesh_cli(dir: &Path, args: &[&str]) -> anyhow::Result<Ran> {
    let mut cmd = command(bin_path("mesh-cli")?, args);
    cmd.current_dir(dir);
    let out = run(cmd, b"", Duration::from_secs(10)).await?;
    ensure!(out.ok(), "mesh-cli {args:?} failed: {}", out.both());
    Ok(out)
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/double-proxy")
}

/// The example config with its addresses moved: every `from` must occur
/// (so an edited example fails here, loudly). Two passes through
/// placeholders, so a new port can never be caught by a later `from`.
fn moved(yaml: &str, swaps: &[(&str, u16)]) -> String {
    let mut text = yaml.to_owned();
    for (i, (from, _)) in swaps.iter().enumerate() {
        assert!(
            text.contains(from),
            "the example config has no {from}:\n{yaml}"
        );
        text = text.replace(from, &format!("@@address{i}@@"));
    }
    for (i, (_, port)) in swaps.iter().enumerate() {
        text = text.replace(&format!("@@address{i}@@"), &format!("127.0.0.1:{port}"));
    }
    text
}

/// Starts one example proxy with `config` and the files under `certs/` it
/// names, waiting for `port`.
async fn start_proxy(config: &str, work: &Path, files: &[&str], port: u16) -> ProxyProcess {
    let mut builder = ProxyProcess::builder(config).wait_ports(&[port]);
    for file in files {
        let relative = format!("certs/{file}");
        let bytes = std::fs::read(work.join(&relative)).expect("issued certificate file");
        builder = builder.file(relative, bytes);
    }
    builder.start().await.expect("proxy starts")
}

/// A PostgreSQL v3 StartupMessage (user and database `postgres`) followed by
/// Terminate: whoever gets it through to the server sees its reply
/// (AuthenticationOk, ParameterStatus `server_version`, ...), then the
/// server closes.
fn pg_startup_then_terminate() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec(); // protocol 3.0
    body.extend_from_slice(b"user\0postgres\0database\0postgres\0\0");
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg.extend_from_slice(&[b'X', 0, 0, 0, 4]);
    msg
}

/// `openssl s_client` straight to the backend proxy, verifying its
/// certificate against the mesh CA, optionally presenting `client`
/// (NAME.crt / NAME.key under `work`), and sending a PostgreSQL startup.
async fn s_client_pg(port: u16, work: &Path, client: Option<&str>) -> Ran {
    let ca = work.join("certs/ca.crt");
    let mut args = vec![
        "-quiet".to_owned(),
        "-verify_return_error".to_owned(),
        "-CAfile".to_owned(),
        ca.display().to_string(),
    ];
    if let Some(name) = client {
        for (flag, ext) in [("-cert", "crt"), ("-key", "key")] {
            args.push(flag.to_owned());
            args.push(work.join(format!("{name}.{ext}")).display().to_string());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s_client(port, &args, &pg_startup_then_terminate())
        .await
        .expect("openssl s_client runs")
}

fn reached_postgres(out: &Ran) -> bool {
    out.stdout_bytes
        .windows(b"server_version".len())
        .any(|w| w == b"server_version")
}

/// Waits (2 s) until the proxy's log contains `words`.
async fn logged(proxy: &ProxyProcess, words: &str) -> bool {
    wait_until_async(Duration::from_secs(2), Duration::from_millis(20), || {
        proxy.stderr_text().contains(words)
    })
    .await
}

/// Issues the certificates as examples/double-proxy/README.md does, plus a
/// non-allowed identity (`bad/`) and the frontend's identity from another
/// CA (`rogue/`).
async fn issue_certificates(work: &Path) -> anyhow::Result<()> {
    for args in [
        &["ca", "init", "--trust-domain", "mesh.test", "--out", "ca/"][..],
        &[
            "issue",
            "frontend-proxy",
            "--ca-dir",
            "ca/",
            "--out",
            "certs/",
        ],
        &[
            "issue",
            "backend-proxy",
            "--ca-dir",
            "ca/",
            "--out",
            "certs/",
        ],
        &["issue", "intruder", "--ca-dir", "ca/", "--out", "bad/"],
        &[
            "ca",
            "init",
            "--trust-domain",
            "mesh.test",
            "--out",
            "other-ca/",
        ],
        &[
            "issue",
            "frontend-proxy",
            "--ca-dir",
            "other-ca/",
            "--out",
            "rogue/",
        ],
    ] {
        mesh_cli(work, args).await?;
    }
    Ok(())
}

/// `mesh-proxy --mode validate` and `mesh-cli validate` accept the example
/// configs next to freshly issued certificates.
async fn validate_examples(work: &Path) -> anyhow::Result<()> {
    for name in ["frontend.yaml", "backend.yaml"] {
        let mut cmd = command(bin_path("mesh-proxy")?, &["--mode", "validate", "-c", name]);
        cmd.current_dir(work);
        let out = run(cmd, b"", Duration::from_secs(10)).await?;
        if !(out.ok() && out.stdout.trim() == "OK") {
            bail!(
                "examples/double-proxy/{name} does not validate: {}",
                out.both()
            );
        }
        let out = mesh_cli(work, &["validate", name]).await?;
        ensure!(
            out.stdout.contains("OK"),
            "mesh-cli validate {name}: {}",
            out.both()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_crosses_frontend_and_backend_proxies_over_mtls() {
    let started = Instant::now();
    require_tool("psql", "apt-get install postgresql-client");
    require_tool("openssl", "apt-get install openssl");
    require_tool("setpriv", "apt-get install util-linux");

    // The example, copied next to certificates issued the README's way.
    let work_dir = tempfile::tempdir().expect("tempdir");
    let work = work_dir.path();
    for name in ["frontend.yaml", "backend.yaml"] {
        std::fs::copy(example_dir().join(name), work.join(name))
            .unwrap_or_else(|e| panic!("examples/double-proxy/{name}: {e}"));
    }
    issue_certificates(work)
        .await
        .expect("mesh-cli issues the certificates");
    validate_examples(work)
        .await
        .expect("example configs validate");

    let pg = Postgres::start().await.expect("PostgreSQL starts");
    let (front, back, back_admin) = (free_port(), free_port(), free_port());
    let example = |name: &str| std::fs::read_to_string(work.join(name)).expect("example config");
    let backend_yaml = moved(
        &example("backend.yaml"),
        &[
            ("127.0.0.1:16432", back),
            ("127.0.0.1:5432", pg.port),
            ("127.0.0.1:9912", back_admin),
        ],
    );
    let frontend_yaml = moved(
        &example("frontend.yaml"),
        &[
            ("127.0.0.1:15432", front),
            ("127.0.0.1:16432", back),
            ("127.0.0.1:9911", free_port()),
        ],
    );
    let backend = start_proxy(
        &backend_yaml,
        work,
        &["backend-proxy.crt", "backend-proxy.key", "ca.crt"],
        back,
    )
    .await;
    let _frontend = start_proxy(
        &frontend_yaml,
        work,
        &["frontend-proxy.crt", "frontend-proxy.key", "ca.crt"],
        front,
    )
    .await;

    // psql → frontend (plain) → backend (mTLS) → PostgreSQL.
    let out = psql(front, &["-c", "select 40+2"])
        .await
        .expect("psql runs");
    assert!(
        out.ok() && out.stdout.trim() == "42",
        "select 40+2 through the proxies: {}",
        out.both()
    );
    let out = psql(
        front,
        &[
            "-c",
            "create table interop (id int primary key, name text)",
            "-c",
            "insert into interop values (1, 'alpha'), (2, 'beta')",
            "-c",
            "select name from interop order by id",
        ],
    )
    .await
    .expect("psql runs");
    assert!(
        out.ok() && out.stdout.trim() == "alpha\nbeta",
        "create/insert/select through the proxies: {}",
        out.both()
    );
    // The table is really in this PostgreSQL (asked directly, not via the proxies).
    let out = psql(pg.port, &["-c", "select count(*) from interop"])
        .await
        .expect("psql runs");
    assert!(
        out.ok() && out.stdout.trim() == "2",
        "direct check: {}",
        out.both()
    );

    // Straight to the backend proxy, psql (no certificate; PostgreSQL's
    // SSLRequest is not a TLS ClientHello) gets nowhere.
    let before = pg.connections_received();
    let out = psql(back, &["-c", "select 1"]).await.expect("psql runs");
    assert!(
        !out.ok() && !out.stdout.contains('1'),
        "psql straight to the backend proxy: {}",
        out.both()
    );

    // openssl with no certificate: the handshake fails with TLS 1.3's
    // certificate_required alert (RELIABILITY T1).
    let out = s_client_pg(back, work, None).await;
    assert!(
        !reached_postgres(&out),
        "no client certificate got through: {}",
        out.both()
    );
    assert!(
        out.stderr.contains("SSL alert number 116"),
        "expected alert 116 (certificate_required) without a certificate: {}",
        out.both()
    );
    assert!(
        logged(&backend, "tls: no client certificate").await,
        "backend log:\n{}",
        backend.stderr_text()
    );

    // The frontend's own SPIFFE ID, but signed by another CA: a fatal alert.
    let out = s_client_pg(back, work, Some("rogue/frontend-proxy")).await;
    assert!(
        !reached_postgres(&out),
        "another CA's certificate got through: {}",
        out.both()
    );
    assert!(
        out.stderr.contains("SSL alert number"),
        "expected a fatal TLS alert for another CA's certificate: {}",
        out.both()
    );
    assert!(
        logged(&backend, "issued by an unknown CA").await,
        "backend log:\n{}",
        backend.stderr_text()
    );

    // A valid chain, but an identity outside `allow`: the handshake completes,
    // then the connection is closed (SPEC §3) with nothing relayed.
    let out = s_client_pg(back, work, Some("bad/intruder")).await;
    assert!(
        !reached_postgres(&out),
        "a non-allowed identity got through: {}",
        out.both()
    );
    assert!(
        logged(&backend, &format!("identity {INTRUDER_ID} not allowed")).await,
        "backend log:\n{}",
        backend.stderr_text()
    );
    assert_eq!(
        pg.connections_received(),
        before,
        "PostgreSQL saw a connection from a rejected client:\n{}",
        pg.daemon.log_text()
    );

    // Each rejection is counted by reason on the backend's admin API.
    let url = format!("http://127.0.0.1:{back_admin}/stats?filter=handshake_fail");
    let stats = curl(&["-s", &url]).await.expect("curl the admin API");
    for reason in ["no_client_cert", "unknown_ca", "not_allowed"] {
        let name = format!("tls.postgres-in.handshake_fail.{reason}: ");
        let count: u64 = stats
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(count >= 1, "{name}{count} in\n{}", stats.stdout);
    }

    // Control: the same client with the frontend's certificate does reach
    // PostgreSQL, so the rejections above are the proxy's doing.
    let out = s_client_pg(back, work, Some("certs/frontend-proxy")).await;
    assert!(
        reached_postgres(&out),
        "{FRONTEND_ID} through openssl: {}",
        out.both()
    );
    assert!(
        wait_until_async(Duration::from_secs(2), Duration::from_millis(20), || {
            pg.connections_received() == before + 1
        })
        .await,
        "PostgreSQL should have seen exactly the control connection:\n{}",
        pg.daemon.log_text()
    );
    let elapsed = started.elapsed();
    eprintln!("double proxy test took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}
