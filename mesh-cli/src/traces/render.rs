//! A finished trace as an indented waterfall, or as one line of JSON.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde_json::Value;

use super::model::{Span, Trace};

/// Width of the duration bar, in characters.
pub const BAR: usize = 40;
/// Labels (indent, service, name) longer than this are cut.
const MAX_LABEL: usize = 64;

/// Orders spans as printed: roots (spans without a parent, or whose parent
/// never arrived) by start time, each followed depth-first by its children
/// by start time. Returns `(depth, span)`.
pub fn tree_order(mut spans: Vec<Span>) -> Vec<(usize, Span)> {
    spans.sort_by(|a, b| {
        (a.start_unix_nano, a.end_unix_nano, &a.name, &a.span_id).cmp(&(
            b.start_unix_nano,
            b.end_unix_nano,
            &b.name,
            &b.span_id,
        ))
    });
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match s.parent_span_id.as_deref() {
            Some(p) if ids.contains(p) && p != s.span_id => children.entry(p).or_default().push(i),
            _ => roots.push(i),
        }
    }
    let mut order = Vec::with_capacity(spans.len());
    let mut seen = vec![false; spans.len()];
    // Spans caught in a parent cycle are reached from no root: they start
    // trees of their own.
    let starts: Vec<usize> = roots.into_iter().chain(0..spans.len()).collect();
    for start in starts {
        let mut stack = vec![(start, 0)];
        while let Some((i, depth)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            order.push((depth, i));
            if let Some(kids) = children.get(spans[i].span_id.as_str()) {
                stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
            }
        }
    }
    let mut slots: Vec<Option<Span>> = spans.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(depth, i)| slots[i].take().map(|s| (depth, s)))
        .collect()
}

/// `850µs`, `12.3ms`, `1.20s`.
pub fn duration(nanos: u64) -> String {
    let ns = nanos as f64;
    if ns < 1_000.0 {
        format!("{nanos}ns")
    } else if ns < 1_000_000.0 {
        format!("{:.0}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

/// The bar of a span inside `[t0, t0 + total]`: leading spaces for its
/// offset, `█` for its duration (at least one), spaces to the width.
pub fn bar(start: u64, end: u64, t0: u64, total: u64) -> String {
    let total = total.max(1) as f64;
    let scale = |ns: u64| ns as f64 / total * BAR as f64;
    let offset = (scale(start.saturating_sub(t0)).floor() as usize).min(BAR - 1);
    let len = (scale(end.saturating_sub(start)).round() as usize).clamp(1, BAR - offset);
    format!(
        "{}{}{}",
        " ".repeat(offset),
        "█".repeat(len),
        " ".repeat(BAR - offset - len)
    )
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `OK 200`, `ERROR 503 upstream reset`, `OK`.
pub fn status(span: &Span) -> String {
    let mut out = if span.status.code == "ERROR" {
        "ERROR".to_owned()
    } else {
        "OK".to_owned()
    };
    if let Some(code) = span.http_status() {
        out.push(' ');
        out.push_str(&plain(code));
    }
    if span.status.code == "ERROR" && !span.status.message.is_empty() {
        out.push(' ');
        out.push_str(&span.status.message);
    }
    out
}

fn cut(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL {
        return label.to_owned();
    }
    let mut s: String = label.chars().take(MAX_LABEL - 1).collect();
    s.push('…');
    s
}

/// The text form: a header line, then one line per span:
/// `<2×depth spaces><service> <name>  <KIND>  <duration>  |<bar>|  <status>`,
/// with `-v` the span's attributes and events under it, and a blank line.
pub fn waterfall(trace: &Trace, verbose: bool) -> String {
    let t0 = trace
        .spans
        .iter()
        .map(|s| s.start_unix_nano)
        .min()
        .unwrap_or(0);
    let t1 = trace
        .spans
        .iter()
        .map(|s| s.end_unix_nano)
        .max()
        .unwrap_or(t0);
    let total = t1.saturating_sub(t0);
    let depths = depths(trace);
    let labels: Vec<String> = trace
        .spans
        .iter()
        .zip(&depths)
        .map(|(s, d)| cut(&format!("{}{} {}", "  ".repeat(*d), s.service, s.name)))
        .collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let mut out = format!(
        "trace {} ({} span{}, {})\n",
        trace.trace_id,
        trace.spans.len(),
        if trace.spans.len() == 1 { "" } else { "s" },
        duration(total)
    );
    for ((span, label), depth) in trace.spans.iter().zip(&labels).zip(&depths) {
        let pad = width - label.chars().count();
        let _ = writeln!(
            out,
            "{label}{}  {:<11}  {:>8}  |{}|  {}",
            " ".repeat(pad),
            span.kind,
            duration(span.duration_nanos()),
            bar(span.start_unix_nano, span.end_unix_nano, t0, total),
            status(span)
        );
        if verbose {
            let indent = "  ".repeat(depth + 2);
            for (k, v) in &span.attributes {
                let _ = writeln!(out, "{indent}{k}={}", plain(v));
            }
            for e in &span.events {
                let at = duration(e.time_unix_nano.saturating_sub(span.start_unix_nano));
                let attrs: Vec<String> = e
                    .attributes
                    .iter()
                    .map(|(k, v)| format!(" {k}={}", plain(v)))
                    .collect();
                let _ = writeln!(out, "{indent}event +{at} {}{}", e.name, attrs.concat());
            }
        }
    }
    out.push('\n');
    out
}

/// Depth of each span of a trace already in tree order.
fn depths(trace: &Trace) -> Vec<usize> {
    let mut depth_of: HashMap<&str, usize> = HashMap::new();
    trace
        .spans
        .iter()
        .map(|s| {
            let d = s
                .parent_span_id
                .as_deref()
                .and_then(|p| depth_of.get(p))
                .map_or(0, |d| d + 1);
            depth_of.insert(&s.span_id, d);
            d
        })
        .collect()
}

/// The `--json` form: one line.
pub fn json_line(trace: &Trace) -> String {
    serde_json::to_string(trace).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::model::Status;
    use std::collections::BTreeMap;

    fn span(id: &str, parent: Option<&str>, start: u64, end: u64) -> Span {
        Span {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            name: format!("op-{id}"),
            service: "svc".into(),
            kind: "SERVER",
            start_unix_nano: start,
            end_unix_nano: end,
            attributes: BTreeMap::new(),
            status: Status {
                code: "UNSET",
                message: String::new(),
            },
            events: Vec::new(),
        }
    }

    #[test]
    fn spans_are_ordered_as_a_tree() {
        let spans = vec![
            span("c2", Some("r"), 30, 40),
            span("g", Some("c1"), 12, 15),
            span("r", None, 0, 100),
            span("c1", Some("r"), 10, 20),
            span("orphan", Some("missing"), 5, 6),
            span("x", Some("y"), 50, 51),
            span("y", Some("x"), 52, 53),
        ];
        let order: Vec<(usize, String)> = tree_order(spans)
            .into_iter()
            .map(|(d, s)| (d, s.span_id))
            .collect();
        let want = [
            (0, "r"),
            (1, "c1"),
            (2, "g"),
            (1, "c2"),
            (0, "orphan"),
            (0, "x"),
            (1, "y"),
        ];
        let want: Vec<(usize, String)> = want.iter().map(|(d, s)| (*d, (*s).to_owned())).collect();
        assert_eq!(order, want);
    }

    #[test]
    fn bars_show_offset_and_length() {
        let b = bar(0, 100, 0, 100);
        assert_eq!(b, "█".repeat(BAR));
        let b = bar(50, 75, 0, 100);
        assert_eq!(
            b,
            format!("{}{}{}", " ".repeat(20), "█".repeat(10), " ".repeat(10))
        );
        let b = bar(100, 100, 0, 100);
        assert_eq!(b, format!("{}█", " ".repeat(BAR - 1)));
        assert_eq!(duration(1_500), "2µs");
        assert_eq!(duration(12_345_678), "12.3ms");
        assert_eq!(duration(2_000_000_000), "2.00s");
    }

    #[test]
    fn the_waterfall_indents_children() {
        let mut root = span("r", None, 0, 100);
        root.attributes
            .insert("http.response.status_code".into(), Value::from(200));
        let mut child = span("c", Some("r"), 10, 60);
        child.status.code = "ERROR";
        child.status.message = "boom".into();
        let trace = Trace {
            trace_id: "abc".into(),
            spans: tree_order(vec![child, root])
                .into_iter()
                .map(|(_, s)| s)
                .collect(),
        };
        let text = waterfall(&trace, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "trace abc (2 spans, 100ns)");
        assert!(lines[1].starts_with("svc op-r  "), "{text}");
        assert!(lines[1].ends_with("|  OK 200"), "{text}");
        assert_eq!(lines[2], "    http.response.status_code=200");
        assert!(lines[3].starts_with("  svc op-c"), "{text}");
        assert!(lines[3].ends_with("|  ERROR boom"), "{text}");
    }
}
