//! What `mesh-cli up` shows on the terminal: a spinner per component while
//! they start (plain lines when stdout is not a terminal), the banner with
//! the URLs to try once the mesh is up, and then the trace waterfalls as the
//! receiver appends them to its file.

use std::cell::Cell;
use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::children::Running;
use super::manifest::{self, Manifest};
use super::start::Started;

pub(super) fn print_banner(manifest: &Manifest, s: &Started, state: &Path, running: &[Running]) {
    let mut out = String::from("\nThe mesh is up. Try:\n");
    for url in &manifest.try_urls {
        match manifest::render(url, &s.values) {
            Ok(u) => out.push_str(&format!("  curl '{u}'\n")),
            Err(e) => out.push_str(&format!("  ({url}: {e})\n")),
        }
    }
    out.push_str("\nDashboards (admin API of each proxy):\n");
    let width = s.admins.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, admin) in &s.admins {
        out.push_str(&format!("  {name:width$}  http://{admin}/\n"));
    }
    let admins: Vec<String> = s
        .admins
        .iter()
        .map(|(_, a)| format!("--admin {a}"))
        .collect();
    out.push_str(&format!(
        "  golden metrics: mesh-cli stat {} --watch\n",
        admins.join(" ")
    ));
    out.push_str(&format!("\nTraces: {}\n", s.traces_where));
    out.push_str(&format!(
        "Logs: {}/NAME.log ({}); PIDs in {}\n",
        state.join("logs").display(),
        running
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        state.join("pids").display()
    ));
    out.push_str("Ctrl-C stops everything.\n");
    print!("{out}");
    let _ = std::io::stdout().flush();
}

/// Prints what was appended to the waterfall file since the last call.
pub(super) struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    pub(super) fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_path_buf(),
            offset: 0,
        }
    }

    pub(super) fn print_new(&mut self) {
        let Ok(mut f) = File::open(&self.path) else {
            return;
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_ok() && f.read_to_end(&mut buf).is_ok() {
            // Only whole lines; the rest waits for the next call.
            let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if whole > 0 {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&buf[..whole]);
                let _ = out.flush();
                self.offset += whole as u64;
            }
        }
    }
}

/// Spinners on a terminal, plain lines otherwise.
pub(super) struct Ui {
    multi: Option<MultiProgress>,
    /// Startup is over: plain lines from now on (the finished spinners stay
    /// on screen and are not redrawn).
    settled: Cell<bool>,
}

pub(super) struct Step {
    bar: Option<ProgressBar>,
    name: String,
}

impl Ui {
    pub(super) fn new() -> Ui {
        let multi = std::io::stdout()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Ui {
            multi,
            settled: Cell::new(false),
        }
    }

    pub(super) fn step(&self, name: &str, what: &str) -> Step {
        let Some(multi) = &self.multi else {
            println!("{name:<12} {what}...");
            return Step {
                bar: None,
                name: name.to_owned(),
            };
        };
        let bar = multi.add(ProgressBar::new_spinner());
        let style =
            ProgressStyle::with_template("{spinner:.cyan} {prefix:<12.bold} {msg} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_prefix(name.to_owned());
        bar.set_message(format!("{what}..."));
        bar.enable_steady_tick(Duration::from_millis(100));
        Step {
            bar: Some(bar),
            name: name.to_owned(),
        }
    }

    pub(super) fn settle(&self) {
        self.settled.set(true);
    }

    pub(super) fn line(&self, text: &str) {
        match &self.multi {
            Some(m) if !self.settled.get() => {
                let _ = m.println(text);
            }
            _ => println!("{text}"),
        }
    }
}

impl Step {
    fn finish(&self, mark: &str, text: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix:<12.bold} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{mark} {}", self.name));
                bar.finish_with_message(text.to_owned());
            }
            None => println!("{:<12} {mark} {text}", self.name),
        }
    }

    pub(super) fn done(&self, text: &str) {
        self.finish("✓", text);
    }

    pub(super) fn fail(&self, err: &anyhow::Error) {
        self.finish("✗", &crate::render(err));
    }
}
