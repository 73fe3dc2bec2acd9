//! The throttler: holds requests for a revision until this activator may send
//! them, and says where (spec §3).
//!
//! Mirrors upstream's `pkg/activator/net/throttler.go` (`Throttler` and
//! `revisionThrottler`), with the revision-wide and per-pod breakers from
//! `pkg/queue/breaker.go` (shared with the queue-proxy as
//! [`queue_proxy::breaker::Breaker`]) and the policies of
//! `pkg/activator/net/lb_policy.go` ([`crate::lb`]).
//!
//! - [`capacity`]: the revision breaker's capacity formula.
//! - [`subsetting`]: which pods this activator uses when several front a
//!   revision.
//! - `tracker`: one destination and its per-pod limit or load weight.
//! - `gate`: the revision "breaker" for unlimited concurrency.
//! - `revision`: one revision's state, updates and the acquire loop.
//! - [`Lease`]: what a request holds while it is proxied.
//!
//! Differences from upstream, all refinements the spec allows: waiters are
//! served strictly in arrival order (tokio's fair semaphore), a removed
//! revision fails its waiters at once with [`ThrottlerError::RevisionGone`]
//! instead of leaving them to time out, and the caller (the handler) decides
//! whether a revision exists, so the throttler never creates state lazily.

pub mod capacity;
mod error;
mod gate;
mod lease;
mod revision;
pub mod subsetting;
mod tracker;

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

use crate::revision::{DestsUpdate, Revision, RevisionKey};
pub use error::ThrottlerError;
pub use lease::Lease;
use revision::RevisionThrottler;
use subsetting::Subset;

/// Every revision's throttling state. `Send + Sync`; share it behind an `Arc`.
pub struct Throttler {
    /// This activator's `POD_IP`: its identity among a revision's activators.
    pod_ip: Option<String>,
    revisions: RwLock<HashMap<RevisionKey, Arc<RevisionThrottler>>>,
}

impl Throttler {
    /// A throttler for the activator at `pod_ip` (`None`: never subset, use
    /// every pod).
    pub fn new(pod_ip: Option<String>) -> Self {
        Throttler {
            pod_ip,
            revisions: RwLock::new(HashMap::new()),
        }
    }

    /// Makes sure `rev` has state (capacity 0 until backends arrive). The
    /// container concurrency is taken at creation and never changes (it is
    /// immutable on a Revision anyway).
    pub fn upsert_revision(&self, rev: &Revision) {
        if self.revisions.read().contains_key(&rev.key) {
            return;
        }
        self.revisions
            .write()
            .entry(rev.key.clone())
            .or_insert_with(|| Arc::new(RevisionThrottler::new(rev.container_concurrency)));
    }

    /// Drops the revision's state. Requests waiting for it fail with
    /// [`ThrottlerError::RevisionGone`]; leases already handed out stay valid.
    pub fn remove_revision(&self, key: &RevisionKey) {
        let removed = self.revisions.write().remove(key);
        if let Some(rt) = removed {
            rt.remove();
        }
    }

    /// Takes a revision's new destinations and recomputes its assignment and
    /// capacity (spec §3.2). Ignored for revisions never upserted, as upstream
    /// ignores updates for revisions missing from its informer.
    pub fn update_dests(&self, update: DestsUpdate) {
        match self.get(&update.key) {
            Some(rt) => rt.update_dests(update.cluster_ip_dest, &update.dests),
            None => tracing::debug!(revision = %update.key, "dests for an unknown revision"),
        }
    }

    /// Takes the IPs of the activators fronting a revision (its public
    /// Endpoints) and, if this activator is among them and its place changed,
    /// recomputes the revision's share (spec §3.3). Otherwise nothing changes.
    pub fn update_activators(&self, key: &RevisionKey, activator_ips: &[String]) {
        let Some(pod_ip) = &self.pod_ip else { return };
        let Some(subset) = Subset::from_activators(activator_ips, pod_ip) else {
            return;
        };
        if let Some(rt) = self.get(key) {
            rt.update_subset(subset);
        }
    }

    /// Waits until the revision can take one more request from this activator
    /// and picks its destination (spec §3.4). Waiters are served in arrival
    /// order (a request whose pod pick fails re-queues at the back).
    ///
    /// Cancel-safe: dropping the future (a timeout, a client gone) frees its
    /// place without losing a wake-up meant for the next waiter.
    pub async fn acquire(&self, key: &RevisionKey) -> Result<Lease, ThrottlerError> {
        let rt = self
            .get(key)
            .ok_or_else(|| ThrottlerError::RevisionNotFound(key.clone()))?;
        rt.acquire().await
    }

    /// The revision breaker's capacity: how many requests this activator
    /// lets through at once (cc = 0: 1 while open, 0 while closed).
    pub fn capacity(&self, key: &RevisionKey) -> Option<usize> {
        self.get(key).map(|rt| rt.capacity())
    }

    /// The destinations this activator balances the revision over (its pods,
    /// sorted, or the ClusterIP).
    pub fn assigned_dests(&self, key: &RevisionKey) -> Option<Vec<String>> {
        self.get(key).map(|rt| rt.assigned_dests())
    }

    fn get(&self, key: &RevisionKey) -> Option<Arc<RevisionThrottler>> {
        self.revisions.read().get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn rev(cc: u32) -> Revision {
        Revision {
            key: RevisionKey::new("real-namespace", "real-name"),
            service: String::new(),
            configuration: String::new(),
            container_concurrency: cc,
            timeout: Duration::from_secs(300),
            response_start_timeout: None,
            idle_timeout: None,
            protocol: Default::default(),
        }
    }

    fn ips(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn subset_of(t: &Throttler, key: &RevisionKey) -> Subset {
        t.get(key).unwrap().subset()
    }

    // §10 check 30 (upstream's TestActivatorsIndexUpdate).
    #[test]
    fn activator_index_follows_the_public_endpoints() {
        let t = Throttler::new(Some("130.0.0.2".into()));
        let r = rev(1);
        t.upsert_revision(&r);
        t.update_dests(DestsUpdate {
            key: r.key.clone(),
            cluster_ip_dest: None,
            dests: ["128.0.0.1:1234", "128.0.0.2:1234", "128.0.0.23:1234"]
                .into_iter()
                .map(String::from)
                .collect(),
        });
        t.update_activators(&r.key, &ips(&["130.0.0.1", "130.0.0.2"]));
        assert_eq!(
            subset_of(&t, &r.key),
            Subset {
                num_activators: 2,
                index: 1
            }
        );
        // 3 pods / 2 activators, index 1: one pod at cc 1.
        assert_eq!(t.capacity(&r.key), Some(1));
        assert_eq!(t.assigned_dests(&r.key).unwrap().len(), 1);

        t.update_activators(&r.key, &ips(&["130.0.0.2"]));
        assert_eq!(
            subset_of(&t, &r.key),
            Subset {
                num_activators: 1,
                index: 0
            }
        );
        assert_eq!(t.capacity(&r.key), Some(3));
    }

    // §10 check 31: absent POD_IP leaves the index alone (−1 initially).
    #[test]
    fn absent_pod_ip_leaves_the_index_unchanged() {
        let t = Throttler::new(Some("10.10.10.3".into()));
        let r = rev(10);
        t.upsert_revision(&r);
        t.update_activators(&r.key, &ips(&["11.11.11.11", "11.11.11.12"]));
        assert_eq!(subset_of(&t, &r.key), Subset::default());
        assert_eq!(subset_of(&t, &r.key).index, -1);
        t.update_activators(
            &r.key,
            &ips(&["10.10.10.1", "10.10.10.2", "10.10.10.3", "11.11.11.11"]),
        );
        assert_eq!(subset_of(&t, &r.key).index, 2);
        t.update_activators(&r.key, &ips(&["11.11.11.11"]));
        assert_eq!(
            subset_of(&t, &r.key),
            Subset {
                num_activators: 4,
                index: 2
            }
        );
    }

    #[test]
    fn without_a_pod_ip_there_is_no_subsetting() {
        let t = Throttler::new(None);
        let r = rev(1);
        t.upsert_revision(&r);
        t.update_activators(&r.key, &ips(&["10.0.0.1", "10.0.0.2"]));
        assert_eq!(subset_of(&t, &r.key), Subset::default());
    }

    #[test]
    fn concurrency_is_fixed_at_creation() {
        let t = Throttler::new(None);
        let mut r = rev(1);
        t.upsert_revision(&r);
        r.container_concurrency = 0;
        t.upsert_revision(&r);
        t.update_dests(DestsUpdate {
            key: r.key.clone(),
            cluster_ip_dest: None,
            dests: BTreeSet::from(["a".to_string(), "b".to_string()]),
        });
        // cc 1 × 2 pods, not the open gate of cc 0.
        assert_eq!(t.capacity(&r.key), Some(2));
    }

    #[test]
    fn updates_for_unknown_revisions_are_ignored() {
        let t = Throttler::new(None);
        let key = RevisionKey::new("ns", "nope");
        t.update_dests(DestsUpdate {
            key: key.clone(),
            cluster_ip_dest: None,
            dests: BTreeSet::from(["a".to_string()]),
        });
        t.update_activators(&key, &ips(&["10.0.0.1"]));
        assert_eq!(t.capacity(&key), None);
        assert_eq!(t.assigned_dests(&key), None);
    }

    // A waiter costs little: the activator may hold 10,000 of them.
    #[test]
    fn a_waiting_acquire_is_small() {
        let t = Throttler::new(None);
        let key = RevisionKey::new("ns", "rev");
        let fut = t.acquire(&key);
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 512, "acquire future is {size} bytes");
    }

    #[test]
    fn throttler_and_lease_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Throttler>();
        send_sync::<Lease>();
        fn send<T: Send>(_: &T) {}
        let t = Throttler::new(None);
        let key = RevisionKey::new("ns", "rev");
        send(&t.acquire(&key));
    }
}
