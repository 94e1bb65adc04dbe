//! End-to-end: `mesh-cli up examples/demo/` brings the demo mesh up on free
//! loopback ports (CA, join tokens, trace receiver, two sidecars, two demo
//! services, an edge), every rendered config validates, one curl to the edge
//! crosses edge → web → api and yields one complete trace, and SIGINT stops
//! every child and exits 0.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_tests::{bin_path, curl, wait_until_async};
use serde_json::Value;

/// `mesh-cli up` with piped (non-TTY) stdout; its lines collect in `out`.
struct Up {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    state: PathBuf,
}

impl Up {
    fn start(state: &Path, traces: &Path) -> Up {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo");
        let mut child = Command::new(bin_path("mesh-cli").expect("mesh-cli"))
            .arg("up")
            .arg(&demo)
            .arg("--state-dir")
            .arg(state)
            .arg("--traces-json")
            .arg(traces)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mesh-cli up");
        let out = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    out.lock().expect("lock").push(line);
                }
            });
        }
        Up {
            child,
            out,
            state: state.to_path_buf(),
        }
    }

    fn output(&self) -> String {
        self.out.lock().expect("lock").join("\n")
    }

    /// The printed `curl 'http://127.0.0.1:PORT/chain'` URL.
    fn chain_url(&self) -> Option<String> {
        self.out.lock().expect("lock").iter().find_map(|l| {
            let rest = l.trim().strip_prefix("curl '")?;
            let url = rest.strip_suffix('\'')?;
            url.ends_with("/chain").then(|| url.to_owned())
        })
    }

    fn pids(&self) -> Vec<(String, u32)> {
        std::fs::read_to_string(self.state.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (name, pid) = l.split_once(' ')?;
                Some((name.to_owned(), pid.parse().ok()?))
            })
            .collect()
    }
}

fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn alive(pid: u32) -> bool {
    // A zombie still answers kill -0; /proc says which state it is in.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

impl Drop for Up {
    /// On a failed test: stop `up` as a user would, then make sure nothing is left.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), "-INT");
            let end = Instant::now() + Duration::from_secs(20);
            while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for (_, pid) in self.pids() {
            if alive(pid) {
                signal(pid, "-KILL");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_cli_up_runs_the_demo_traces_a_request_and_stops_everything() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let traces = dir.path().join("traces.jsonl");
    let mut up = Up::start(&state, &traces);

    let ready = wait_until_async(Duration::from_secs(40), Duration::from_millis(50), || {
        up.chain_url().is_some() || matches!(up.child.try_wait(), Ok(Some(_)))
    })
    .await;
    let url = up
        .chain_url()
        .unwrap_or_else(|| panic!("no curl URL printed (ready={ready}):\n{}", up.output()));
    let printed = up.output();
    assert!(
        !printed.contains('\u{1b}'),
        "no terminal escapes when stdout is not a TTY:\n{printed}"
    );
    for name in ["edge", "web-sidecar", "api-sidecar"] {
        assert!(
            printed
                .lines()
                .any(|l| l.trim_start().starts_with(name) && l.contains("http://127.0.0.1:")),
            "admin URL of {name}:\n{printed}"
        );
    }
    let pids = up.pids();
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "ca",
            "traces",
            "api-sidecar",
            "api",
            "web-sidecar",
            "web",
            "edge"
        ]
    );

    // Every rendered config passes the proxy's own validation.
    let mesh_proxy = bin_path("mesh-proxy").expect("mesh-proxy");
    for name in ["edge", "web-sidecar", "api-sidecar"] {
        let config = state.join("configs").join(format!("{name}.yaml"));
        let out = Command::new(&mesh_proxy)
            .arg("-c")
            .arg(&config)
            .args(["--mode", "validate"])
            .output()
            .expect("mesh-proxy --mode validate");
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let out = curl(&["-s", "-w", " %{http_code}", &url])
        .await
        .expect("curl");
    assert_eq!(out.stdout, "web -> api\n 200", "{}", up.output());

    // One complete trace: a span per proxy hop, parented hop to hop.
    let mut trace: Option<Value> = None;
    let found = wait_until_async(Duration::from_secs(15), Duration::from_millis(100), || {
        trace = std::fs::read_to_string(&traces)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|t| t["spans"].as_array().is_some_and(|s| s.len() == 4));
        trace.is_some()
    })
    .await;
    let contents = std::fs::read_to_string(&traces).unwrap_or_default();
    assert!(
        found,
        "no trace with 4 spans in {}:\n{contents}",
        traces.display()
    );
    let trace = trace.unwrap_or_default();
    mesh_tests::assert_demo_chain(&trace);

    // Ctrl-C: everything stops, nothing is left behind, exit 0.
    assert!(signal(up.child.id(), "-INT"), "SIGINT to mesh-cli up");
    let mut status = None;
    let exited = wait_until_async(Duration::from_secs(30), Duration::from_millis(50), || {
        status = up.child.try_wait().ok().flatten();
        status.is_some()
    })
    .await;
    assert!(
        exited,
        "mesh-cli up did not exit after SIGINT:\n{}",
        up.output()
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", up.output());
    let left: Vec<_> = pids.iter().filter(|(_, pid)| alive(*pid)).collect();
    assert!(left.is_empty(), "left behind: {left:?}\n{}", up.output());
    let output = up.output();
    assert!(output.contains("stopped edge"), "{output}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
