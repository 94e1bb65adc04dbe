//! `listeners[*].routes[*].retry` — conditions, backoff, budget, methods.

use std::time::Duration;

use http::{Method, StatusCode};

use super::super::model::*;
use super::super::raw::RetryConfig;
use super::{Ctx, index, join, values};

const DEFAULT_BACKOFF: BackoffSpec = BackoffSpec {
    base: Duration::from_millis(25),
    max: Duration::from_millis(250),
};
const DEFAULT_BUDGET: RetryBudgetSpec = RetryBudgetSpec {
    ratio: 0.2,
    min_per_second: 10,
};

/// The `on` words; `retriable-status-codes` is recorded as the non-empty
/// `retriable_status_codes` list rather than a flag.
const CONDITIONS: &[&str] = &[
    "connect-failure",
    "refused-stream",
    "reset",
    "gateway-error",
    "5xx",
    "retriable-status-codes",
];

/// Without `on`, retry only what never reached the upstream.
const DEFAULT_ON: RetryOn = RetryOn {
    connect_failure: true,
    refused_stream: true,
    reset: false,
    gateway_error: false,
    server_error: false,
};

pub(super) fn retry(cx: &mut Ctx<'_>, at: &str, raw: RetryConfig) -> RetrySpec {
    let (on, wants_codes) = match &raw.on {
        None => (DEFAULT_ON, false),
        Some(words) => conditions(cx, &join(at, "on"), words),
    };
    let codes: Vec<StatusCode> = raw
        .retriable_status_codes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, code)| {
            cx.check(
                &index(&join(at, "retriable_status_codes"), i),
                values::status(*code),
            )
        })
        .collect();
    let codes_given = raw
        .retriable_status_codes
        .as_ref()
        .is_some_and(|c| !c.is_empty());
    if wants_codes && !codes_given {
        cx.error(
            &join(at, "retriable_status_codes"),
            "on includes retriable-status-codes: list the codes here",
        );
    }
    if codes_given && !wants_codes {
        cx.error(
            &join(at, "retriable_status_codes"),
            "these codes are used only when on includes retriable-status-codes",
        );
    }
    let per_try = cx.duration(
        at,
        "per_try_timeout",
        raw.per_try_timeout.as_ref(),
        Duration::ZERO,
    );
    RetrySpec {
        attempts: raw.attempts.unwrap_or(0),
        on,
        retriable_status_codes: codes,
        per_try_timeout: (!per_try.is_zero()).then_some(per_try),
        backoff: backoff(cx, &join(at, "backoff"), &raw),
        budget: budget(cx, &join(at, "budget"), &raw),
        methods: methods(cx, &join(at, "methods"), raw.methods.as_deref()),
    }
}

/// Parsed `on`, and whether it asks for `retriable-status-codes`.
fn conditions(cx: &mut Ctx<'_>, at: &str, words: &[String]) -> (RetryOn, bool) {
    let mut on = RetryOn::default();
    let mut wants_codes = false;
    for (i, word) in words.iter().enumerate() {
        let options: Vec<(&str, usize)> = CONDITIONS
            .iter()
            .enumerate()
            .map(|(n, c)| (*c, n))
            .collect();
        match cx.check(
            &index(at, i),
            values::one_of("retry condition", word, &options),
        ) {
            Some(0) => on.connect_failure = true,
            Some(1) => on.refused_stream = true,
            Some(2) => on.reset = true,
            Some(3) => on.gateway_error = true,
            Some(4) => on.server_error = true,
            Some(_) => wants_codes = true,
            None => {}
        }
    }
    (on, wants_codes)
}

fn backoff(cx: &mut Ctx<'_>, at: &str, raw: &RetryConfig) -> BackoffSpec {
    let Some(backoff) = &raw.backoff else {
        return DEFAULT_BACKOFF;
    };
    let base = cx.positive_duration(at, "base", backoff.base.as_ref(), DEFAULT_BACKOFF.base);
    let max = cx.positive_duration(
        at,
        "max",
        backoff.max.as_ref(),
        DEFAULT_BACKOFF.max.max(base),
    );
    if base > max {
        cx.error(
            &join(at, "base"),
            format!(
                "base {} is larger than max {}",
                humantime::format_duration(base),
                humantime::format_duration(max)
            ),
        );
    }
    BackoffSpec { base, max }
}

fn budget(cx: &mut Ctx<'_>, at: &str, raw: &RetryConfig) -> RetryBudgetSpec {
    let Some(budget) = &raw.budget else {
        return DEFAULT_BUDGET;
    };
    let ratio = budget.ratio.unwrap_or(DEFAULT_BUDGET.ratio);
    if !(0.0..=1.0).contains(&ratio) {
        cx.error(
            &join(at, "ratio"),
            format!("{ratio} is out of range: expected 0.0 to 1.0"),
        );
    }
    RetryBudgetSpec {
        ratio,
        min_per_second: budget
            .min_per_second
            .unwrap_or(DEFAULT_BUDGET.min_per_second),
    }
}

/// Default: the idempotent methods of RFC 9110 §9.2.2.
fn methods(cx: &mut Ctx<'_>, at: &str, raw: Option<&[String]>) -> Vec<Method> {
    match raw {
        None => vec![
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
            Method::TRACE,
        ],
        Some(words) => words
            .iter()
            .enumerate()
            .filter_map(|(i, m)| cx.check(&index(at, i), values::method(m)))
            .collect(),
    }
}
