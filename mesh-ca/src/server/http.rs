//! The HTTP side of the CA server: routing, authentication, JSON errors.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::State;
use crate::{CaError, SignPolicy, SpiffeId, Token, svid_spiffe_id};

/// A CSR is well under 4 KiB; anything much larger is not one.
const MAX_BODY: usize = 64 * 1024;

pub(super) async fn serve(tls: TlsStream<TcpStream>, peer: SocketAddr, state: Arc<State>) {
    // The client certificate was chain-verified in the handshake; keep only
    // the identity it proves.
    let client_id = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|leaf| svid_spiffe_id(leaf).ok());
    let service = hyper::service::service_fn(move |req| {
        let state = Arc::clone(&state);
        let client_id = client_id.clone();
        async move { Ok::<_, Infallible>(route(req, &state, client_id.as_ref(), peer).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(tls), service);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn route(
    req: Request<Incoming>,
    state: &State,
    client_id: Option<&SpiffeId>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/v1/bundle") => {
            let mut resp = text(StatusCode::OK, &state.ca.cert_pem());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-pem-file"),
            );
            resp
        }
        (&Method::POST, "/v1/sign") => sign(req, state, client_id, peer).await,
        (_, "/healthz" | "/v1/bundle" | "/v1/sign") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        ),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

/// Who the caller is allowed to be: its client certificate's identity
/// (renewal), else its join token's. The error is the 401 to answer.
fn authenticate(
    req: &Request<Incoming>,
    state: &State,
    client_id: Option<&SpiffeId>,
) -> Result<SpiffeId, (&'static str, String)> {
    if let Some(id) = client_id {
        return Ok(id.clone());
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or((
            "unauthenticated",
            "a join token (Authorization: Bearer) or a client certificate is required".to_owned(),
        ))?;
    Token::verify(&state.ca, token, OffsetDateTime::now_utc())
        .map_err(|e| ("invalid_token", format!("join token refused: {e}")))
}

async fn sign(
    req: Request<Incoming>,
    state: &State,
    client_id: Option<&SpiffeId>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let allowed = match authenticate(&req, state, client_id) {
        Ok(id) => id,
        Err((code, message)) => return error(StatusCode::UNAUTHORIZED, code, &message),
    };
    let ttl = match requested_ttl(req.uri().query()) {
        Ok(ttl) => ttl.unwrap_or(state.opts.ttl),
        Err(msg) => return error(StatusCode::BAD_REQUEST, "bad_ttl", &msg),
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is not a CSR",
            );
        }
    };
    let policy = SignPolicy {
        allowed_id: Some(allowed.clone()),
        ttl: ttl.min(state.opts.max_ttl),
        max_ttl: state.opts.max_ttl,
    };
    match state.ca.sign_csr(&body, &policy) {
        Ok(chain) => {
            tracing::info!(%peer, spiffe_id = %allowed, renewal = client_id.is_some(), "signed");
            let mut resp = text(StatusCode::OK, &chain);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-pem-file"),
            );
            resp
        }
        Err(CaError::Csr(e)) if e.is_forbidden() => {
            tracing::warn!(%peer, allowed = %allowed, "refused: {e}");
            error(StatusCode::FORBIDDEN, "forbidden", &e.to_string())
        }
        Err(CaError::Csr(e)) => error(StatusCode::BAD_REQUEST, "bad_csr", &e.to_string()),
        Err(e) => {
            tracing::error!(%peer, error = %e, "signing failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "signing failed",
            )
        }
    }
}

fn requested_ttl(query: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(v) = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ttl="))) else {
        return Ok(None);
    };
    humantime::parse_duration(v)
        .map(Some)
        .map_err(|e| format!("invalid ttl {v:?}: {e}"))
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message, "code": code }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_query_parses_humantime_and_rejects_garbage() {
        assert_eq!(requested_ttl(None), Ok(None));
        assert_eq!(requested_ttl(Some("a=b")), Ok(None));
        assert_eq!(
            requested_ttl(Some("ttl=2h")),
            Ok(Some(Duration::from_secs(7200)))
        );
        assert!(requested_ttl(Some("ttl=soon")).is_err());
    }
}
