//! Why the proxy could not start, or why a reload changed nothing.

use std::net::SocketAddr;

use crate::config::ConfigErrors;
use crate::identity::IdentityError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A reloaded config file failed validation.
    #[error("{0}")]
    InvalidConfig(ConfigErrors),
    /// A listener's address cannot be bound (at start: `listeners[i] (name)`;
    /// on reload: `listener name`).
    #[error("{listener}: cannot bind {address}")]
    Bind {
        listener: String,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("identity")]
    Identity(#[source] IdentityError),
    #[error("clusters[{index}] ({cluster}): {reason}")]
    Cluster {
        index: usize,
        cluster: String,
        reason: String,
    },
    /// The listener's TLS settings cannot be built.
    #[error("listener {listener}: tls")]
    ListenerTls {
        listener: String,
        #[source]
        source: rustls::Error,
    },
    /// The listener's route table cannot be built.
    #[error("listener {listener}: routes")]
    Routes {
        listener: String,
        #[source]
        source: crate::router::TableError,
    },
    #[error("listener {listener}: tls needs an identity")]
    TlsWithoutIdentity { listener: String },
    #[error("listener {listener}: unknown cluster \"{cluster}\"")]
    UnknownCluster { listener: String, cluster: String },
    #[error("tracing: {reason}")]
    Tracing { reason: String },
    #[error("access log")]
    AccessLog(#[source] crate::telemetry::access_log::AccessLogError),
    #[error("installing the {signal} handler")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// `error: cause: cause`, the way the error and its sources read in a log line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_every_cause() {
        let e = AppError::Bind {
            listener: "listener main".to_owned(),
            address: SocketAddr::from(([127, 0, 0, 1], 8080)),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(
            chain(&e),
            "listener main: cannot bind 127.0.0.1:8080: address in use"
        );
    }
}
