//! One active health probe on a fresh connection (never a pooled one).

use http::Request;

use super::classify::classify;
use super::pool::{H1Sender, H2Sender, connect};
use super::{Cluster, Endpoint, UpstreamError, UpstreamErrorKind};
use crate::body::RequestBody;
use crate::config::UpstreamProtocol;

/// One active health probe: `GET path` on a fresh connection (never a pooled
/// one, so a probe sees what a new connection would), with `Host` set to the
/// cluster's name. Returns the status, or why there was none.
pub async fn probe(
    cluster: &Cluster,
    endpoint: &Endpoint,
    path: &str,
) -> Result<http::StatusCode, UpstreamError> {
    let shared = &cluster.shared;
    let uri: http::Uri = match shared.settings.protocol {
        UpstreamProtocol::Http1 => path.parse(),
        UpstreamProtocol::Http2 => format!("http://{}{path}", shared.name).parse(),
    }
    .map_err(|e: http::uri::InvalidUri| {
        UpstreamError::new(
            UpstreamErrorKind::Protocol,
            Some(endpoint.addr),
            e.to_string(),
        )
    })?;
    let mut req = Request::get(uri).body(RequestBody::Empty).map_err(|e| {
        UpstreamError::new(
            UpstreamErrorKind::Protocol,
            Some(endpoint.addr),
            e.to_string(),
        )
    })?;
    if shared.settings.protocol == UpstreamProtocol::Http1 {
        if let Ok(host) = http::HeaderValue::from_str(&shared.name) {
            req.headers_mut().insert(http::header::HOST, host);
        }
        req.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    let resp = match shared.settings.protocol {
        UpstreamProtocol::Http1 => {
            let mut tx: H1Sender = connect(shared, endpoint).await?;
            tx.send_request(req).await
        }
        UpstreamProtocol::Http2 => {
            let mut tx: H2Sender = connect(shared, endpoint).await?;
            tx.send_request(req).await
        }
    }
    .map_err(|e| classify(e, endpoint))?;
    Ok(resp.status())
}
