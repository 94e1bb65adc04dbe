//! `limits:` at the top level and per listener (per-field override).

use super::super::model::{LimitsSpec, UnderscoreAction};
use super::super::raw::LimitsConfig;
use super::value_error::ValueError;
use super::{Ctx, join};

/// `base` with every key given in `raw` applied; `at` is `limits` or
/// `listeners[i].limits`. Zero is refused except for `max_request_body_mb`
/// (0 = unlimited).
pub(super) fn limits(
    cx: &mut Ctx<'_>,
    at: &str,
    raw: Option<&LimitsConfig>,
    base: &LimitsSpec,
) -> LimitsSpec {
    let Some(raw) = raw else {
        return *base;
    };
    LimitsSpec {
        max_request_headers_kb: cx.at_least(
            at,
            "max_request_headers_kb",
            raw.max_request_headers_kb,
            1,
            base.max_request_headers_kb,
        ),
        max_request_headers_count: cx.at_least(
            at,
            "max_request_headers_count",
            raw.max_request_headers_count,
            1,
            base.max_request_headers_count,
        ),
        max_uri_kb: cx.at_least(at, "max_uri_kb", raw.max_uri_kb, 1, base.max_uri_kb),
        max_request_body_mb: raw.max_request_body_mb.unwrap_or(base.max_request_body_mb),
        header_read_timeout: cx.positive_duration(
            at,
            "header_read_timeout",
            raw.header_read_timeout.as_ref(),
            base.header_read_timeout,
        ),
        body_idle_timeout: cx.positive_duration(
            at,
            "body_idle_timeout",
            raw.body_idle_timeout.as_ref(),
            base.body_idle_timeout,
        ),
        stream_idle_timeout: cx.positive_duration(
            at,
            "stream_idle_timeout",
            raw.stream_idle_timeout.as_ref(),
            base.stream_idle_timeout,
        ),
        idle_timeout: cx.positive_duration(
            at,
            "idle_timeout",
            raw.idle_timeout.as_ref(),
            base.idle_timeout,
        ),
        max_connections: cx.at_least(
            at,
            "max_connections",
            raw.max_connections,
            1,
            base.max_connections,
        ),
        http2_max_concurrent_streams: cx.at_least(
            at,
            "http2_max_concurrent_streams",
            raw.http2_max_concurrent_streams,
            1,
            base.http2_max_concurrent_streams,
        ),
        buffer_kb: cx.at_least(at, "buffer_kb", raw.buffer_kb, 1, base.buffer_kb),
        headers_with_underscores: raw
            .headers_with_underscores
            .as_deref()
            .and_then(|v| cx.check(&join(at, "headers_with_underscores"), underscore_action(v)))
            .unwrap_or(base.headers_with_underscores),
    }
}

fn underscore_action(value: &str) -> Result<UnderscoreAction, ValueError> {
    [
        UnderscoreAction::Drop,
        UnderscoreAction::Reject,
        UnderscoreAction::Allow,
    ]
    .into_iter()
    .find(|a| a.as_str() == value)
    .ok_or_else(|| ValueError::Choice {
        text: value.to_owned(),
        expected: "drop, reject or allow",
    })
}
