//! `/config_dump`: the effective (validated, defaulted) config as JSON,
//! serialized from the validated model itself, so a new config key appears
//! here without code of its own. Secrets are redacted by the model's
//! serializers (`config/ser.rs`): key, token and certificate files by path
//! only, credential headers and URL passwords replaced.

use serde_json::Value;

use crate::config::Config;

pub(super) fn dump(config: &Config) -> Value {
    // The model holds strings, numbers, lists and maps with string keys:
    // serializing it into a `Value` cannot fail.
    serde_json::to_value(config).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
node: { name: dump }
identity:
  ca:
    url: https://user:hunter2@ca.mesh:8443
    trust_bundle: ca.crt
    token_file: token
    spiffe_id: spiffe://mesh.local/dump
tracing: { otlp_endpoint: "http://u:pw@jaeger:4318", protocol: http }
access_log: [ { path: stdout, format: "%ROUTE_NAME% %RESPONSE_CODE%" } ]
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: api
        match: { prefix: /api/, headers: { authorization: "Bearer s3cret" } }
        cluster: app
        timeout: 0s
        request_headers: { add: { x-api-key: k3y, x-env: prod }, remove: [x-debug] }
        retry: { attempts: 2, on: [5xx, reset] }
        rate_limit: { requests_per_second: 5 }
      - match: { regex: "/v[0-9]+/.*" }
        direct_response: { status: 204 }
  - name: pg
    address: 127.0.0.1:0
    protocol: tcp
    cluster: app
clusters:
  - name: app
    endpoints: ["[::1]:8080", app.internal:80]
    discovery: dns
    dns_refresh: 3s
"#;

    /// The dump of `YAML`, its text, and the folder of its files.
    fn dumped() -> (Value, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.crt"), "-----BEGIN CERTIFICATE-----").expect("ca");
        std::fs::write(dir.path().join("token"), "t0ken-material").expect("token");
        let config = crate::config::load_str(YAML, "dump.yaml", dir.path()).expect("valid");
        let v = dump(&config);
        let text = v.to_string();
        (v, text, dir)
    }

    #[test]
    fn routes_show_their_name_match_action_and_defaults() {
        let (v, _, _dir) = dumped();
        let edge = &v["listeners"][0];
        assert_eq!(edge["protocol"], "http");
        let api = &edge["routes"][0];
        assert_eq!(api["name"], "api");
        assert_eq!(api["match"]["prefix"], "/api/");
        assert_eq!(api["cluster"], "app");
        assert_eq!(api["timeout"], "0s");
        assert_eq!(api["retry"]["on"], serde_json::json!(["reset", "5xx"]));
        assert_eq!(api["retry"]["backoff"]["base"], "25ms");
        assert_eq!(api["request_headers"]["remove"][0], "x-debug");
        assert_eq!(
            api["rate_limit"]["burst"], 5,
            "policies flatten into the route"
        );
        let unnamed = &edge["routes"][1];
        assert_eq!(unnamed["name"], "edge/1");
        assert_eq!(unnamed["match"]["regex"], "/v[0-9]+/.*");
        assert_eq!(unnamed["direct_response"]["status"], 204);
        assert_eq!(unnamed["timeout"], "15s");
        assert!(unnamed.get("rate_limit").is_none(), "{unnamed}");
        assert_eq!(v["listeners"][1]["protocol"], "tcp");
        assert_eq!(v["listeners"][1]["cluster"], "app");
        assert_eq!(
            v["listeners"][0]["limits"]["headers_with_underscores"],
            "drop"
        );
        let app = &v["clusters"][0];
        assert_eq!(
            app["endpoints"],
            serde_json::json!(["[::1]:8080", "app.internal:80"])
        );
        assert_eq!(
            (&app["discovery"], &app["dns_refresh"]),
            (&"dns".into(), &"3s".into())
        );
        assert_eq!(app["lb"], "round_robin");
        assert_eq!(v["access_log"][0]["format"], "%ROUTE_NAME% %RESPONSE_CODE%");
    }

    #[test]
    fn secrets_are_redacted() {
        let (v, text, dir) = dumped();
        let secrets = ["hunter2", "Bearer s3cret", "k3y", "u:pw", "t0ken", "BEGIN"];
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let api = &v["listeners"][0]["routes"][0];
        assert_eq!(api["match"]["headers"]["authorization"], "[redacted]");
        assert_eq!(api["request_headers"]["add"]["x-api-key"], "[redacted]");
        assert_eq!(api["request_headers"]["add"]["x-env"], "prod");
        let ca = &v["identity"]["ca"];
        assert_eq!(ca["url"], "https://[redacted]@ca.mesh:8443/");
        let token = dir.path().join("token");
        assert_eq!(ca["token_file"], token.display().to_string());
        assert_eq!(ca["ttl"], "1day");
        assert_eq!(
            v["tracing"]["otlp_endpoint"],
            "http://[redacted]@jaeger:4318"
        );
    }

    #[test]
    fn identity_files_are_shown_by_path() {
        let files = crate::config::IdentitySpec::Files {
            cert: "/c/orders.crt".into(),
            key: "/c/orders.key".into(),
            trust_bundle: "/c/ca.crt".into(),
        };
        assert_eq!(
            serde_json::to_value(&files).expect("json"),
            serde_json::json!({ "cert": "/c/orders.crt", "key": "/c/orders.key", "trust_bundle": "/c/ca.crt" })
        );
    }

    #[test]
    fn a_route_fault_is_dumped_with_credential_headers_redacted() {
        let yaml = "listeners:\n  - name: web\n    address: 127.0.0.1:8000\n    routes:\n      - cluster: app\n        fault: { delay: { fixed: 250ms, percent: 10 }, abort: { status: 503 }, from: [spiffe://mesh.local/web], headers: { authorization: secret, x-chaos: on } }\nclusters:\n  - { name: app, endpoints: [127.0.0.1:9000] }\n";
        let config =
            crate::config::load_str(yaml, "proxy.yaml", std::path::Path::new("/nonexistent"))
                .expect("valid");
        let route = &dump(&config)["listeners"][0]["routes"][0];
        let fault = &route["fault"];
        assert_eq!(
            fault["delay"],
            serde_json::json!({ "fixed": "250ms", "percent": 10.0 })
        );
        assert_eq!(
            fault["abort"],
            serde_json::json!({ "status": 503, "percent": 100.0 })
        );
        assert_eq!(
            fault["from"],
            serde_json::json!(["spiffe://mesh.local/web"])
        );
        assert_eq!(fault["headers"]["authorization"], "[redacted]");
        assert_eq!(fault["headers"]["x-chaos"], "on");
        let dumped = dump(&config).to_string();
        assert!(!dumped.contains("secret"), "{dumped}");
    }
}
