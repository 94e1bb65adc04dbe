//! A listener's allow-list, replaceable by a reload while connections stay
//! open: HTTP connections re-check their peer on the next request, TCP
//! tunnels are told to re-check and close when no longer admitted.
//!
//! The hot path costs one atomic load per request: each connection caches
//! its verdict with the list's generation and only looks at the patterns
//! again when the generation moved.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use mesh_ca::{SpiffeId, SpiffePattern};
use tokio::sync::watch;

/// The patterns of one generation.
struct Snapshot {
    generation: u64,
    patterns: Vec<SpiffePattern>,
}

/// The current allow-list of one mutual TLS listener. An empty list admits
/// nobody (validation refuses one; `spiffe://<td>/**` admits a whole trust
/// domain).
pub struct AllowList {
    current: ArcSwap<Snapshot>,
    /// The generation of `current`, stored after it: a connection that sees
    /// the new number is sure to load the new patterns.
    generation: AtomicU64,
    /// Tells TCP tunnels a new generation exists.
    changed: watch::Sender<u64>,
}

impl AllowList {
    pub fn new(patterns: Vec<SpiffePattern>) -> Self {
        let (changed, _) = watch::channel(1);
        Self {
            current: ArcSwap::from_pointee(Snapshot {
                generation: 1,
                patterns,
            }),
            generation: AtomicU64::new(1),
            changed,
        }
    }

    /// Installs `patterns` for every connection's next check. A list equal
    /// to the current one changes nothing (no re-check, no wake-up).
    pub fn replace(&self, patterns: Vec<SpiffePattern>) {
        let now = self.current.load();
        if now.patterns == patterns {
            return;
        }
        let generation = now.generation + 1;
        self.current.store(Arc::new(Snapshot {
            generation,
            patterns,
        }));
        self.generation.store(generation, Ordering::Release);
        self.changed.send_replace(generation);
    }

    /// Whether the current list admits `id`.
    pub fn admits(&self, id: &SpiffeId) -> bool {
        self.verdict(Some(id)).1
    }

    /// The current generation and whether it admits `id` (nobody without
    /// an identity).
    fn verdict(&self, id: Option<&SpiffeId>) -> (u64, bool) {
        let now = self.current.load();
        let ok = id.is_some_and(|id| now.patterns.iter().any(|p| p.matches(id)));
        (now.generation, ok)
    }

    /// Resolves each time a reload installs another list.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// One connection's peer against its listener's [`AllowList`], with the
/// verdict cached for the generation it was computed for.
pub struct Admission {
    allow: Arc<AllowList>,
    peer: Option<SpiffeId>,
    /// `generation << 1 | verdict`; 0 = not computed yet.
    cached: AtomicU64,
}

impl Admission {
    pub fn new(allow: Arc<AllowList>, peer: Option<SpiffeId>) -> Self {
        Self {
            allow,
            peer,
            cached: AtomicU64::new(0),
        }
    }

    /// Whether the listener's current allow-list admits the peer. One
    /// atomic load while the list is unchanged.
    pub fn is_allowed(&self) -> bool {
        let generation = self.allow.generation.load(Ordering::Acquire);
        let cached = self.cached.load(Ordering::Relaxed);
        if cached >> 1 == generation {
            return cached & 1 == 1;
        }
        let (generation, ok) = self.allow.verdict(self.peer.as_ref());
        self.cached
            .store(generation << 1 | u64::from(ok), Ordering::Relaxed);
        ok
    }

    /// The peer this admission is for (`None`: no client certificate).
    pub fn peer(&self) -> Option<&SpiffeId> {
        self.peer.as_ref()
    }

    /// Resolves once a reload made the listener stop admitting the peer.
    pub async fn revoked(&self) {
        let mut changed = self.allow.subscribe();
        loop {
            if !self.is_allowed() {
                return;
            }
            if changed.changed().await.is_err() {
                // The list is gone with its listener: nothing can revoke.
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<SpiffePattern> {
        list.iter()
            .map(|p| SpiffePattern::parse(p).unwrap())
            .collect()
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn an_empty_list_admits_nobody() {
        let allow = Arc::new(AllowList::new(Vec::new()));
        assert!(!allow.admits(&id("spiffe://mesh.local/web")));
        assert!(!Admission::new(allow, Some(id("spiffe://mesh.local/web"))).is_allowed());
    }

    #[test]
    fn a_replaced_list_applies_to_the_next_check_of_an_open_connection() {
        let allow = Arc::new(AllowList::new(patterns(&[
            "spiffe://mesh.local/web",
            "spiffe://mesh.local/api",
        ])));
        let web = Admission::new(Arc::clone(&allow), Some(id("spiffe://mesh.local/web")));
        let api = Admission::new(Arc::clone(&allow), Some(id("spiffe://mesh.local/api")));
        let anonymous = Admission::new(Arc::clone(&allow), None);
        assert!(web.is_allowed() && api.is_allowed() && !anonymous.is_allowed());
        allow.replace(patterns(&["spiffe://mesh.local/api"]));
        assert!(!web.is_allowed());
        assert!(api.is_allowed());
        allow.replace(patterns(&["spiffe://mesh.local/**"]));
        assert!(web.is_allowed() && api.is_allowed() && !anonymous.is_allowed());
    }

    #[test]
    fn an_equal_list_keeps_the_generation() {
        let allow = AllowList::new(patterns(&["spiffe://mesh.local/web"]));
        allow.replace(patterns(&["spiffe://mesh.local/web"]));
        assert_eq!(allow.generation.load(Ordering::Relaxed), 1);
        allow.replace(patterns(&["spiffe://mesh.local/api"]));
        assert_eq!(allow.generation.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn revoked_resolves_only_when_the_peer_is_dropped_from_the_list() {
        let allow = Arc::new(AllowList::new(patterns(&[
            "spiffe://mesh.local/web",
            "spiffe://mesh.local/api",
        ])));
        let web = Admission::new(Arc::clone(&allow), Some(id("spiffe://mesh.local/web")));
        let api = Admission::new(Arc::clone(&allow), Some(id("spiffe://mesh.local/api")));
        let web_revoked = web.revoked();
        let api_revoked = api.revoked();
        tokio::pin!(web_revoked, api_revoked);
        let idle = tokio::time::timeout(std::time::Duration::from_secs(1), &mut web_revoked);
        assert!(idle.await.is_err(), "revoked before any reload");
        allow.replace(patterns(&["spiffe://mesh.local/api"]));
        let done = tokio::time::timeout(std::time::Duration::from_secs(1), &mut web_revoked);
        assert!(done.await.is_ok(), "web still admitted after the reload");
        let api_done = tokio::time::timeout(std::time::Duration::from_secs(1), &mut api_revoked);
        assert!(api_done.await.is_err(), "api was revoked too");
    }
}
