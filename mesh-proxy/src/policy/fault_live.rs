//! Live fault overrides (SPEC §8, admin `POST /fault`): a fault installed
//! on a route by its id `<listener>/<route name>` for a TTL, without
//! touching the config file.
//!
//! One [`FaultOverrides`] registry per process, shared by the admin API
//! (which installs, lists and clears) and every route table (which reads).
//! While an override is active it replaces the route's own `fault:` whole
//! (its `from:` and `headers:` too). It reverts by itself: a timer removes
//! it at expiry, and a read never honours an expired one. Keyed by route
//! id, overrides outlive a config reload while the id exists.
//!
//! The request path pays one relaxed load while no override is active;
//! with some active, a lock-free snapshot read and a map lookup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use super::fault::{FaultAbort, FaultDelay};

/// The longest TTL an override may have.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// The TTL when none is given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// An override on one route.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
    pub expires: Instant,
    /// Tells a later install on the same route from this one, so this
    /// one's timer does not remove it.
    generation: u64,
}

impl Override {
    /// The time left before it reverts (zero once expired).
    pub fn time_left(&self) -> Duration {
        self.expires.saturating_duration_since(Instant::now())
    }
}

type Table = HashMap<Arc<str>, Override>;

/// The active overrides of this process.
#[derive(Debug, Default)]
pub struct FaultOverrides {
    /// How many overrides are installed (the request path's only read
    /// while it is 0).
    active: AtomicUsize,
    current: ArcSwap<Table>,
    /// Serializes writers.
    write: Mutex<Writer>,
}

/// What only writers touch: the last generation handed out, and each
/// override's expiry timer (replacing or clearing an override stops its
/// timer, so installs cannot pile up sleeping tasks).
#[derive(Debug, Default)]
struct Writer {
    generation: u64,
    timers: HashMap<Arc<str>, tokio::task::AbortHandle>,
}

impl FaultOverrides {
    /// Installs (or replaces) the override of `route` for `ttl`; a timer
    /// removes it then. Needs a tokio runtime.
    pub fn install(
        self: &Arc<Self>,
        route: &str,
        delay: Option<FaultDelay>,
        abort: Option<FaultAbort>,
        ttl: Duration,
    ) -> Override {
        let route: Arc<str> = Arc::from(route);
        let registry: Weak<Self> = Arc::downgrade(self);
        let installed = self.update(|table, writer| {
            writer.generation += 1;
            let o = Override {
                delay,
                abort,
                expires: crate::body::deadline_after(ttl),
                generation: writer.generation,
            };
            table.insert(Arc::clone(&route), o.clone());
            let timer = tokio::spawn(expire(
                registry,
                Arc::clone(&route),
                o.expires,
                o.generation,
            ));
            if let Some(old) = writer
                .timers
                .insert(Arc::clone(&route), timer.abort_handle())
            {
                old.abort();
            }
            o
        });
        tracing::info!(%route, ?ttl, ?delay, ?abort, "fault override installed");
        installed
    }

    /// Removes the override of `route`; whether there was one.
    pub fn clear(&self, route: &str) -> bool {
        let removed = self.update(|table, writer| {
            if let Some(timer) = writer.timers.remove(route) {
                timer.abort();
            }
            table.remove(route).is_some()
        });
        if removed {
            tracing::info!(%route, "fault override cleared");
        }
        removed
    }

    /// Keeps only the overrides whose route id `keep` accepts (after a
    /// reload: those whose route is still the one they were installed on).
    pub(crate) fn retain(&self, keep: impl Fn(&str) -> bool) {
        let dropped = self.update(|table, writer| {
            let gone: Vec<Arc<str>> = table.keys().filter(|r| !keep(r)).cloned().collect();
            for route in &gone {
                table.remove(route);
                if let Some(timer) = writer.timers.remove(route) {
                    timer.abort();
                }
            }
            gone
        });
        for route in dropped {
            tracing::warn!(%route, "fault override dropped: the reload removed or moved its route (name a route to keep its overrides across reloads)");
        }
    }

    /// The overrides not yet expired, by route id.
    pub fn list(&self) -> Vec<(Arc<str>, Override)> {
        let now = Instant::now();
        let mut out: Vec<(Arc<str>, Override)> = self
            .current
            .load()
            .iter()
            .filter(|(_, o)| o.expires > now)
            .map(|(r, o)| (Arc::clone(r), o.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether any override is installed: one relaxed load.
    pub(crate) fn is_any_active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// The active override of `route`, if any.
    pub(crate) fn get(&self, route: &str) -> Option<(Option<FaultDelay>, Option<FaultAbort>)> {
        if !self.is_any_active() {
            return None;
        }
        let table = self.current.load();
        let o = table.get(route)?;
        (o.expires > Instant::now()).then_some((o.delay, o.abort))
    }

    /// Copies the table, changes the copy and publishes it.
    fn update<T>(&self, change: impl FnOnce(&mut Table, &mut Writer) -> T) -> T {
        let mut writer = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut table = Table::clone(&self.current.load());
        let out = change(&mut table, &mut writer);
        self.active.store(table.len(), Ordering::Relaxed);
        self.current.store(Arc::new(table));
        out
    }
}

/// Removes the override `generation` of `route` when it expires (a later
/// install on the route aborts this timer and starts its own).
async fn expire(
    registry: Weak<FaultOverrides>,
    route: Arc<str>,
    expires: Instant,
    generation: u64,
) {
    tokio::time::sleep_until(expires).await;
    let Some(registry) = registry.upgrade() else {
        return;
    };
    let removed = registry.update(|table, writer| match table.get(&route) {
        Some(o) if o.generation == generation => {
            writer.timers.remove(&route);
            table.remove(&route).is_some()
        }
        _ => false,
    });
    if removed {
        tracing::info!(%route, "fault override expired; the route's own config applies again");
    }
}

/// A route's handle on the registry: its id there.
#[derive(Debug)]
pub(crate) struct LiveFault {
    registry: Arc<FaultOverrides>,
    route: Arc<str>,
}

impl LiveFault {
    pub(crate) fn new(registry: Arc<FaultOverrides>, route: Arc<str>) -> Self {
        Self { registry, route }
    }

    pub(crate) fn could_apply(&self) -> bool {
        self.registry.is_any_active()
    }

    pub(crate) fn current(&self) -> Option<(Option<FaultDelay>, Option<FaultAbort>)> {
        self.registry.get(&self.route)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn abort(status: u16) -> Option<FaultAbort> {
        Some(FaultAbort {
            status: http::StatusCode::from_u16(status).unwrap(),
            grpc_status: None,
            percent: 100.0,
        })
    }

    /// Replacing or clearing an override stops its expiry timer: a local
    /// caller looping on `POST /fault` cannot pile up sleeping tasks.
    #[tokio::test(start_paused = true)]
    async fn replaced_and_cleared_overrides_leave_no_timer_behind() {
        let reg = Arc::new(FaultOverrides::default());
        let metrics = tokio::runtime::Handle::current().metrics();
        let base = metrics.num_alive_tasks();
        // Aborted tasks are reaped when the scheduler runs: yield until
        // the count is the expected one, at most 10,000 times.
        let alive = |expected: usize| {
            let metrics = metrics.clone();
            async move {
                for _ in 0..10_000 {
                    if metrics.num_alive_tasks() - base == expected {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                metrics.num_alive_tasks() - base
            }
        };
        for _ in 0..200 {
            reg.install("edge/live", None, abort(503), MAX_TTL);
        }
        reg.install("edge/other", None, abort(503), MAX_TTL);
        assert_eq!(alive(2).await, 2, "one timer per route");
        assert!(reg.clear("edge/live"));
        assert_eq!(alive(1).await, 1);
        reg.retain(|route| route != "edge/other");
        assert_eq!(alive(0).await, 0);
        assert_eq!(reg.list(), []);
        assert!(!reg.is_any_active());
    }

    #[tokio::test(start_paused = true)]
    async fn an_override_reverts_by_itself_after_its_ttl() {
        let reg = Arc::new(FaultOverrides::default());
        assert!(!reg.is_any_active());
        reg.install("edge/live", None, abort(503), Duration::from_secs(2));
        assert!(reg.is_any_active());
        assert_eq!(reg.get("edge/live"), Some((None, abort(503))));
        assert_eq!(reg.get("edge/other"), None);
        tokio::time::sleep(Duration::from_millis(1999)).await;
        assert_eq!(reg.list().len(), 1);
        assert_eq!(reg.list()[0].1.time_left(), Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(2)).await;
        tokio::task::yield_now().await;
        assert_eq!(reg.list(), []);
        assert_eq!(reg.get("edge/live"), None);
        assert!(!reg.is_any_active(), "the timer removed it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_replaced_override_keeps_its_own_ttl_and_clear_removes_it() {
        let reg = Arc::new(FaultOverrides::default());
        reg.install("edge/live", None, abort(503), Duration::from_secs(1));
        reg.install("edge/live", None, abort(500), Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(2)).await;
        tokio::task::yield_now().await;
        assert_eq!(reg.get("edge/live"), Some((None, abort(500))));
        assert!(reg.clear("edge/live"));
        assert!(!reg.clear("edge/live"));
        assert!(!reg.is_any_active());
    }
}
