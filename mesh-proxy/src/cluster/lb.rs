//! Load balancers over an endpoint snapshot. Each is a pure function of the
//! snapshot and atomics, so picking never locks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Endpoint;

/// In panic mode every endpoint counts as available.
fn available(e: &Endpoint, panic: bool) -> bool {
    panic || e.is_available()
}

fn usable(e: &Endpoint, avoid: &[SocketAddr], panic: bool) -> bool {
    available(e, panic) && !avoid.contains(&e.addr)
}

/// First usable endpoint scanning from `start`; falls back to the avoided
/// one when it is the only available endpoint.
fn scan<'a>(
    endpoints: &'a [Arc<Endpoint>],
    start: usize,
    avoid: &[SocketAddr],
    panic: bool,
) -> Option<&'a Arc<Endpoint>> {
    let n = endpoints.len();
    let from = |pred: &dyn Fn(&Endpoint) -> bool| {
        (0..n)
            .map(|i| &endpoints[(start + i) % n])
            .find(|e| pred(e))
    };
    from(&|e| usable(e, avoid, panic)).or_else(|| from(&|e| available(e, panic)))
}

pub fn round_robin<'a>(
    endpoints: &'a [Arc<Endpoint>],
    next: &AtomicUsize,
    avoid: &[SocketAddr],
    panic: bool,
) -> Option<&'a Arc<Endpoint>> {
    if endpoints.is_empty() {
        return None;
    }
    let start = next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
    scan(endpoints, start, avoid, panic)
}

pub fn random<'a>(
    endpoints: &'a [Arc<Endpoint>],
    avoid: &[SocketAddr],
    panic: bool,
) -> Option<&'a Arc<Endpoint>> {
    if endpoints.is_empty() {
        return None;
    }
    scan(endpoints, fastrand::usize(..endpoints.len()), avoid, panic)
}

/// Power of two choices: the less loaded of two random usable endpoints.
pub fn least_request<'a>(
    endpoints: &'a [Arc<Endpoint>],
    avoid: &[SocketAddr],
    panic: bool,
) -> Option<&'a Arc<Endpoint>> {
    let n = endpoints.len();
    match n {
        0 => None,
        1 => scan(endpoints, 0, avoid, panic),
        _ => {
            let a = fastrand::usize(..n);
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            let (ea, eb) = (&endpoints[a], &endpoints[b]);
            match (usable(ea, avoid, panic), usable(eb, avoid, panic)) {
                (true, true) => {
                    let la = ea.active_requests.load(Ordering::Relaxed);
                    let lb = eb.active_requests.load(Ordering::Relaxed);
                    Some(if lb < la { eb } else { ea })
                }
                (true, false) => Some(ea),
                (false, true) => Some(eb),
                (false, false) => scan(endpoints, a, avoid, panic),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;

    fn set(n: u16) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| Endpoint::new(SocketAddr::from(([127, 0, 0, 1], 1000 + i))))
            .collect()
    }

    fn counts(picks: impl Iterator<Item = SocketAddr>) -> HashMap<SocketAddr, usize> {
        let mut m = HashMap::new();
        for p in picks {
            *m.entry(p).or_default() += 1;
        }
        m
    }

    #[test]
    fn round_robin_cycles_evenly() {
        let eps = set(3);
        let next = AtomicUsize::new(0);
        let c = counts((0..300).map(|_| {
            round_robin(&eps, &next, &[], false)
                .map(|e| e.addr)
                .expect("some")
        }));
        assert_eq!(c.len(), 3);
        assert!(c.values().all(|&v| v == 100), "{c:?}");
    }

    #[test]
    fn unhealthy_endpoints_are_skipped_and_avoid_is_honoured() {
        let eps = set(3);
        eps[1].health().set_for_test(false, false);
        let next = AtomicUsize::new(0);
        for _ in 0..30 {
            let e = round_robin(&eps, &next, &[eps[0].addr], false).expect("some");
            assert_eq!(e.addr, eps[2].addr);
            let r = random(&eps, &[], false).expect("some");
            assert_ne!(r.addr, eps[1].addr);
            let l = least_request(&eps, &[eps[2].addr], false).expect("some");
            assert_eq!(l.addr, eps[0].addr);
        }
    }

    #[test]
    fn avoided_endpoint_is_used_when_it_is_the_only_one() {
        let eps = set(1);
        assert!(least_request(&eps, &[eps[0].addr], false).is_some());
        assert!(round_robin(&eps, &AtomicUsize::new(0), &[eps[0].addr], false).is_some());
    }

    #[test]
    fn nothing_available_yields_none() {
        let eps = set(2);
        for e in &eps {
            e.health().set_for_test(false, false);
        }
        assert!(random(&eps, &[], false).is_none());
        assert!(least_request(&eps, &[], false).is_none());
        assert!(round_robin(&[], &AtomicUsize::new(0), &[], false).is_none());
    }

    #[test]
    fn panic_mode_uses_unavailable_endpoints_too() {
        let eps = set(2);
        for e in &eps {
            e.health().set_for_test(true, true);
        }
        assert!(random(&eps, &[], true).is_some());
        let c = counts((0..10).map(|i| {
            round_robin(&eps, &AtomicUsize::new(i), &[], true)
                .expect("some")
                .addr
        }));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let eps = set(2);
        eps[0].active_requests.store(10, Ordering::Relaxed);
        for _ in 0..50 {
            assert_eq!(
                least_request(&eps, &[], false).expect("some").addr,
                eps[1].addr
            );
        }
    }

    #[test]
    fn random_spreads_over_all_endpoints() {
        let eps = set(4);
        let c = counts((0..4000).map(|_| random(&eps, &[], false).expect("some").addr));
        assert_eq!(c.len(), 4);
        assert!(c.values().all(|&v| (700..1300).contains(&v)), "{c:?}");
    }
}
