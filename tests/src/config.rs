//! A builder for `mesh-proxy` YAML configs (SPEC.md §3 "Configuration").
//! JSON is valid YAML, so the config is a `serde_json::Value` printed as JSON:
//! no YAML emitter to trust, and a typo'd key is still the proxy's job to
//! reject (unknown keys are errors), which the config checks rely on.

use serde_json::{Map, Value, json};

/// Builds a config. Key order in the output is not meaningful (YAML maps).
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    root: Map<String, Value>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigBuilder {
    /// Empty `listeners` and `clusters`; the admin API on an ephemeral
    /// loopback port, so parallel proxies never fight over 9901 (set a
    /// known one with [`ConfigBuilder::admin`]).
    pub fn new() -> Self {
        let mut root = Map::new();
        root.insert("admin".into(), json!({ "address": "127.0.0.1:0" }));
        root.insert("listeners".into(), json!([]));
        root.insert("clusters".into(), json!([]));
        Self { root }
    }

    /// An `http` listener on `127.0.0.1:PORT`.
    pub fn http_listener(self, name: &str, port: u16, routes: Vec<Value>) -> Self {
        self.http_listener_with(name, port, routes, json!({}))
    }

    /// An `http` listener plus extra keys (`tls`, `limits`, ...).
    pub fn http_listener_with(
        self,
        name: &str,
        port: u16,
        routes: Vec<Value>,
        extra: Value,
    ) -> Self {
        let listener = json!({
            "name": name,
            "address": format!("127.0.0.1:{port}"),
            "protocol": "http",
            "routes": routes,
        });
        self.push("listeners", merged(listener, extra))
    }

    /// A `tcp` listener on `127.0.0.1:PORT` forwarding to `cluster`.
    pub fn tcp_listener(self, name: &str, port: u16, cluster: &str) -> Self {
        self.tcp_listener_with(name, port, cluster, json!({}))
    }

    pub fn tcp_listener_with(self, name: &str, port: u16, cluster: &str, extra: Value) -> Self {
        let listener = json!({
            "name": name,
            "address": format!("127.0.0.1:{port}"),
            "protocol": "tcp",
            "cluster": cluster,
        });
        self.push("listeners", merged(listener, extra))
    }

    /// A static cluster; endpoints are anything printing as `host:port`
    /// (`SocketAddr`, `"svc:80"`).
    pub fn cluster<A: ToString>(self, name: &str, endpoints: &[A]) -> Self {
        self.cluster_with(name, endpoints, json!({}))
    }

    /// A cluster plus extra keys (`connect_timeout`, `circuit_breaker`, ...).
    pub fn cluster_with<A: ToString>(self, name: &str, endpoints: &[A], extra: Value) -> Self {
        let endpoints: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
        let cluster = json!({ "name": name, "endpoints": endpoints });
        self.push("clusters", merged(cluster, extra))
    }

    /// Top-level `limits:`.
    pub fn limits(self, limits: Value) -> Self {
        self.set("limits", limits)
    }

    /// `admin: { address: 127.0.0.1:PORT }`.
    pub fn admin(self, port: u16) -> Self {
        self.set("admin", json!({ "address": format!("127.0.0.1:{port}") }))
    }

    /// `node: { name: NAME }`.
    pub fn node(self, name: &str) -> Self {
        self.set("node", json!({ "name": name }))
    }

    /// Any top-level key (`identity`, `tracing`, `access_log`, or a wrong one
    /// on purpose), replacing an earlier value.
    pub fn set(mut self, key: &str, value: Value) -> Self {
        self.root.insert(key.to_owned(), value);
        self
    }

    pub fn build_value(&self) -> Value {
        Value::Object(self.root.clone())
    }

    /// The config text (JSON, which is YAML).
    pub fn build(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.root).unwrap_or_default();
        text.push('\n');
        text
    }

    fn push(mut self, key: &str, item: Value) -> Self {
        match self.root.get_mut(key) {
            Some(Value::Array(items)) => items.push(item),
            _ => {
                self.root.insert(key.to_owned(), json!([item]));
            }
        }
        self
    }
}

/// Shallow merge: `extra`'s keys are set on `base` (both objects).
fn merged(base: Value, extra: Value) -> Value {
    let mut base = base;
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            base = base.with(&k, v);
        }
    }
    base
}

/// `{ match: { prefix }, cluster }`.
pub fn route_prefix(prefix: &str, cluster: &str) -> Value {
    json!({ "match": { "prefix": prefix }, "cluster": cluster })
}

/// `{ match: { path }, cluster }` (exact path).
pub fn route_path(path: &str, cluster: &str) -> Value {
    json!({ "match": { "path": path }, "cluster": cluster })
}

/// `{ match: { path }, direct_response: { status, body } }`.
pub fn route_path_direct(path: &str, status: u16, body: &str) -> Value {
    json!({ "match": { "path": path }, "direct_response": { "status": status, "body": body } })
}

/// `{ match: { prefix }, direct_response: { status, body } }`.
pub fn route_prefix_direct(prefix: &str, status: u16, body: &str) -> Value {
    json!({ "match": { "prefix": prefix }, "direct_response": { "status": status, "body": body } })
}

/// The RELIABILITY.md test-profile limits that exist in the SPEC schema
/// (60 KiB / 100 header fields, 8 KiB target, 10 s header and body-idle
/// deadlines, 30 s stream idle, 60 s connection idle, 100 H2 streams, 32 KiB
/// buffer, 12,000 connections).
pub fn profile_limits() -> Value {
    json!({
        "max_request_headers_kb": 60,
        "max_request_headers_count": 100,
        "max_uri_kb": 8,
        "header_read_timeout": "10s",
        "body_idle_timeout": "10s",
        "stream_idle_timeout": "30s",
        "idle_timeout": "60s",
        "max_connections": 12000,
        "http2_max_concurrent_streams": 100,
        "buffer_kb": 32,
    })
}

/// Chainable edits on JSON objects: `route_prefix("/", "up").with("timeout", "2s")`.
pub trait JsonExt {
    /// Sets `key` on this object. Panics if `self` is not an object (a test bug).
    fn with(self, key: &str, value: impl Into<Value>) -> Value;
    /// Sets `key` inside this object's `match` object (created if missing).
    fn with_match(self, key: &str, value: impl Into<Value>) -> Value;
}

impl JsonExt for Value {
    fn with(mut self, key: &str, value: impl Into<Value>) -> Value {
        match &mut self {
            Value::Object(map) => {
                map.insert(key.to_owned(), value.into());
            }
            other => panic!("JsonExt::with({key:?}) on a non-object: {other}"),
        }
        self
    }

    fn with_match(mut self, key: &str, value: impl Into<Value>) -> Value {
        match &mut self {
            Value::Object(map) => {
                let matcher = map.remove("match").unwrap_or_else(|| json!({}));
                map.insert("match".to_owned(), matcher.with(key, value));
            }
            other => panic!("JsonExt::with_match({key:?}) on a non-object: {other}"),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_listeners_clusters_and_routes() {
        let text = ConfigBuilder::new()
            .http_listener(
                "main",
                8080,
                vec![
                    route_prefix("/fault/", "fault").with("timeout", "2s"),
                    route_path_direct("/healthz", 200, "ok\n")
                        .with_match("methods", json!(["GET"])),
                ],
            )
            .tcp_listener("tcp", 8081, "up")
            .cluster("up", &["127.0.0.1:1"])
            .cluster_with(
                "fault",
                &["127.0.0.1:2"],
                json!({ "connect_timeout": "1s" }),
            )
            .admin(9901)
            .build();
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["listeners"][0]["address"], "127.0.0.1:8080");
        assert_eq!(v["listeners"][0]["routes"][0]["timeout"], "2s");
        assert_eq!(v["listeners"][0]["routes"][0]["match"]["prefix"], "/fault/");
        assert_eq!(v["listeners"][0]["routes"][1]["match"]["path"], "/healthz");
        assert_eq!(v["listeners"][0]["routes"][1]["match"]["methods"][0], "GET");
        assert_eq!(
            v["listeners"][0]["routes"][1]["direct_response"]["body"],
            "ok\n"
        );
        assert_eq!(v["listeners"][1]["protocol"], "tcp");
        assert_eq!(v["listeners"][1]["cluster"], "up");
        assert_eq!(v["clusters"][1]["connect_timeout"], "1s");
        assert_eq!(v["clusters"][1]["endpoints"][0], "127.0.0.1:2");
        assert_eq!(v["admin"]["address"], "127.0.0.1:9901");
    }
}
