//! Why one config value is invalid: the cause half of a `ConfigError`
//! (`Ctx::check` adds the key path). Messages are lowercase and name the
//! bad value.

/// The suffix of an OTLP endpoint error that came from the environment.
fn env_note(yes: &bool) -> &'static str {
    if *yes {
        " (from OTEL_EXPORTER_OTLP_ENDPOINT)"
    } else {
        ""
    }
}

/// The first lines of a multi-line message (regex errors), joined.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ValueError {
    #[error("invalid duration \"{text}\": {source}")]
    Duration {
        text: String,
        #[source]
        source: humantime::DurationError,
    },
    #[error("invalid {what} \"{text}\": expected one of {expected}")]
    NotOneOf {
        what: String,
        text: String,
        expected: String,
    },
    /// `hint` is a did-you-mean suffix such as ` (did you mean "json"?)`.
    #[error("invalid {what} \"{text}\"{hint}")]
    NearMiss {
        what: String,
        text: String,
        hint: String,
    },
    #[error("invalid value \"{text}\": expected {expected}")]
    Choice {
        text: String,
        expected: &'static str,
    },
    #[error("invalid address \"{text}\": {why}")]
    Address { text: String, why: String },
    #[error("invalid endpoint \"{text}\": {why}")]
    Endpoint { text: String, why: String },
    #[error(
        "invalid name \"{text}\": use letters, digits, '-' and '_' (names appear in metric names)"
    )]
    Name { text: String },
    #[error(
        "invalid route name \"{text}\": use letters, digits, '-', '_' and '.', not digits alone (names appear in metric names and in route=<listener>/<name>; an unnamed route is <listener>/<index>)"
    )]
    RouteName { text: String },
    #[error("invalid SPIFFE ID \"{text}\": {why}")]
    SpiffeId { text: String, why: String },
    #[error(transparent)]
    SpiffePattern(#[from] mesh_ca::SpiffeIdError),
    #[error("invalid header name \"{text}\"")]
    HeaderName { text: String },
    #[error("invalid header value \"{}\"", text.escape_debug())]
    HeaderValue { text: String },
    #[error("invalid method \"{text}\"")]
    Method { text: String },
    #[error("invalid status code {code}: expected 100-599")]
    Status { code: u32 },
    #[error("invalid host \"{text}\": {why}")]
    HostMatch { text: String, why: &'static str },
    #[error("invalid host \"{text}\"")]
    Host { text: String },
    #[error("invalid path \"{path}\": {why}")]
    Path { path: String, why: &'static str },
    #[error("invalid regex \"{text}\": {}", one_line(&source.to_string()))]
    Regex {
        text: String,
        #[source]
        source: regex::Error,
    },
    #[error("invalid url \"{text}\": {source}")]
    Url {
        text: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("invalid url \"{text}\": the CA is reached over https, as https://ca:8443")]
    CaNotHttps { text: String },
    #[error(
        "invalid OTLP endpoint \"{text}\": expected a URL such as http://jaeger:4317{}",
        env_note(from_env)
    )]
    OtlpEndpoint { text: String, from_env: bool },
    #[error("cannot read {shown}: it is a directory")]
    Directory { shown: String },
    #[error("cannot read {shown}: {source}")]
    Unreadable {
        shown: String,
        #[source]
        source: std::io::Error,
    },
}
