//! Top-level sections: node, admin, identity, tracing, access_log.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::model::*;
use super::super::raw::{
    AccessLogConfig, AdminConfig, CaConfig, IdentityConfig, NodeConfig, TracingConfig,
};
use super::super::suggest::did_you_mean;
use super::value_error::ValueError;
use super::{Ctx, index, join, values};
use crate::config::validate::Env;

const DEFAULT_NODE_NAME: &str = "mesh-proxy";
const DEFAULT_ADMIN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9901,
));
const DEFAULT_CA_TTL: Duration = Duration::from_secs(24 * 3600);

pub(super) fn node(cx: &mut Ctx<'_>, raw: Option<NodeConfig>) -> NodeSpec {
    let raw = raw.unwrap_or(NodeConfig {
        name: None,
        service: None,
    });
    let name = raw.name.unwrap_or_else(|| DEFAULT_NODE_NAME.to_owned());
    if name.trim().is_empty() {
        cx.error("node.name", "must not be empty");
    }
    let service = raw.service.unwrap_or_else(|| name.clone());
    if service.trim().is_empty() {
        cx.error("node.service", "must not be empty");
    }
    NodeSpec { name, service }
}

pub(super) fn admin(cx: &mut Ctx<'_>, raw: Option<AdminConfig>) -> AdminSpec {
    let address = raw
        .and_then(|a| a.address)
        .and_then(|text| cx.check("admin.address", values::listen_address(&text)))
        .unwrap_or(DEFAULT_ADMIN);
    AdminSpec { address }
}

pub(super) fn identity(cx: &mut Ctx<'_>, raw: IdentityConfig) -> Option<IdentitySpec> {
    let has_files = raw.cert.is_some() || raw.key.is_some() || raw.trust_bundle.is_some();
    match (has_files, raw.ca) {
        (true, Some(_)) => {
            cx.error(
                "identity",
                "give either cert, key and trust_bundle, or ca, not both",
            );
            None
        }
        (false, None) => {
            cx.error("identity", "give either cert, key and trust_bundle, or ca");
            None
        }
        (false, Some(ca)) => identity_ca(cx, ca),
        (true, None) => {
            let cert = file(cx, "identity", "cert", raw.cert.as_deref());
            let key = file(cx, "identity", "key", raw.key.as_deref());
            let trust_bundle = file(cx, "identity", "trust_bundle", raw.trust_bundle.as_deref());
            Some(IdentitySpec::Files {
                cert: cert?,
                key: key?,
                trust_bundle: trust_bundle?,
            })
        }
    }
}

fn identity_ca(cx: &mut Ctx<'_>, raw: CaConfig) -> Option<IdentitySpec> {
    const AT: &str = "identity.ca";
    let url = cx
        .required(AT, "url", raw.url.as_deref())
        .and_then(|text| cx.check(&join(AT, "url"), ca_url(text)));
    let trust_bundle = file(cx, AT, "trust_bundle", raw.trust_bundle.as_deref());
    let token_file = file(cx, AT, "token_file", raw.token_file.as_deref());
    let spiffe_id = cx
        .required(AT, "spiffe_id", raw.spiffe_id.as_deref())
        .and_then(|id| {
            cx.check(&join(AT, "spiffe_id"), values::spiffe_id(id, false))
                .map(|()| id.to_owned())
        });
    let ttl = cx.positive_duration(AT, "ttl", raw.ttl.as_ref(), DEFAULT_CA_TTL);
    Some(IdentitySpec::Ca {
        url: url?,
        trust_bundle: trust_bundle?,
        token_file: token_file?,
        spiffe_id: spiffe_id?,
        ttl,
    })
}

fn ca_url(text: &str) -> Result<http::Uri, ValueError> {
    let uri: http::Uri = text.parse().map_err(|source| ValueError::Url {
        text: text.to_owned(),
        source,
    })?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(ValueError::CaNotHttps {
            text: text.to_owned(),
        });
    }
    Ok(uri)
}

/// A required file key that must name a readable file.
fn file(
    cx: &mut Ctx<'_>,
    parent: &str,
    key: &str,
    text: Option<&str>,
) -> Option<std::path::PathBuf> {
    let text = cx.required(parent, key, text)?;
    let base_dir = cx.base_dir;
    cx.check(&join(parent, key), values::readable_file(base_dir, text))
}

pub(super) fn tracing(
    cx: &mut Ctx<'_>,
    raw: Option<TracingConfig>,
    env: &Env,
) -> Option<TracingSpec> {
    if raw.is_none() && env.otlp_endpoint.is_none() {
        return None;
    }
    let raw = raw.unwrap_or(TracingConfig {
        otlp_endpoint: None,
        protocol: None,
        sampling: None,
        propagation: None,
    });
    let (endpoint, from_env) = match raw.otlp_endpoint.filter(|e| !e.trim().is_empty()) {
        Some(endpoint) => (Some(endpoint), false),
        None => (env.otlp_endpoint.clone(), true),
    };
    let port = endpoint
        .as_deref()
        .and_then(|e| cx.check("tracing.otlp_endpoint", otlp_endpoint(e, from_env)));
    let default_protocol = match port {
        Some(4318) => OtlpProtocol::Http,
        _ => OtlpProtocol::Grpc,
    };
    let protocol = cx.word(
        "tracing",
        "protocol",
        raw.protocol.as_deref(),
        &[("grpc", OtlpProtocol::Grpc), ("http", OtlpProtocol::Http)],
        default_protocol,
    );
    let sampling = raw.sampling.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sampling) {
        cx.error(
            "tracing.sampling",
            format!("{sampling} is out of range: expected 0.0 to 1.0"),
        );
    }
    let propagation = match raw.propagation {
        None => vec![Propagation::W3c, Propagation::B3],
        Some(words) => propagation(cx, &words),
    };
    Some(TracingSpec {
        otlp_endpoint: endpoint,
        protocol,
        sampling,
        propagation,
    })
}

fn propagation(cx: &mut Ctx<'_>, words: &[String]) -> Vec<Propagation> {
    let options = [("w3c", Propagation::W3c), ("b3", Propagation::B3)];
    let mut out = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let at = index("tracing.propagation", i);
        if let Some(p) = cx.check(&at, values::one_of("propagation", word, &options)) {
            out.push(p);
        }
    }
    out
}

/// An OTLP endpoint URL (from the environment when `from_env`); returns
/// its port (explicit or from the scheme).
fn otlp_endpoint(text: &str, from_env: bool) -> Result<u16, ValueError> {
    let bad = || ValueError::OtlpEndpoint {
        text: text.to_owned(),
        from_env,
    };
    let uri: http::Uri = text.parse().map_err(|_| bad())?;
    let port = match uri.scheme_str() {
        Some("http") => uri.port_u16().unwrap_or(80),
        Some("https") => uri.port_u16().unwrap_or(443),
        _ => return Err(bad()),
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(port)
}

pub(super) fn access_logs(cx: &mut Ctx<'_>, raw: Vec<AccessLogConfig>) -> Vec<AccessLogSpec> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, log)| access_log(cx, &index("access_log", i), log))
        .collect()
}

fn access_log(cx: &mut Ctx<'_>, at: &str, raw: AccessLogConfig) -> Option<AccessLogSpec> {
    let path = match raw.path.as_deref().map(str::trim) {
        None | Some("stdout") => LogTarget::Stdout,
        Some("stderr") => LogTarget::Stderr,
        Some("") => {
            cx.error(
                &join(at, "path"),
                "must not be empty: use stdout, stderr or a file path",
            );
            return None;
        }
        Some(file) => LogTarget::File(values::resolve(cx.base_dir, file)),
    };
    let format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(custom) if custom.contains('%') => {
            let parsed = crate::telemetry::access_log::check_format(custom);
            cx.check(&join(at, "format"), parsed)?;
            LogFormat::Custom(custom.to_owned())
        }
        Some(other) => {
            let hint = did_you_mean(other, ["json", "text"]);
            let message = if hint.is_empty() {
                format!(
                    "invalid format \"{other}\": expected json, text or a format string with %FIELDS%"
                )
            } else {
                format!("invalid format \"{other}\"{hint}")
            };
            cx.error(&join(at, "format"), message);
            return None;
        }
    };
    Some(AccessLogSpec { path, format })
}
