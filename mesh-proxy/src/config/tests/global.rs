//! Top-level sections: node, admin, identity, tracing, access_log; defaults.

use std::time::Duration;

use super::super::model::*;
use super::*;

fn load_in_dir(yaml: &str, dir: &Path) -> Result<Config, ConfigErrors> {
    load_in(yaml, dir, &Env::default())
}

#[test]
fn node_and_admin_default_when_omitted() {
    let config = load_ok(&with_route("{cluster: app}"));
    assert_eq!(config.node.name, "mesh-proxy");
    assert_eq!(config.node.service, "mesh-proxy");
    assert_eq!(config.admin.address, "127.0.0.1:9901".parse().unwrap());
    assert!(config.identity.is_none());
    assert!(config.tracing.is_none());
    assert!(config.access_log.is_empty());
    assert_eq!(config.base_dir, Path::new(NO_DIR));
}

#[test]
fn node_service_defaults_to_the_name() {
    let config = load_ok(&with_top("node: {name: orders-sidecar}"));
    assert_eq!(config.node.service, "orders-sidecar");
}

#[test]
fn admin_address_is_checked() {
    assert_error(
        &with_top("admin: {address: \"*:9901\"}"),
        "admin.address",
        "invalid address \"*:9901\"",
    );
    let config = load_ok(&with_top("admin: {address: localhost:9902}"));
    assert_eq!(config.admin.address, "127.0.0.1:9902".parse().unwrap());
}

#[test]
fn identity_files_must_exist_and_name_the_os_reason() {
    let dir = super::example::cert_dir();
    let yaml = with_top(
        "identity: {cert: certs/orders.crt, key: certs/missing.key, trust_bundle: certs/ca.crt}",
    );
    let errors = load_in_dir(&yaml, dir.path()).unwrap_err().errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "identity.key");
    let missing = dir.path().join("certs/missing.key");
    assert!(errors[0].message.starts_with(&format!(
        "cannot read \"certs/missing.key\" ({})",
        missing.display()
    )));
    assert!(
        errors[0].message.contains("No such file or directory"),
        "{}",
        errors[0].message
    );
}

#[test]
fn identity_file_must_not_be_a_directory() {
    let dir = super::example::cert_dir();
    let yaml =
        with_top("identity: {cert: certs, key: certs/orders.key, trust_bundle: certs/ca.crt}");
    let errors = load_in_dir(&yaml, dir.path()).unwrap_err().errors;
    assert_error_in(&errors, "identity.cert", "it is a directory");
}

#[test]
fn identity_files_must_all_be_given() {
    let dir = super::example::cert_dir();
    let yaml = with_top("identity: {cert: certs/orders.crt}");
    let errors = load_in_dir(&yaml, dir.path()).unwrap_err().errors;
    assert_error_in(&errors, "identity.key", "required key is missing");
    assert_error_in(&errors, "identity.trust_bundle", "required key is missing");
}

#[test]
fn identity_is_files_or_ca_not_both_nor_neither() {
    assert_error(
        &with_top("identity: {cert: a, key: b, trust_bundle: c, ca: {url: \"https://ca:8443\"}}"),
        "identity",
        "give either cert, key and trust_bundle, or ca, not both",
    );
    assert_error(
        &with_top("identity: {}"),
        "identity",
        "give either cert, key and trust_bundle, or ca",
    );
}

fn ca_dir() -> tempfile::TempDir {
    let dir = super::example::cert_dir();
    std::fs::write(dir.path().join("orders.token"), "token\n").unwrap();
    dir
}

#[test]
fn identity_ca_is_validated_and_ttl_defaults_to_24h() {
    let dir = ca_dir();
    let yaml = with_top(
        "identity: {ca: {url: \"https://ca:8443\", trust_bundle: certs/ca.crt, \
         token_file: orders.token, spiffe_id: \"spiffe://mesh.local/orders\"}}",
    );
    let config = load_in_dir(&yaml, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let Some(IdentitySpec::Ca {
        url,
        trust_bundle,
        token_file,
        spiffe_id,
        ttl,
    }) = config.identity
    else {
        panic!("ca identity expected");
    };
    assert_eq!(url, "https://ca:8443/");
    assert_eq!(trust_bundle, dir.path().join("certs/ca.crt"));
    assert_eq!(token_file, dir.path().join("orders.token"));
    assert_eq!(spiffe_id, "spiffe://mesh.local/orders");
    assert_eq!(ttl, Duration::from_secs(24 * 3600));
}

#[test]
fn identity_ca_reports_each_bad_key() {
    let dir = ca_dir();
    let yaml = with_top(
        "identity: {ca: {url: \"http://ca:8443\", trust_bundle: certs/nope.crt, \
         spiffe_id: orders, ttl: a day}}",
    );
    let errors = load_in_dir(&yaml, dir.path()).unwrap_err().errors;
    assert_error_in(&errors, "identity.ca.url", "the CA is reached over https");
    assert_error_in(
        &errors,
        "identity.ca.trust_bundle",
        "cannot read \"certs/nope.crt\"",
    );
    assert_error_in(&errors, "identity.ca.token_file", "required key is missing");
    assert_error_in(
        &errors,
        "identity.ca.spiffe_id",
        "invalid SPIFFE ID \"orders\"",
    );
    assert_error_in(&errors, "identity.ca.ttl", "invalid duration \"a day\"");
    assert_eq!(errors.len(), 5, "{errors:?}");
}

#[test]
fn tracing_defaults_with_an_empty_section() {
    let tracing = load_ok(&with_top("tracing: {}")).tracing.unwrap();
    assert_eq!(tracing.otlp_endpoint, None);
    assert_eq!(tracing.protocol, OtlpProtocol::Grpc);
    assert_eq!(tracing.sampling, 1.0);
    assert_eq!(tracing.propagation, [Propagation::W3c, Propagation::B3]);
}

#[test]
fn tracing_endpoint_falls_back_to_the_environment() {
    let env = Env {
        otlp_endpoint: Some("http://collector:4318".into()),
    };
    let config = load_in(&with_route("{cluster: app}"), Path::new(NO_DIR), &env).unwrap();
    let tracing = config.tracing.unwrap();
    assert_eq!(
        tracing.otlp_endpoint.as_deref(),
        Some("http://collector:4318")
    );
    assert_eq!(
        tracing.protocol,
        OtlpProtocol::Http,
        "port 4318 is OTLP/HTTP"
    );
    let config = load_in(
        &with_top("tracing: {otlp_endpoint: \"http://jaeger:4317\"}"),
        Path::new(NO_DIR),
        &env,
    )
    .unwrap();
    assert_eq!(
        config.tracing.unwrap().otlp_endpoint.as_deref(),
        Some("http://jaeger:4317")
    );
    let env = Env {
        otlp_endpoint: Some("collector:4317".into()),
    };
    let errors = load_in(&with_route("{cluster: app}"), Path::new(NO_DIR), &env)
        .unwrap_err()
        .errors;
    assert_error_in(
        &errors,
        "tracing.otlp_endpoint",
        "(from OTEL_EXPORTER_OTLP_ENDPOINT)",
    );
}

#[test]
fn tracing_protocol_follows_the_port_unless_given() {
    let tracing = load_ok(&with_top(
        "tracing: {otlp_endpoint: \"http://jaeger:4318/\"}",
    ))
    .tracing
    .unwrap();
    assert_eq!(tracing.protocol, OtlpProtocol::Http);
    let tracing = load_ok(&with_top(
        "tracing: {otlp_endpoint: \"http://jaeger:4318\", protocol: grpc}",
    ))
    .tracing
    .unwrap();
    assert_eq!(tracing.protocol, OtlpProtocol::Grpc);
    assert_error(
        &with_top("tracing: {protocol: grcp}"),
        "tracing.protocol",
        "invalid protocol \"grcp\" (did you mean \"grpc\"?)",
    );
}

#[test]
fn tracing_values_are_checked() {
    assert_error(
        &with_top("tracing: {otlp_endpoint: jaeger}"),
        "tracing.otlp_endpoint",
        "invalid OTLP endpoint \"jaeger\"",
    );
    assert_error(
        &with_top("tracing: {sampling: 1.5}"),
        "tracing.sampling",
        "1.5 is out of range",
    );
    assert_error(
        &with_top("tracing: {propagation: [w3c, b33]}"),
        "tracing.propagation[1]",
        "invalid propagation \"b33\" (did you mean \"b3\"?)",
    );
}

#[test]
fn access_log_targets_and_formats() {
    let config = load_ok(&with_top(
        "access_log:\n  - {path: stderr, format: text}\n  - {path: logs/a.log, format: \"%REQ(:METHOD)% %RESPONSE_CODE%\"}\n  - {}",
    ));
    let logs = &config.access_log;
    assert_eq!(
        (logs[0].path.clone(), logs[0].format.clone()),
        (LogTarget::Stderr, LogFormat::Text)
    );
    assert_eq!(
        logs[1].path,
        LogTarget::File(Path::new(NO_DIR).join("logs/a.log"))
    );
    assert_eq!(
        logs[1].format,
        LogFormat::Custom("%REQ(:METHOD)% %RESPONSE_CODE%".into())
    );
    assert_eq!(
        (logs[2].path.clone(), logs[2].format.clone()),
        (LogTarget::Stdout, LogFormat::Text)
    );
}

#[test]
fn access_log_format_strings_are_parsed_during_validation() {
    assert_error(
        &with_top("access_log: [{format: \"[%START_TIME%] %BOGUS% %RESPONSE_CODE%\"}]"),
        "access_log[0].format",
        "unknown operator %BOGUS%",
    );
    assert_error(
        &with_top("access_log: [{format: \"%REQ(X-ID)% %START_TIME\"}]"),
        "access_log[0].format",
        "unterminated operator",
    );
}

#[test]
fn access_log_format_suggests_the_closest() {
    assert_error(
        &with_top("access_log: [{format: jsn}]"),
        "access_log[0].format",
        "invalid format \"jsn\" (did you mean \"json\"?)",
    );
    assert_error(
        &with_top("access_log: [{format: common}]"),
        "access_log[0].format",
        "expected json, text or a format string",
    );
}
