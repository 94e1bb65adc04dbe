//! Authorization of a `tcp` listener (SPEC §7): decided once per
//! connection, after the handshake, from the caller alone (validation
//! allows only `from:` there). A reload replaces the policy in place:
//! tunnels it no longer admits are told and close.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use mesh_ca::SpiffeId;
use tokio::sync::watch;

use super::authz::{AuditSeen, AuthzSpec, Decision, Mode};

/// The current policy of one `tcp` listener (`None`: no `authz:`, everyone
/// the handshake let in is admitted) and what it decided.
#[derive(Debug)]
pub struct TcpAuthz {
    listener: String,
    current: ArcSwapOption<AuthzSpec>,
    /// Bumped by each [`TcpAuthz::replace`]; open tunnels re-check then.
    changed: watch::Sender<u64>,
    /// Connections allowed, by rule name (`-`: the default); by name, as
    /// a reload may reorder or rename the rules.
    allowed: Mutex<Vec<(Arc<str>, u64)>>,
    denied: AtomicU64,
    would_deny: AtomicU64,
    revoked: AtomicU64,
    audited: AuditSeen<String>,
}

impl TcpAuthz {
    pub fn new(listener: &str, spec: Option<AuthzSpec>) -> Self {
        Self {
            listener: listener.to_owned(),
            current: ArcSwapOption::from_pointee(spec),
            changed: watch::channel(0).0,
            allowed: Mutex::new(Vec::new()),
            denied: AtomicU64::new(0),
            would_deny: AtomicU64::new(0),
            revoked: AtomicU64::new(0),
            audited: AuditSeen::default(),
        }
    }

    /// Installs a reloaded policy; open tunnels re-check their caller.
    pub fn replace(&self, spec: Option<AuthzSpec>) {
        self.current.store(spec.map(Arc::new));
        self.changed.send_modify(|g| *g += 1);
    }

    /// Whether the listener has `authz` now.
    pub fn is_configured(&self) -> bool {
        self.current.load().is_some()
    }

    /// What the current policy says of `caller`, and its mode. `None`: no
    /// policy.
    fn decide(&self, caller: Option<&SpiffeId>) -> Option<(Decision, Mode)> {
        let spec = self.current.load();
        let spec = spec.as_deref()?;
        Some((spec.admits_caller(caller), spec.mode))
    }

    /// Whether the current policy denies `caller` and closes its tunnels.
    fn closes(&self, caller: Option<&SpiffeId>) -> bool {
        self.decide(caller)
            .is_some_and(|(d, mode)| !d.allowed && mode == Mode::Enforce)
    }

    fn count_allowed(&self, rule: Option<Arc<str>>) {
        let rule = rule.unwrap_or_else(|| Arc::from("-"));
        let mut allowed = self.allowed.lock().unwrap_or_else(|p| p.into_inner());
        match allowed.iter_mut().find(|(name, _)| *name == rule) {
            Some((_, n)) => *n += 1,
            None => allowed.push((rule, 1)),
        }
    }

    /// Decides a new connection from `caller`: a denial is logged and
    /// counted, and closes it in enforce mode; audit mode lets it through.
    pub fn admit(&self, caller: Option<&SpiffeId>, peer: std::net::SocketAddr) -> bool {
        let who = caller_name(caller);
        match self.decide(caller) {
            None => true,
            Some((d, _)) if d.allowed => {
                self.count_allowed(d.rule);
                true
            }
            Some((_, Mode::Audit)) => {
                self.would_deny.fetch_add(1, Ordering::Relaxed);
                if !self.audited.first_in_a_while(who.clone()) {
                    return true;
                }
                tracing::warn!(listener = %self.listener, %peer, caller = %who, "authz audit: would deny tcp connection: no rule admits {who} (mode: audit lets it through)");
                true
            }
            Some((_, Mode::Enforce)) => {
                self.denied.fetch_add(1, Ordering::Relaxed);
                tracing::info!(listener = %self.listener, %peer, caller = %who, "authz: tcp connection closed: no rule admits {who}");
                false
            }
        }
    }

    /// Resolves once a reload installed a policy that denies `caller`
    /// (enforce mode), logged and counted: the tunnel then closes.
    pub async fn revoked(&self, caller: Option<&SpiffeId>, peer: std::net::SocketAddr) {
        let mut changed = self.changed.subscribe();
        // Checked first too: a reload between `admit` and here counts.
        while !self.closes(caller) {
            if changed.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
        self.revoked.fetch_add(1, Ordering::Relaxed);
        let who = caller_name(caller);
        tracing::info!(listener = %self.listener, %peer, caller = %who, "tcp connection closed: authz no longer admits {who} after a reload");
    }

    /// Named as a route's authz counters: `authz.allowed.<rule>` (`-` for
    /// the default), `authz.denied`, `authz.would_deny`.
    pub fn counters(&self, visit: &mut dyn FnMut(&str, u64)) {
        let allowed = self.allowed.lock().unwrap_or_else(|p| p.into_inner());
        for (rule, n) in allowed.iter() {
            visit(&format!("authz.allowed.{rule}"), *n);
        }
        drop(allowed);
        visit("authz.denied", self.denied.load(Ordering::Relaxed));
        visit("authz.would_deny", self.would_deny.load(Ordering::Relaxed));
    }

    /// Open tunnels closed because a reload stopped admitting their caller.
    pub fn revoked_count(&self) -> u64 {
        self.revoked.load(Ordering::Relaxed)
    }
}

fn caller_name(caller: Option<&SpiffeId>) -> String {
    caller.map_or_else(|| "unauthenticated".to_owned(), |id| id.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use mesh_ca::SpiffePattern;

    use super::super::authz::{Caller, Rule};
    use super::*;
    use std::time::Duration;

    use crate::policy::authz::AUDIT_EVERY;

    fn spec(mode: Mode, from: &[&str]) -> AuthzSpec {
        AuthzSpec {
            mode,
            default_allow: false,
            rules: vec![Rule {
                name: "r".into(),
                from: from
                    .iter()
                    .map(|p| Caller::Id(SpiffePattern::parse(p).unwrap()))
                    .collect(),
                methods: Vec::new(),
                paths: Vec::new(),
                headers: Vec::new(),
            }],
        }
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn addr() -> std::net::SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn enforce_closes_audit_admits_and_both_count() {
        let web = id("spiffe://mesh.local/web");
        let ops = id("spiffe://mesh.local/ops");
        let authz = TcpAuthz::new(
            "db",
            Some(spec(Mode::Enforce, &["spiffe://mesh.local/web"])),
        );
        assert!(authz.admit(Some(&web), addr()));
        assert!(!authz.admit(Some(&ops), addr()));
        assert!(!authz.admit(None, addr()));
        authz.replace(Some(spec(Mode::Audit, &["spiffe://mesh.local/web"])));
        assert!(authz.admit(Some(&ops), addr()));
        let mut seen = Vec::new();
        authz.counters(&mut |n, v| seen.push((n.to_owned(), v)));
        let get = |n: &str| seen.iter().find(|(k, _)| k == n).unwrap().1;
        assert_eq!(
            (
                get("authz.allowed.r"),
                get("authz.denied"),
                get("authz.would_deny")
            ),
            (1, 2, 1)
        );
        authz.replace(None);
        assert!(authz.admit(None, addr()), "no policy admits everyone");
    }

    #[tokio::test(start_paused = true)]
    async fn audit_mode_logs_a_caller_once_a_minute() {
        let seen = AuditSeen::default();
        assert!(seen.first_in_a_while("spiffe://mesh.local/ops"));
        assert!(!seen.first_in_a_while("spiffe://mesh.local/ops"));
        assert!(seen.first_in_a_while("unauthenticated"));
        tokio::time::advance(AUDIT_EVERY).await;
        assert!(seen.first_in_a_while("spiffe://mesh.local/ops"));
    }

    #[tokio::test(start_paused = true)]
    async fn revoked_resolves_only_for_a_caller_the_new_policy_denies() {
        let web = id("spiffe://mesh.local/web");
        let api = id("spiffe://mesh.local/api");
        let both = ["spiffe://mesh.local/web", "spiffe://mesh.local/api"];
        let authz = TcpAuthz::new("db", Some(spec(Mode::Enforce, &both)));
        let web_revoked = authz.revoked(Some(&web), addr());
        let api_revoked = authz.revoked(Some(&api), addr());
        tokio::pin!(web_revoked, api_revoked);
        let wait = Duration::from_secs(1);
        assert!(tokio::time::timeout(wait, &mut web_revoked).await.is_err());
        authz.replace(Some(spec(Mode::Audit, &["spiffe://mesh.local/api"])));
        assert!(
            tokio::time::timeout(wait, &mut web_revoked).await.is_err(),
            "audit mode closes nothing"
        );
        authz.replace(Some(spec(Mode::Enforce, &["spiffe://mesh.local/api"])));
        assert!(tokio::time::timeout(wait, &mut web_revoked).await.is_ok());
        assert!(tokio::time::timeout(wait, &mut api_revoked).await.is_err());
    }
}
