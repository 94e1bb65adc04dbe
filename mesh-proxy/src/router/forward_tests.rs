//! The retry loop against a scripted fake upstream, under paused time:
//! each retry condition, the per-try timeout, the retry breaker and the
//! budget, backoff bounds, and what may be sent again.

use std::collections::VecDeque;
use std::sync::Mutex;

use http::{Method, StatusCode};
use tokio::time::Instant;

use super::*;
use crate::cluster::UpstreamErrorKind;
use crate::config::{RetryBudgetSpec, RetryOn};

/// What the fake upstream does with one attempt.
#[derive(Debug, Clone, Copy)]
enum Step {
    Answer(u16),
    /// Fails; `unsent` hands the request back (nothing reached the upstream).
    Fail(UpstreamErrorKind, bool),
    /// Never answers.
    Hang,
}

struct Fake {
    endpoints: Vec<SocketAddr>,
    script: Mutex<VecDeque<Step>>,
    /// (endpoint, method, when) of every attempt, in order.
    sent: Mutex<Vec<(SocketAddr, Method, Instant)>>,
    recorded: Mutex<Vec<Outcome>>,
    stats: ClusterStats,
    max_retries: u64,
}

impl Fake {
    fn new(endpoints: usize, script: &[Step]) -> Self {
        Self {
            endpoints: (1..=endpoints)
                .map(|i| SocketAddr::from(([127, 0, 0, i as u8], 8080)))
                .collect(),
            script: Mutex::new(script.iter().copied().collect()),
            sent: Mutex::new(Vec::new()),
            recorded: Mutex::new(Vec::new()),
            stats: ClusterStats::default(),
            max_retries: 3,
        }
    }

    fn sent_to(&self) -> Vec<SocketAddr> {
        self.sent
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.0)
            .collect()
    }

    fn count(&self, counter: &std::sync::atomic::AtomicU64) -> u64 {
        let _ = self;
        counter.load(Ordering::Relaxed)
    }
}

impl Upstream for Fake {
    type Endpoint = SocketAddr;
    type Body = ();

    fn name(&self) -> &str {
        "fake"
    }

    fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    fn max_retries(&self) -> u64 {
        self.max_retries
    }

    fn pick(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        let fresh = self.endpoints.iter().find(|e| !tried.contains(e));
        fresh.or(self.endpoints.first()).copied()
    }

    fn addr(endpoint: &SocketAddr) -> SocketAddr {
        *endpoint
    }

    async fn send(
        &self,
        endpoint: &SocketAddr,
        req: Request<RequestBody>,
    ) -> Result<Response<()>, SendError> {
        let step = self
            .script
            .lock()
            .expect("lock")
            .pop_front()
            .expect("an attempt beyond the script");
        self.sent
            .lock()
            .expect("lock")
            .push((*endpoint, req.method().clone(), Instant::now()));
        match step {
            Step::Answer(code) => Ok(Response::builder().status(code).body(()).expect("response")),
            Step::Fail(kind, unsent) => {
                let mut error = UpstreamError::overflow(*endpoint, "scripted");
                error.kind = kind;
                Err(SendError {
                    error,
                    request: unsent.then_some(req),
                })
            }
            Step::Hang => std::future::pending().await,
        }
    }

    fn record(&self, _endpoint: &SocketAddr, outcome: &Classified) {
        self.recorded.lock().expect("lock").push(outcome.outcome);
        super::super::upstream::record_stats(&self.stats, outcome);
    }
}

fn policy(on: RetryOn, attempts: u32) -> RetryPolicy {
    let mut p = crate::resilience::retry::test_policy(on, &[409]);
    p.spec.attempts = attempts;
    p
}

fn all() -> RetryOn {
    RetryOn {
        connect_failure: true,
        refused_stream: true,
        reset: true,
        gateway_error: true,
        server_error: false,
    }
}

fn request(method: Method) -> (Parts, RequestBody) {
    let (parts, ()) = Request::builder()
        .method(method)
        .uri("/x")
        .body(())
        .expect("request")
        .into_parts();
    (parts, RequestBody::Empty)
}

async fn run(policy: Option<&RetryPolicy>, fake: &Fake, method: Method) -> Forwarded<()> {
    let (parts, body) = request(method);
    forward(policy, fake, parts, body).await
}

fn status(f: &Forwarded<()>) -> Option<u16> {
    f.result.as_ref().ok().map(|r| r.status().as_u16())
}

#[tokio::test(start_paused = true)]
async fn each_condition_is_retried_on_another_endpoint() {
    use UpstreamErrorKind::*;
    let cases = [
        (
            Step::Answer(503),
            Outcome::Status(StatusCode::SERVICE_UNAVAILABLE),
        ),
        (Step::Answer(409), Outcome::Status(StatusCode::CONFLICT)),
        (
            Step::Fail(ConnectFailure, true),
            Outcome::Failed(ConnectFailure),
        ),
        (
            Step::Fail(RefusedStream, true),
            Outcome::Failed(RefusedStream),
        ),
        (Step::Fail(Reset, false), Outcome::Failed(Reset)),
        (Step::Fail(Protocol, false), Outcome::Failed(Protocol)),
    ];
    for (first, outcome) in cases {
        let fake = Fake::new(2, &[first, Step::Answer(200)]);
        let p = policy(all(), 2);
        let f = run(Some(&p), &fake, Method::GET).await;
        assert_eq!(status(&f), Some(200), "{first:?}");
        assert_eq!(
            (f.attempts, f.retries.as_slice()),
            (2, &[outcome][..]),
            "{first:?}"
        );
        let to = fake.sent_to();
        assert_ne!(
            to[0], to[1],
            "{first:?}: the retry went to the same endpoint"
        );
        assert_eq!(fake.count(&fake.stats.upstream_rq_retry), 1);
        assert_eq!(fake.count(&fake.stats.upstream_rq_total), 2);
        assert_eq!(
            fake.recorded.lock().expect("lock").len(),
            2,
            "every attempt is recorded"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_outcome_outside_the_conditions_is_the_answer() {
    let fake = Fake::new(2, &[Step::Answer(500)]);
    let p = policy(all(), 2);
    let f = run(Some(&p), &fake, Method::GET).await;
    assert_eq!(
        (status(&f), f.attempts),
        (Some(500), 1),
        "500 is not a gateway error"
    );
    let fake = Fake::new(2, &[Step::Fail(UpstreamErrorKind::Reset, false)]);
    let only_connect = RetryOn {
        connect_failure: true,
        ..RetryOn::default()
    };
    let p = policy(only_connect, 2);
    let f = run(Some(&p), &fake, Method::GET).await;
    assert_eq!(f.attempts, 1);
    assert!(
        matches!(f.result, Err(ProxyError::Upstream(ref e)) if e.kind == UpstreamErrorKind::Reset)
    );
}

#[tokio::test(start_paused = true)]
async fn attempts_stop_at_the_policy_count_with_the_last_answer() {
    let fake = Fake::new(3, &[Step::Answer(503); 3]);
    let p = policy(all(), 2);
    let f = run(Some(&p), &fake, Method::GET).await;
    assert_eq!((status(&f), f.attempts), (Some(503), 3));
    assert_eq!(fake.count(&fake.stats.upstream_rq_class[4]), 3);
    assert!(fake.script.lock().expect("lock").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_hung_attempt_ends_at_the_per_try_timeout_and_is_retried() {
    let fake = Fake::new(2, &[Step::Hang, Step::Answer(200)]);
    let mut p = policy(all(), 1);
    p.spec.per_try_timeout = Some(Duration::from_millis(100));
    let start = Instant::now();
    let f = run(Some(&p), &fake, Method::GET).await;
    assert_eq!((status(&f), f.attempts), (Some(200), 2));
    assert_eq!(f.retries, [Outcome::PerTryTimeout]);
    let second = fake.sent.lock().expect("lock")[1].2;
    let waited = second - start;
    assert!(
        waited >= Duration::from_millis(100),
        "retried after {waited:?}"
    );
    assert!(
        waited <= Duration::from_millis(100 + 25),
        "per-try 100ms + backoff ≤ 25ms, got {waited:?}"
    );
    assert_eq!(fake.count(&fake.stats.upstream_rq_per_try_timeout), 1);

    // The last attempt timing out is answered as a timeout.
    let fake = Fake::new(2, &[Step::Hang, Step::Hang]);
    let f = run(Some(&p), &fake, Method::GET).await;
    assert!(matches!(f.result, Err(ProxyError::Timeout(t)) if t == Duration::from_millis(100)));
    assert_eq!(fake.count(&fake.stats.upstream_rq_per_try_timeout), 2);
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_or_a_full_breaker_skips_the_retry_and_counts_it() {
    let fake = Fake::new(2, &[Step::Answer(503)]);
    let mut p = policy(all(), 2);
    p.budget = crate::resilience::RetryBudget::new(RetryBudgetSpec {
        ratio: 0.0,
        min_per_second: 0,
    });
    let f = run(Some(&p), &fake, Method::GET).await;
    assert_eq!((status(&f), f.attempts), (Some(503), 1));
    assert_eq!(
        fake.count(&fake.stats.upstream_rq_retry_budget_exhausted),
        1
    );
    assert_eq!(
        fake.count(&fake.stats.upstream_retries_active),
        0,
        "a refused retry holds no slot"
    );

    let mut fake = Fake::new(2, &[Step::Answer(503)]);
    fake.max_retries = 0;
    let p = policy(all(), 2);
    let f = run(Some(&p), &fake, Method::GET).await;
    assert_eq!(f.attempts, 1);
    assert_eq!(fake.count(&fake.stats.upstream_rq_retry_overflow), 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_between_tries_stays_within_its_exponential_ceiling() {
    for _ in 0..20 {
        let fake = Fake::new(
            2,
            &[
                Step::Answer(503),
                Step::Answer(503),
                Step::Answer(503),
                Step::Answer(200),
            ],
        );
        let p = policy(all(), 3);
        let f = run(Some(&p), &fake, Method::GET).await;
        assert_eq!((status(&f), f.attempts), (Some(200), 4));
        let at: Vec<Instant> = fake
            .sent
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.2)
            .collect();
        for (i, ceiling) in [25u64, 50, 100].into_iter().enumerate() {
            let gap = at[i + 1] - at[i];
            assert!(
                gap <= Duration::from_millis(ceiling),
                "gap {i}: {gap:?} > {ceiling}ms"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_non_idempotent_request_is_resent_only_when_nothing_reached_the_upstream() {
    // A reset after sending: the POST may have been processed.
    let fake = Fake::new(2, &[Step::Fail(UpstreamErrorKind::Reset, false)]);
    let p = policy(all(), 2);
    let f = run(Some(&p), &fake, Method::POST).await;
    assert_eq!(
        f.attempts, 1,
        "a POST that reached the upstream was sent again"
    );
    // Connect failure: the request came back unsent, so it goes again.
    let fake = Fake::new(
        2,
        &[
            Step::Fail(UpstreamErrorKind::ConnectFailure, true),
            Step::Answer(201),
        ],
    );
    let f = run(Some(&p), &fake, Method::POST).await;
    assert_eq!((status(&f), f.attempts), (Some(201), 2));
    let methods: Vec<Method> = fake
        .sent
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.1.clone())
        .collect();
    assert_eq!(methods, [Method::POST, Method::POST]);
    // Refused stream after the body was taken: still never processed.
    let fake = Fake::new(
        2,
        &[
            Step::Fail(UpstreamErrorKind::RefusedStream, false),
            Step::Answer(201),
        ],
    );
    let f = run(Some(&p), &fake, Method::POST).await;
    assert_eq!((status(&f), f.attempts), (Some(201), 2));
}

#[tokio::test(start_paused = true)]
async fn without_a_policy_there_is_one_attempt_and_no_endpoint_is_uh() {
    let fake = Fake::new(1, &[Step::Answer(503)]);
    let f = run(None, &fake, Method::GET).await;
    assert_eq!((status(&f), f.attempts), (Some(503), 1));
    let empty = Fake::new(0, &[]);
    let f = run(None, &empty, Method::GET).await;
    assert!(matches!(
        f.result,
        Err(ProxyError::NoHealthyUpstream { .. })
    ));
}

#[test]
fn retry_slots_are_capped_and_released_exactly_once() {
    let stats = ClusterStats::default();
    let active = || stats.upstream_retries_active.load(Ordering::Relaxed);
    let a = RetrySlot::try_take(&stats, 2).expect("first slot");
    let b = RetrySlot::try_take(&stats, 2).expect("second slot");
    assert!(RetrySlot::try_take(&stats, 2).is_none(), "max_retries is 2");
    assert_eq!(active(), 2, "a refused slot must not touch the count");
    drop(a);
    assert_eq!(active(), 1);
    let c = RetrySlot::try_take(&stats, 2).expect("a released slot is reusable");
    drop((b, c));
    assert_eq!(active(), 0);
}
