//! A small plain-HTTP client for a proxy's admin API (SPEC §3 "Admin
//! API"), shared by `wait`, `stat` and `fault`. Failures come back as words ("connection
//! refused", "no answer within 2s") for the one-sentence errors and the
//! `stat` rows.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::uri::Authority;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

/// `/stats?format=json` of a big proxy is a few hundred KiB.
const MAX_BODY: usize = 16 << 20;

/// Parses `--admin`: `host:port`, also written as `http://host:port/`.
pub fn parse_admin(text: &str) -> Result<Authority, String> {
    let bare = text.strip_prefix("http://").unwrap_or(text);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    let authority: Authority = bare
        .parse()
        .map_err(|_| "expected HOST:PORT, e.g. 127.0.0.1:9901".to_owned())?;
    if authority.port_u16().is_none() || authority.host().is_empty() {
        return Err("expected HOST:PORT, e.g. 127.0.0.1:9901".to_owned());
    }
    Ok(authority)
}

/// What the admin answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// `503 NO_IDENTITY`: the status code and the first line of the body
    /// (the admin's `/ready` says its state there), or the reason phrase.
    pub fn summary(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let first = text.lines().next().unwrap_or("").trim();
        if first.is_empty() {
            let reason = self.status.canonical_reason().unwrap_or("");
            return format!("{} {reason}", self.status.as_u16())
                .trim_end()
                .to_owned();
        }
        let first: String = first.chars().take(80).collect();
        format!("{} {first}", self.status.as_u16())
    }
}

/// `GET http://<admin><path>` within `timeout` (connect, request and body).
/// The error is a lower-case phrase: "connection refused", "no answer
/// within 1s", ...
pub async fn get(admin: &Authority, path: &str, timeout: Duration) -> Result<Answer, String> {
    request(admin, http::Method::GET, path, timeout).await
}

/// `<method> http://<admin><path>` (no body) within `timeout`; errors as
/// [`get`]'s.
pub async fn request(
    admin: &Authority,
    method: http::Method,
    path: &str,
    timeout: Duration,
) -> Result<Answer, String> {
    match tokio::time::timeout(timeout, exchange(admin, method, path)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

async fn exchange(admin: &Authority, method: http::Method, path: &str) -> Result<Answer, String> {
    let tcp = tokio::net::TcpStream::connect(admin.as_str())
        .await
        .map_err(|e| lower_first(&mesh_ca::os_reason(&e)))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP failed: {e}"))?;
    let conn = tokio::spawn(conn);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, admin.as_str())
        .header(http::header::USER_AGENT, "mesh-cli")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("the connection failed: {e}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?
        .to_bytes();
    conn.abort();
    Ok(Answer { status, body })
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_need_a_port() {
        assert_eq!(
            parse_admin("127.0.0.1:9901").map(|a| a.to_string()),
            Ok("127.0.0.1:9901".to_owned())
        );
        assert_eq!(
            parse_admin("http://localhost:15000/").map(|a| a.to_string()),
            Ok("localhost:15000".to_owned())
        );
        assert_eq!(
            parse_admin("[::1]:9901").map(|a| a.port_u16()),
            Ok(Some(9901))
        );
        assert!(parse_admin("127.0.0.1").is_err());
        assert!(parse_admin(":9901").is_err());
        assert!(parse_admin("http://a:1/x").is_err());
    }

    #[test]
    fn summaries_show_the_state_or_the_reason() {
        let a = Answer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: Bytes::from_static(b"NO_IDENTITY\n"),
        };
        assert_eq!(a.summary(), "503 NO_IDENTITY");
        let a = Answer {
            status: StatusCode::NOT_FOUND,
            body: Bytes::new(),
        };
        assert_eq!(a.summary(), "404 Not Found");
        assert_eq!(lower_first("Connection refused"), "connection refused");
    }
}
