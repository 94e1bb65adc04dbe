//! The ledger's answers: the JSON echo, and the special paths (`/slow`,
//! `/big`, `/status/NNN`) matched on their last segment(s) so a route prefix in
//! front (`/ledger/big`) needs no rewriting. `/big` streams a static pattern
//! chunk by chunk, so a multi-gigabyte response costs no memory.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};
use ring::digest;

use super::{LedgerEntry, hex};

/// Size of the reused chunk `/big` streams.
const BIG_CHUNK: usize = 64 * 1024;
/// The `/big` payload: a repeating `a..z` pattern, so a response spliced at a
/// wrong offset changes its hash.
static BIG_PATTERN: [u8; BIG_CHUNK] = big_pattern();

const fn big_pattern() -> [u8; BIG_CHUNK] {
    let mut out = [0u8; BIG_CHUNK];
    let mut i = 0;
    while i < BIG_CHUNK {
        out[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    out
}

/// The SHA-256 of the body `/big?bytes=n` sends, for comparing downloads.
pub fn big_body_sha256(n: u64) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut left = n;
    while left > 0 {
        let take = chunk_len(left);
        ctx.update(&BIG_PATTERN[..take]);
        left -= take as u64;
    }
    hex(ctx.finish().as_ref())
}

fn chunk_len(left: u64) -> usize {
    usize::try_from(left).map_or(BIG_CHUNK, |l| l.min(BIG_CHUNK))
}

pub(super) type RespBody = BoxBody<Bytes, Infallible>;

/// Special paths are matched on their last segment(s), so a route prefix in
/// front (`/ledger/big`) does not need rewriting.
pub(super) async fn respond(entry: &LedgerEntry, parts: &Parts) -> Response<RespBody> {
    let path = parts.uri.path().trim_end_matches('/');
    let query = parts.uri.query();
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        [.., "slow"] => {
            let ms = query_u64(query, "ms").unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            echo(entry, StatusCode::OK)
        }
        [.., "big"] => big(query_u64(query, "bytes").unwrap_or(0)),
        [.., "status", code] => match code.parse::<u16>().map(StatusCode::from_u16) {
            Ok(Ok(status)) if status.as_u16() >= 200 => echo(entry, status),
            _ => plain(StatusCode::BAD_REQUEST, "bad status code\n"),
        },
        _ => echo(entry, StatusCode::OK),
    }
}

fn query_u64(query: Option<&str>, key: &str) -> Option<u64> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn echo(entry: &LedgerEntry, status: StatusCode) -> Response<RespBody> {
    // 204 and 304 cannot carry a body (RFC 9110 §15.3.5, §15.4.5).
    let body = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Empty::new().boxed()
    } else {
        let json = serde_json::to_vec(entry).unwrap_or_default();
        Full::new(Bytes::from(json)).boxed()
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(super) fn plain(status: StatusCode, text: &'static str) -> Response<RespBody> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

fn big(bytes: u64) -> Response<RespBody> {
    let body = BigBody { remaining: bytes };
    let mut resp = Response::new(body.boxed());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// Streams `remaining` bytes of the static pattern, 64 KiB per frame, with an
/// exact size hint (so HTTP/1.1 gets a Content-Length).
struct BigBody {
    remaining: u64,
}

impl Body for BigBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let take = chunk_len(self.remaining);
        self.remaining -= take as u64;
        let chunk = Bytes::from_static(&BIG_PATTERN).slice(..take);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
