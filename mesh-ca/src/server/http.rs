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
use super::used_tokens::UsedError;
use crate::token::VerifiedToken;
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
    state: &Arc<State>,
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

/// Who the caller proved to be: its client certificate's identity
/// (renewal), else a join token's (to be used once).
struct Caller {
    id: SpiffeId,
    token: Option<VerifiedToken>,
}

/// The caller's identity, or the 401 to answer.
fn authenticate(
    req: &Request<Incoming>,
    state: &State,
    client_id: Option<&SpiffeId>,
) -> Result<Caller, (&'static str, String)> {
    if let Some(id) = client_id {
        return Ok(Caller {
            id: id.clone(),
            token: None,
        });
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
    let verified = Token::verify_full(&state.ca, token, OffsetDateTime::now_utc())
        .map_err(|e| ("invalid_token", format!("join token refused: {e}")))?;
    Ok(Caller {
        id: verified.id.clone(),
        token: Some(verified),
    })
}

async fn sign(
    req: Request<Incoming>,
    state: &Arc<State>,
    client_id: Option<&SpiffeId>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let caller = match authenticate(&req, state, client_id) {
        Ok(c) => c,
        Err((code, message)) => return error(StatusCode::UNAUTHORIZED, code, &message),
    };
    let ttl = match requested_ttl(req.uri().query()) {
        Ok(ttl) => ttl.unwrap_or(state.opts.ttl).min(state.opts.max_ttl),
        Err(msg) => return error(StatusCode::BAD_REQUEST, "bad_ttl", &msg),
    };
    let body = match read_body(req.into_body(), state.opts.body_timeout).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let policy = SignPolicy {
        allowed_id: Some(caller.id.clone()),
        ttl,
        max_ttl: state.opts.max_ttl,
    };
    let signed = match state.ca.check_csr(&body, &policy) {
        Ok(checked) => match consume_token(state, caller.token.as_ref()).await {
            Ok(()) => state.ca.sign_checked(&checked, &policy),
            Err(resp) => return resp,
        },
        Err(e) => Err(e),
    };
    match signed {
        Ok(chain) => {
            tracing::info!(%peer, spiffe_id = %caller.id, renewal = client_id.is_some(), "signed");
            let mut resp = text(StatusCode::OK, &chain);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-pem-file"),
            );
            resp
        }
        Err(CaError::Csr(e)) if e.is_forbidden() => {
            tracing::warn!(%peer, allowed = %caller.id, "refused: {e}");
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

/// The CSR body: at most [`MAX_BODY`] bytes, all of it within `deadline`
/// (a client dribbling its body is answered 408 and cut off).
async fn read_body(body: Incoming, deadline: Duration) -> Result<Bytes, Response<Full<Bytes>>> {
    match tokio::time::timeout(deadline, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is not a CSR",
        )),
        Err(_) => {
            let mut resp = error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                &format!("the request body did not arrive within {deadline:?}"),
            );
            resp.headers_mut()
                .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            Err(resp)
        }
    }
}

/// Records a join token as used, durably, before anything is signed with
/// it; a token seen before is the 401 to answer.
async fn consume_token(
    state: &Arc<State>,
    token: Option<&VerifiedToken>,
) -> Result<(), Response<Full<Bytes>>> {
    let Some(token) = token.cloned() else {
        return Ok(());
    };
    let st = Arc::clone(state);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let result =
        tokio::task::spawn_blocking(move || st.used.consume(&token.jti, token.exp, now)).await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e @ UsedError::AlreadyUsed { .. })) => {
            tracing::warn!("refused: {e}");
            Err(error(
                StatusCode::UNAUTHORIZED,
                "token_used",
                &e.to_string(),
            ))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot record a join token");
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "cannot record the join token as used",
            ))
        }
        Err(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "cannot record the join token as used",
        )),
    }
}

/// `?ttl=` (humantime, form-urlencoded like any query), if given.
fn requested_ttl(query: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(v) = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "ttl")
            .map(|(_, v)| v.into_owned())
    }) else {
        return Ok(None);
    };
    humantime::parse_duration(v.trim())
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
        // Decoded like any query: escapes, '+' as space, the first ttl.
        assert_eq!(
            requested_ttl(Some("x=1&ttl=1h%2030m&ttl=9h")),
            Ok(Some(Duration::from_secs(5400)))
        );
        assert_eq!(
            requested_ttl(Some("ttl=2h+5m")),
            Ok(Some(Duration::from_secs(7500)))
        );
        assert!(requested_ttl(Some("ttl=%FF")).is_err());
    }
}
