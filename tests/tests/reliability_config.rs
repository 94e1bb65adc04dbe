//! RELIABILITY.md acceptance check O15: configuration errors fail fast —
//! non-zero exit (not a timeout) in < 2 s, no configured port ever bound,
//! and one message naming the file, the key path, the bad value and, for
//! YAML errors, line:column — while a good config in validate mode prints OK,
//! exits 0 and binds nothing.

mod reliability_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mesh_tests::*;
use reliability_common::*;

/// The `timeout 5` of the check.
const KILL_AFTER: Duration = Duration::from_secs(5);
const EXIT_WITHIN: Duration = Duration::from_secs(2);

/// Ports a config names: two listeners and the admin interface.
#[derive(Clone, Copy)]
struct Ports {
    main: u16,
    second: u16,
    admin: u16,
    upstream: u16,
}

impl Ports {
    fn fresh() -> Self {
        Self {
            main: free_port(),
            second: free_port(),
            admin: free_port(),
            upstream: free_port(),
        }
    }

    fn bound_by_config(&self) -> [u16; 3] {
        [self.main, self.second, self.admin]
    }
}

/// A valid config in block YAML, so line:column positions are meaningful.
fn good_yaml(p: Ports) -> String {
    format!(
        "\
admin:
  address: 127.0.0.1:{admin}
listeners:
  - name: main
    address: 127.0.0.1:{main}
    protocol: http
    routes:
      - match: {{ prefix: / }}
        cluster: up
        timeout: 2s
  - name: second
    address: 127.0.0.1:{second}
    protocol: http
    routes:
      - match: {{ prefix: / }}
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:{upstream}]
    connect_timeout: 1s
",
        admin = p.admin,
        main = p.main,
        second = p.second,
        upstream = p.upstream
    )
}

/// Replaces the single occurrence of `from` (a test bug if not exactly one).
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} in\n{text}");
    text.replacen(from, to, 1)
}

/// 1-based line number of the single line containing `needle`, and that line.
fn line_of(text: &str, needle: &str) -> (usize, String) {
    let hits: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .collect();
    assert_eq!(hits.len(), 1, "{needle:?} in\n{text}");
    (hits[0].0 + 1, hits[0].1.to_owned())
}

struct Outcome {
    run: RunOutput,
    /// Config ports seen in LISTEN state while the process ran.
    seen_listening: Vec<u16>,
    /// Config ports we could not bind right after the exit.
    not_free_after: Vec<u16>,
}

/// Runs `mesh-proxy -c proxy.yaml ARGS` to its exit (killed after 5 s)
/// while polling the LISTEN table for the config's ports.
async fn run_config(
    yaml: &str,
    args: &[&str],
    files: &[(&str, &str)],
    ports: Ports,
) -> anyhow::Result<Outcome> {
    let mut builder = ProxyProcess::builder(yaml).args(args);
    for (path, contents) in files {
        builder = builder.file(*path, *contents);
    }
    let watched = ports.bound_by_config();
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !done.load(Ordering::SeqCst) {
                for port in listening_ports() {
                    if watched.contains(&port) && !seen.contains(&port) {
                        seen.push(port);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        })
    };
    let run = builder.run_to_exit(KILL_AFTER).await;
    done.store(true, Ordering::SeqCst);
    let seen_listening = poller.await?;
    let run = run?;
    let not_free_after = watched
        .iter()
        .copied()
        .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err())
        .collect();
    Ok(Outcome {
        run,
        seen_listening,
        not_free_after,
    })
}

/// What one bad config's message must contain.
struct Expect {
    name: &'static str,
    yaml: String,
    files: Vec<(&'static str, &'static str)>,
    /// Substrings naming the key path and the bad value.
    mentions: Vec<String>,
    /// For YAML errors: the 1-based line that must be reported as
    /// `proxy.yaml:LINE:COL`, with COL inside that line.
    line: Option<(usize, String)>,
}

fn bad_configs(p: Ports) -> Vec<Expect> {
    let good = good_yaml(p);
    let syntax = replace_once(
        &good,
        "    protocol: http\n    routes:\n      - match: { prefix: / }\n        cluster: up\n        timeout",
        "    protocol: http: 2\n    routes:\n      - match: { prefix: / }\n        cluster: up\n        timeout",
    );
    let syntax_line = line_of(&syntax, "protocol: http: 2");
    let top = replace_once(&good, "listeners:", "listners:");
    let top_line = line_of(&top, "listners:");
    let nested = replace_once(&good, "timeout: 2s", "timout: 2s");
    let nested_line = line_of(&nested, "timout:");
    let dangling = replace_once(
        &good,
        "        cluster: up\n        timeout",
        "        cluster: nope\n        timeout",
    );
    let parsecs = replace_once(&good, "timeout: 2s", "timeout: 5 parsecs");
    let duplicate = replace_once(
        &good,
        &format!("address: 127.0.0.1:{}", p.second),
        &format!("address: 127.0.0.1:{}", p.main),
    );
    let missing_cert = format!(
        "{good}identity:\n  cert: certs/missing.crt\n  key: certs/present.key\n  trust_bundle: certs/ca.crt\n"
    );
    vec![
        Expect {
            name: "YAML syntax error",
            yaml: syntax,
            files: vec![],
            mentions: vec![],
            line: Some(syntax_line),
        },
        Expect {
            name: "unknown top-level key",
            yaml: top,
            files: vec![],
            mentions: vec!["listners".into()],
            line: Some(top_line),
        },
        Expect {
            name: "unknown nested key",
            yaml: nested,
            files: vec![],
            mentions: vec!["listeners[0].routes[0].timout".into()],
            line: Some(nested_line),
        },
        Expect {
            name: "route to an unknown cluster",
            yaml: dangling,
            files: vec![],
            mentions: vec!["listeners[0].routes[0].cluster".into(), "\"nope\"".into()],
            line: None,
        },
        Expect {
            name: "duration 5 parsecs",
            yaml: parsecs,
            files: vec![],
            mentions: vec!["listeners[0].routes[0].timeout".into(), "5 parsecs".into()],
            line: None,
        },
        Expect {
            name: "two listeners on one port",
            yaml: duplicate,
            files: vec![],
            mentions: vec![
                "listeners[1].address".into(),
                format!("127.0.0.1:{}", p.main),
            ],
            line: None,
        },
        Expect {
            name: "cert file that does not exist",
            yaml: missing_cert,
            files: vec![("certs/present.key", "key\n"), ("certs/ca.crt", "ca\n")],
            mentions: vec!["identity.cert".into(), "certs/missing.crt".into()],
            line: None,
        },
    ]
}

/// Every way `line:col` could be printed after the file name.
fn reported_positions(stderr: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, _) in stderr.match_indices("proxy.yaml:") {
        let rest = &stderr[i + "proxy.yaml:".len()..];
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().and_then(|l| l.parse().ok());
        let col = parts.next().and_then(|c| c.parse().ok());
        if let (Some(line), Some(col)) = (line, col) {
            out.push((line, col));
        }
    }
    out
}

/// O15: seven bad configs each exit non-zero (not by the 5 s kill) in
/// < 2 s, never bind a configured port, and name the file, the key path,
/// the bad value and, for YAML errors, line:column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o15_bad_configs_exit_fast_naming_the_problem_and_bind_nothing() -> anyhow::Result<()> {
    let ports = Ports::fresh();
    let mut failures = Vec::new();
    for case in bad_configs(ports) {
        let files: Vec<(&str, &str)> = case.files.clone();
        let out = run_config(&case.yaml, &[], &files, ports).await?;
        let run = &out.run;
        let name = case.name;
        let exited_non_zero = !run.timed_out && run.code.is_some_and(|c| c != 0 && c != 124);
        if !exited_non_zero || run.elapsed >= EXIT_WITHIN {
            failures.push(format!(
                "{name}: exit {:?} (timed out: {}) after {:?}; want non-zero in < {EXIT_WITHIN:?}",
                run.code, run.timed_out, run.elapsed
            ));
        }
        if !out.seen_listening.is_empty() || !out.not_free_after.is_empty() {
            failures.push(format!(
                "{name}: ports listened on {:?}, not free after exit {:?}",
                out.seen_listening, out.not_free_after
            ));
        }
        let stderr = &run.stderr;
        if !stderr.contains("proxy.yaml") {
            failures.push(format!("{name}: stderr does not name the file: {stderr:?}"));
        }
        for mention in &case.mentions {
            if !stderr.contains(mention.as_str()) {
                failures.push(format!("{name}: stderr lacks {mention:?}: {stderr:?}"));
            }
        }
        if let Some((line, text)) = &case.line {
            let ok = reported_positions(stderr)
                .iter()
                .any(|(l, c)| l == line && (1..=text.len() + 1).contains(c));
            if !ok {
                failures.push(format!(
                    "{name}: stderr lacks proxy.yaml:{line}:COL for line {text:?}: {stderr:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "bad configs: {failures:#?}");
    Ok(())
}

/// O15, last part: the good config in validate mode prints OK, exits 0 and
/// binds none of its ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o15_validate_mode_accepts_the_good_config_and_binds_nothing() -> anyhow::Result<()> {
    let ports = Ports::fresh();
    let out = run_config(&good_yaml(ports), &["--mode", "validate"], &[], ports).await?;
    assert!(
        !out.run.timed_out,
        "validate mode did not exit within {KILL_AFTER:?}"
    );
    assert_eq!(out.run.code, Some(0), "stderr: {}", out.run.stderr);
    assert_eq!(out.run.stdout.trim(), "OK");
    assert!(
        out.seen_listening.is_empty() && out.not_free_after.is_empty(),
        "validate bound ports: listening {:?}, not free after {:?}",
        out.seen_listening,
        out.not_free_after
    );
    // The same file serves: it really is the good config.
    let proxy =
        ProxyProcess::start_and_wait(&good_yaml(ports), &[], &[ports.main, ports.second]).await?;
    drop(proxy);
    Ok(())
}
