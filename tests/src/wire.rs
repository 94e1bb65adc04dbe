//! Minimal HTTP/1.1 request reading for the fault upstream. It is strict where
//! framing is concerned (one Content-Length value, chunked as the final
//! coding, RFC 9112 §6) because a lenient reader in a test upstream would hide
//! exactly the smuggling bugs the checks look for; everything else is kept
//! simple.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Cap on the request head (request line + header section).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Cap on a chunk-size or trailer line.
const MAX_LINE: usize = 8 * 1024;

/// A parsed request head plus what the body turned out to be.
#[derive(Clone, Debug)]
pub(crate) struct RequestHead {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub keep_alive: bool,
    pub body_len: u64,
    framing: Framing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

pub(crate) enum ReadOutcome {
    /// A complete request (head and body) was read.
    Request(RequestHead),
    /// Malformed; answer with this status and close.
    Bad(u16),
    /// The peer closed before a complete request.
    Eof,
}

fn invalid() -> io::Error {
    io::Error::from(io::ErrorKind::InvalidData)
}

/// Reads one request from `stream`; `buf` carries bytes read past the end of
/// the previous request (pipelining) and keeps the excess of this one.
pub(crate) async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> io::Result<ReadOutcome> {
    match read_request_inner(stream, buf).await {
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(ReadOutcome::Bad(400)),
        other => other,
    }
}

async fn read_request_inner(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<ReadOutcome> {
    let head_end = loop {
        // RFC 9112 §2.2: ignore empty lines before the request line.
        while buf.starts_with(b"\r\n") {
            buf.drain(..2);
        }
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Ok(ReadOutcome::Bad(431));
        }
        if !fill(stream, buf).await? {
            return Ok(ReadOutcome::Eof);
        }
    };
    if head_end > MAX_HEAD {
        return Ok(ReadOutcome::Bad(431));
    }
    let head: Vec<u8> = buf.drain(..head_end).collect();
    let Some(mut req) = parse_head(&head) else {
        return Ok(ReadOutcome::Bad(400));
    };
    let has_body = req.framing != Framing::Length(0);
    let expects_continue = req
        .headers
        .iter()
        .any(|(n, v)| n == "expect" && v.eq_ignore_ascii_case("100-continue"));
    if has_body && expects_continue {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let body = match req.framing {
        Framing::Length(n) => skip(stream, buf, n).await?.then_some(n),
        Framing::Chunked => read_chunked(stream, buf).await?,
    };
    Ok(match body {
        Some(len) => {
            req.body_len = len;
            ReadOutcome::Request(req)
        }
        None => ReadOutcome::Eof,
    })
}

/// Parses the request line and header fields; None when malformed.
fn parse_head(head: &[u8]) -> Option<RequestHead> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let valid_version = version == "HTTP/1.1" || version == "HTTP/1.0";
    if parts.next().is_some() || method.is_empty() || target.is_empty() || !valid_version {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        // RFC 9112 §5.1: no whitespace between field name and colon.
        if name.is_empty() || name.contains([' ', '\t']) {
            return None;
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let framing = framing(&headers)?;
    let tokens = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let connection = tokens("connection");
    let keep_alive = if version == "HTTP/1.1" {
        !connection.iter().any(|t| t == "close")
    } else {
        connection.iter().any(|t| t == "keep-alive")
    };
    Some(RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        keep_alive,
        body_len: 0,
        framing,
    })
}

/// RFC 9112 §6.3: chunked must be the final coding; Transfer-Encoding
/// overrides Content-Length; all Content-Length values must agree.
fn framing(headers: &[(String, String)]) -> Option<Framing> {
    let codings: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    if !codings.is_empty() {
        return (codings.last().map(String::as_str) == Some("chunked")).then_some(Framing::Chunked);
    }
    let mut length = None;
    for value in headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .flat_map(|(_, v)| v.split(','))
    {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = value.parse().ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    Some(Framing::Length(length.unwrap_or(0)))
}

/// Reads a chunked body; Some(total) when complete, None on EOF, InvalidData
/// on bad syntax.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
    let mut total = 0u64;
    loop {
        let Some(line) = read_line(stream, buf).await? else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&line);
        let size_text = line.split(';').next().unwrap_or_default().trim();
        if size_text.is_empty() || size_text.len() > 16 {
            return Err(invalid());
        }
        let size = u64::from_str_radix(size_text, 16).map_err(|_| invalid())?;
        if size == 0 {
            // Trailer section, ended by an empty line.
            loop {
                match read_line(stream, buf).await? {
                    None => return Ok(None),
                    Some(l) if l.is_empty() => return Ok(Some(total)),
                    Some(_) => {}
                }
            }
        }
        if !skip(stream, buf, size).await? {
            return Ok(None);
        }
        total = total.saturating_add(size);
        match read_line(stream, buf).await? {
            None => return Ok(None),
            Some(l) if l.is_empty() => {}
            Some(_) => return Err(invalid()),
        }
    }
}

/// Reads one CRLF-terminated line (without the CRLF); None on EOF.
async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    loop {
        if let Some(i) = find(buf, b"\r\n") {
            let mut line: Vec<u8> = buf.drain(..i + 2).collect();
            line.truncate(i);
            return Ok(Some(line));
        }
        if buf.len() > MAX_LINE {
            return Err(invalid());
        }
        if !fill(stream, buf).await? {
            return Ok(None);
        }
    }
}

/// Consumes exactly `n` body bytes; false on EOF first.
async fn skip(stream: &mut TcpStream, buf: &mut Vec<u8>, n: u64) -> io::Result<bool> {
    let mut left = n;
    loop {
        let take = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        buf.drain(..take);
        left -= take as u64;
        if left == 0 {
            return Ok(true);
        }
        if !fill(stream, buf).await? {
            return Ok(false);
        }
    }
}

/// Reads more bytes into `buf`; false at EOF.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.reserve(16 * 1024);
    Ok(stream.read_buf(buf).await? > 0)
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Option<RequestHead> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn framing_rules() {
        let h = head("POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n").expect("valid");
        assert_eq!(h.framing, Framing::Length(3));
        let h = head("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("valid");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(head("POST / HTTP/1.1\r\nContent-Length: 3, 5\r\n\r\n").is_none());
        assert!(head("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n").is_none());
        assert!(head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n").is_none());
        assert!(head("GET / HTTP/1.1\r\nX-A : b\r\n\r\n").is_none());
        assert!(head("GET /  HTTP/1.1\r\n\r\n").is_none());
    }

    #[test]
    fn keep_alive_rules() {
        assert!(head("GET / HTTP/1.1\r\n\r\n").expect("valid").keep_alive);
        assert!(
            !head("GET / HTTP/1.1\r\nConnection: x, Close\r\n\r\n")
                .expect("valid")
                .keep_alive
        );
        assert!(!head("GET / HTTP/1.0\r\n\r\n").expect("valid").keep_alive);
        assert!(
            head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .expect("valid")
                .keep_alive
        );
    }
}
