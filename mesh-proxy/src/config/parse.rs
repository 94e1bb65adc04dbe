//! YAML text → raw types, collecting unknown keys instead of stopping at them.
//!
//! The deserializer stack is `serde_path_to_error` (names the key path of a
//! fatal type error) over `serde_ignored` (reports every key no struct
//! consumed) over `serde_yaml` (syntax errors and line:column).

use serde::Deserialize;

use super::error::ConfigError;
use super::introspect::fields_at;
use super::raw::ProxyConfig;
use super::suggest::did_you_mean;

/// What parsing produced: the raw config unless a syntax or type error
/// stopped it, and every problem found on the way.
pub(crate) struct Parsed {
    pub raw: Option<ProxyConfig>,
    pub errors: Vec<ConfigError>,
}

pub(crate) fn parse(text: &str) -> Parsed {
    // A first untyped pass tells syntax errors (no key path) from type errors.
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Err(error) => {
            return Parsed {
                raw: None,
                errors: vec![syntax_error(text, &error)],
            };
        }
        // An empty file is an empty config: every key is optional.
        Ok(serde_yaml::Value::Null) => {
            return Parsed {
                raw: Some(ProxyConfig::default()),
                errors: Vec::new(),
            };
        }
        Ok(_) => {}
    }
    let mut ignored: Vec<Vec<Segment>> = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let mut on_ignored = |path: serde_ignored::Path<'_>| ignored.push(segments(&path));
    let result = {
        let yaml = serde_yaml::Deserializer::from_str(text);
        let de = serde_ignored::Deserializer::new(yaml, &mut on_ignored);
        ProxyConfig::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    };
    let mut errors: Vec<ConfigError> = ignored.iter().map(|path| unknown_key(text, path)).collect();
    let raw = match result {
        Ok(raw) => Some(raw),
        Err(error) => {
            errors.push(type_error(&track.path().to_string(), &error));
            None
        }
    };
    Parsed { raw, errors }
}

/// serde_yaml's location, and its message without the ` at line L column C`
/// that repeats it.
fn split_location(error: &serde_yaml::Error) -> (Option<(usize, usize)>, String) {
    let line_col = error.location().map(|l| (l.line(), l.column()));
    let mut message = error.to_string();
    if let Some((line, col)) = line_col {
        message = message.replacen(&format!(" at line {line} column {col}"), "", 1);
    }
    (line_col, message)
}

fn syntax_error(text: &str, error: &serde_yaml::Error) -> ConfigError {
    let (mut line_col, message) = split_location(error);
    // Duplicate keys come as `node: duplicate entry with key "name"`.
    let (path, message) = match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') && !path.contains('?') => (path, rest),
        _ => ("", message.as_str()),
    };
    let message = if message.contains("more than one document") {
        // serde_yaml gives no location for this one.
        line_col = line_col.or_else(|| Some(second_document(text)));
        "the file holds more than one yaml document (---); a config is one document"
    } else if message.contains("repetition limit exceeded") {
        // Aliases expanding into a huge tree (the "billion laughs"): no
        // location from serde_yaml either; point at the first alias.
        line_col = line_col.or_else(|| Some(first_alias(text)));
        "aliases (*name) expand to too many values (repetition limit exceeded)"
    } else {
        message
    };
    ConfigError::new(path, format!("invalid yaml: {message}")).with_line_col(line_col)
}

/// Where the second YAML document starts: the first `---` or `...` line
/// after some content (line 1 when none is found).
fn second_document(text: &str) -> (usize, usize) {
    let mut in_document = false;
    for (i, line) in text.lines().enumerate() {
        let marker = line.starts_with("---") || line.starts_with("...");
        if marker && in_document {
            return (i + 1, 1);
        }
        let code = line.trim();
        in_document |=
            marker || !(code.is_empty() || code.starts_with('#') || code.starts_with('%'));
    }
    (1, 1)
}

/// Where the first alias (`*name` after a space, `[`, `,` or `:`) is.
fn first_alias(text: &str) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let at = bytes.windows(3).position(|w| {
            matches!(w[0], b' ' | b'[' | b',' | b':')
                && w[1] == b'*'
                && w[2].is_ascii_alphanumeric()
        });
        if let Some(at) = at {
            return (i + 1, line[..at + 1].chars().count() + 1);
        }
    }
    (1, 1)
}

/// A value of the wrong YAML type: serde_yaml knows where, serde_path_to_error which key.
fn type_error(path: &str, error: &serde_yaml::Error) -> ConfigError {
    let (line_col, mut message) = split_location(error);
    // serde_yaml prefixes its own rendering of the path; ours is in `path`.
    if let Some((prefix, rest)) = message.split_once(": ")
        && !prefix.contains(' ')
    {
        message = rest.to_owned();
    }
    let path = if path == "." { "" } else { path };
    ConfigError::new(path, plain_words(&message)).with_line_col(line_col)
}

/// serde's wording in the user's terms: no Rust type names.
fn plain_words(message: &str) -> String {
    let mut out = message.to_owned();
    if let Some(start) = out.find("expected struct ") {
        out.replace_range(start.., "expected a mapping");
    }
    for (rust, yaml) in [
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected f64", "expected a number"),
    ] {
        if let Some(stripped) = out.strip_suffix(rust) {
            out = format!("{stripped}{yaml}");
        }
    }
    if let Some(field) = out
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        out = format!("duplicate key \"{field}\"");
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    };
    match path {
        Path::Seq { index, .. } => out.push(Segment::Index(*index)),
        Path::Map { key, .. } => out.push(Segment::Key(key.clone())),
        _ => {}
    }
    out
}

/// `listeners[0].routes[1]`, or with `wildcard` `listeners[*].routes[*]`.
fn render(segments: &[Segment], wildcard: bool) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                // An empty key still shows in the path.
                out.push_str(if key.is_empty() { "\"\"" } else { key });
            }
            Segment::Index(_) if wildcard => out.push_str("[*]"),
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

fn unknown_key(text: &str, path: &[Segment]) -> ConfigError {
    let rendered = render(path, false);
    let Some((Segment::Key(key), parent)) = path.split_last() else {
        return ConfigError::new(rendered, "unexpected value");
    };
    let known = fields_at(&render(parent, true)).unwrap_or(&[]);
    let hint = did_you_mean(key, known.iter().copied());
    ConfigError::new(rendered, format!("unknown key \"{key}\"{hint}"))
        .with_line_col(locate_key(text, key))
}

/// Line and column (1-based) of `key:` when it occurs exactly once in the
/// text as a mapping key; a cheap hint, absent when ambiguous.
fn locate_key(text: &str, key: &str) -> Option<(usize, usize)> {
    let mut found = None;
    for (line_no, line) in text.lines().enumerate() {
        let code = line.split(" #").next().unwrap_or(line);
        for (col, _) in code.match_indices(key) {
            let before = code[..col].chars().next_back();
            let after = code[col + key.len()..].trim_start_matches([' ', '"', '\'']);
            let starts_key = before.is_none_or(|c| matches!(c, ' ' | '{' | ',' | '"' | '\''));
            let ends_key =
                after.starts_with(':') && after[1..].chars().next().is_none_or(char::is_whitespace);
            if starts_key && ends_key {
                if found.is_some() {
                    return None;
                }
                found = Some((line_no + 1, code[..col].chars().count() + 1));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_paths_with_indexes_or_wildcards() {
        let path = vec![
            Segment::Key("listeners".into()),
            Segment::Index(1),
            Segment::Key("routes".into()),
            Segment::Index(0),
            Segment::Key("timout".into()),
        ];
        assert_eq!(render(&path, false), "listeners[1].routes[0].timout");
        assert_eq!(render(&path, true), "listeners[*].routes[*].timout");
        assert_eq!(render(&[], true), "");
    }

    #[test]
    fn locates_a_unique_key() {
        let text = "listeners:\n  - name: a\n    timout: 2s\n";
        assert_eq!(locate_key(text, "timout"), Some((3, 5)));
        let flow = "node: { nmae: x }\n";
        assert_eq!(locate_key(flow, "nmae"), Some((1, 9)));
    }

    #[test]
    fn does_not_locate_ambiguous_or_value_occurrences() {
        assert_eq!(locate_key("a:\n  x: 1\nb:\n  x: 2\n", "x"), None);
        assert_eq!(locate_key("name: timout\n", "timout"), None);
        assert_eq!(locate_key("timouts: 1\n", "timout"), None);
        assert_eq!(locate_key("url: http://timout:80\n", "timout"), None);
    }
}
