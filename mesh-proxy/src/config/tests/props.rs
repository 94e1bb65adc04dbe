//! Property tests of the config parser and validator, and the replay of the
//! seed corpus in `fuzz/corpus/config/`: whatever the input, loading returns
//! (never panics), and every error names a key path or a line:column.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

/// Loads `text` and checks the invariants; `Ok` when it validated.
fn check(text: &str) -> Result<Config, Vec<ConfigError>> {
    let result = load(text).map_err(|e| e.errors);
    if let Err(errors) = &result {
        assert!(
            !errors.is_empty(),
            "an error result without errors: {text:?}"
        );
        for e in errors {
            assert!(
                !e.path.is_empty() || e.line_col.is_some(),
                "error without key path or line:column: {e:?}\n--- input:\n{text}"
            );
            assert!(!e.message.is_empty(), "empty message: {e:?}");
        }
    }
    result
}

/// Keys of the real schema (and near misses), so generated documents reach
/// deep into validation rather than stopping at the first unknown key.
const KEYS: &[&str] = &[
    "listeners",
    "clusters",
    "limits",
    "admin",
    "identity",
    "node",
    "tracing",
    "access_log",
    "name",
    "address",
    "protocol",
    "tls",
    "mode",
    "allow",
    "peer",
    "trust",
    "sni",
    "routes",
    "match",
    "prefix",
    "path",
    "regex",
    "host",
    "headers",
    "methods",
    "cluster",
    "weighted",
    "weight",
    "timeout",
    "retry",
    "attempts",
    "on",
    "endpoints",
    "discovery",
    "cert",
    "key",
    "trust_bundle",
    "direct_response",
    "status",
    "body",
    "rewrite_prefix",
    "idle_timeout",
    "max_connections",
    "trust_forwarded",
    "circuit_breaker",
    "health_check",
    "allw",
    "",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "127.0.0.1:8000",
            "0.0.0.0:0",
            "[::1]:1",
            "web",
            "mutual",
            "server",
            "tcp",
            "http",
            "/",
            "/api/..;/admin",
            "spiffe://mesh.local/**",
            "spiffe://mesh.local/*/x",
            "spiffe://mesh.local/**/x",
            "spiffe://Mesh/x",
            "15s",
            "0",
            "-1s",
            "1e400",
            "é",
            "*",
            "*.example.com",
            "system",
            "dns",
            "GET",
            "x-a",
        ])
        .prop_map(|s| json!(s)),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A config that must validate: plaintext HTTP listeners (no identity
/// files here) on distinct ports routing prefixes to clusters that exist,
/// and maybe a TCP listener.
fn valid_config() -> impl Strategy<Value = Value> {
    let route = (
        prop::sample::select(vec!["/", "/api", "/a/b", "/x-y_z"]),
        0..3usize,
    );
    let listener = prop::collection::vec(route, 1..4);
    (prop::collection::vec(listener, 1..4), 1..4usize, any::<bool>()).prop_map(
        |(listeners, n_clusters, tcp_last)| {
            let clusters: Vec<Value> = (0..n_clusters)
                .map(|c| json!({"name": format!("c{c}"), "endpoints": [format!("127.0.0.1:{}", 9000 + c)]}))
                .collect();
            let mut out: Vec<Value> = listeners
                .iter()
                .enumerate()
                .map(|(i, routes)| {
                    let routes: Vec<Value> = routes
                        .iter()
                        .map(|(p, c)| json!({"match": {"prefix": p}, "cluster": format!("c{}", c % n_clusters)}))
                        .collect();
                    json!({"name": format!("l{i}"), "address": format!("127.0.0.1:{}", 8000 + i), "routes": routes})
                })
                .collect();
            if tcp_last {
                out.push(json!({"name": "raw", "address": "127.0.0.1:7999", "protocol": "tcp", "cluster": "c0"}));
            }
            json!({"listeners": out, "clusters": clusters})
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic_and_every_error_is_located(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yaml_shaped_documents_never_panic_and_every_error_is_located(doc in document()) {
        let text = serde_yaml::to_string(&doc).expect("yaml");
        let _ = check(&text);
        // The same document as one line of flow YAML (JSON is YAML).
        let _ = check(&doc.to_string());
    }

    #[test]
    fn a_generated_valid_config_validates(doc in valid_config()) {
        let text = serde_yaml::to_string(&doc).expect("yaml");
        let config = check(&text).map_err(|e| format!("{e:?}\n{text}"));
        prop_assert!(config.is_ok(), "{:?}", config.err());
    }
}

/// Every seed of `fuzz/corpus/config/` goes through the loader (bytes
/// decoded lossily, as `arbitrary_bytes_...` does) under the same checks.
#[test]
fn fuzz_corpus_replays_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config");
    let (mut seen, mut valid) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("seed");
        let started = std::time::Instant::now();
        valid += usize::from(check(&String::from_utf8_lossy(&data)).is_ok());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{} took {:?}",
            path.display(),
            started.elapsed()
        );
        seen += 1;
    }
    assert!(seen >= 20, "corpus has only {seen} seeds");
    assert!(valid >= 2, "the valid seeds must validate ({valid})");
}
