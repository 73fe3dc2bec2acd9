//! One revision's throttling state: upstream's `revisionThrottler` in
//! `pkg/activator/net/throttler.go` (spec §3.1, §3.2, §3.4).
//!
//! A request first waits in the revision-wide breaker (whose capacity is what
//! this activator may send to the revision at once), then asks the
//! load-balancing policy for a pod among those assigned to this activator.
//! The two limits are not changed atomically, so the policy can come back
//! empty-handed; the request then gives its revision slot back and queues
//! again, as upstream does.
//!
//! Updates (new backends, new activator set) are serialised by one mutex and
//! recompute the assignment and the capacity from scratch; requests only take
//! a read lock on the routing table for the duration of a policy pick.

use parking_lot::{Mutex, RwLock};
use queue_proxy::breaker::{Breaker, BreakerParams, Permit};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

use super::ThrottlerError;
use super::capacity::{BREAKER_QUEUE_DEPTH, REVISION_MAX_CONCURRENCY, revision_capacity};
use super::gate::Gate;
use super::lease::Lease;
use super::subsetting::{Subset, assign_slice};
use super::tracker::PodTracker;
use crate::lb::Policy;

pub(crate) struct RevisionThrottler {
    cc: u32,
    admission: Admission,
    policy: Policy,
    /// What requests read: where to go.
    routing: RwLock<Routing>,
    /// What updates change; held for a whole recomputation.
    backends: Mutex<Backends>,
    gone: AtomicBool,
    /// Fired once, when the revision is removed.
    removed: Notify,
}

/// The revision-wide limit.
enum Admission {
    /// cc = 0: open or closed, nothing counted.
    Gate(Gate),
    /// cc > 0: a bounded breaker, capacity per §3.2.
    Breaker(Arc<Breaker>),
}

#[derive(Default)]
struct Routing {
    /// This activator's pods, sorted by destination.
    assigned: Vec<Arc<PodTracker>>,
    /// Set in ClusterIP mode; then `assigned` is empty and unused.
    cluster_ip: Option<Arc<PodTracker>>,
}

#[derive(Default)]
struct Backends {
    /// All healthy pods, sorted by destination (empty in ClusterIP mode).
    pods: Vec<Arc<PodTracker>>,
    cluster_ip: Option<Arc<PodTracker>>,
    /// Dests in the last update (0 if it had neither pods nor ClusterIP).
    backend_count: usize,
    subset: Subset,
}

impl RevisionThrottler {
    /// A throttler for a revision with container concurrency `cc`, with no
    /// backends yet (capacity 0).
    pub(crate) fn new(cc: u32) -> Self {
        let admission = if cc == 0 {
            Admission::Gate(Gate::default())
        } else {
            Admission::Breaker(Breaker::with_params(BreakerParams {
                queue_depth: BREAKER_QUEUE_DEPTH,
                max_capacity: REVISION_MAX_CONCURRENCY,
                initial_capacity: 0,
            }))
        };
        RevisionThrottler {
            cc,
            admission,
            policy: Policy::for_container_concurrency(cc),
            routing: RwLock::default(),
            backends: Mutex::default(),
            gone: AtomicBool::new(false),
            removed: Notify::new(),
        }
    }

    /// Takes a new set of destinations (upstream's `handleUpdate`): pod
    /// trackers are kept for pods that stay, created for new ones and dropped
    /// for the rest; a ClusterIP replaces them all.
    pub(crate) fn update_dests(&self, cluster_ip_dest: Option<String>, dests: &BTreeSet<String>) {
        let mut backends = self.backends.lock();
        match cluster_ip_dest {
            None => {
                let mut existing: HashMap<&str, &Arc<PodTracker>> =
                    backends.pods.iter().map(|t| (t.dest(), t)).collect();
                // A BTreeSet<String> iterates in byte-wise order: sorted as in Go.
                let pods = dests
                    .iter()
                    .map(|dest| match existing.remove(dest.as_str()) {
                        Some(tracker) => Arc::clone(tracker),
                        None => PodTracker::new(dest.clone(), self.cc),
                    })
                    .collect();
                backends.pods = pods;
                backends.cluster_ip = None;
                backends.backend_count = dests.len();
            }
            Some(dest) => {
                backends.pods = Vec::new();
                backends.cluster_ip = Some(PodTracker::new(dest, 0));
                backends.backend_count = dests.len();
            }
        }
        self.recompute(&mut backends);
    }

    /// Takes this activator's new place among the revision's activators;
    /// recomputes only if it changed.
    pub(crate) fn update_subset(&self, subset: Subset) {
        let mut backends = self.backends.lock();
        if backends.subset != subset {
            backends.subset = subset;
            self.recompute(&mut backends);
        }
    }

    /// Reassigns pods and sets the capacity (upstream's `updateCapacity`).
    fn recompute(&self, backends: &mut Backends) {
        let Subset {
            num_activators,
            index,
        } = backends.subset;
        let assigned = if backends.cluster_ip.is_some() {
            Vec::new()
        } else if self.cc > 0 {
            for pod in &backends.pods {
                pod.reset_capacity(self.cc);
            }
            assign_slice(&backends.pods, index, num_activators)
        } else {
            backends.pods.clone()
        };
        let capacity = revision_capacity(
            self.cc,
            assigned.len(),
            backends.backend_count,
            num_activators,
        );
        tracing::debug!(
            capacity,
            backends = backends.backend_count,
            assigned = assigned.len(),
            index,
            num_activators,
            "revision capacity"
        );
        // Destinations before capacity: a request let in by new capacity
        // must find the pods that brought it.
        {
            let mut routing = self.routing.write();
            routing.assigned = assigned;
            routing.cluster_ip = backends.cluster_ip.clone();
        }
        match &self.admission {
            Admission::Gate(gate) => gate.set_capacity(capacity),
            Admission::Breaker(breaker) => breaker.set_capacity(capacity),
        }
    }

    /// The revision breaker's capacity (cc = 0: 1 open, 0 closed).
    pub(crate) fn capacity(&self) -> usize {
        match &self.admission {
            Admission::Gate(gate) => gate.capacity(),
            Admission::Breaker(breaker) => breaker.capacity(),
        }
    }

    /// The destinations this activator currently balances over.
    pub(crate) fn assigned_dests(&self) -> Vec<String> {
        let routing = self.routing.read();
        match &routing.cluster_ip {
            Some(ip) => vec![ip.dest().to_owned()],
            None => routing
                .assigned
                .iter()
                .map(|t| t.dest().to_owned())
                .collect(),
        }
    }

    /// Fails every waiting and future request with
    /// [`ThrottlerError::RevisionGone`]; leases already out keep running.
    pub(crate) fn remove(&self) {
        self.gone.store(true, Ordering::Release);
        self.removed.notify_waiters();
    }

    /// Waits for a revision slot, then picks a destination (spec §3.4).
    /// Cancel-safe: dropping the future gives up any place or slot it holds.
    pub(crate) async fn acquire(self: Arc<Self>) -> Result<Lease, ThrottlerError> {
        let removed = self.removed.notified();
        tokio::pin!(removed);
        // Registered before `gone` is checked, so a removal in between still wakes us.
        removed.as_mut().enable();
        loop {
            if self.gone.load(Ordering::Acquire) {
                return Err(ThrottlerError::RevisionGone);
            }
            let revision_slot = tokio::select! {
                biased;
                () = &mut removed => return Err(ThrottlerError::RevisionGone),
                slot = self.enter() => slot?,
            };
            if let Some(lease) = self.route(revision_slot) {
                return Ok(lease);
            }
            // No assigned pod had room (a release or reassignment raced the
            // revision breaker): the slot went back with `route`'s argument;
            // queue again behind everyone else, letting others run first.
            tokio::task::yield_now().await;
        }
    }

    /// Step 2: the revision-wide wait.
    async fn enter(&self) -> Result<Option<Permit>, ThrottlerError> {
        match &self.admission {
            Admission::Gate(gate) => {
                gate.pass().await;
                Ok(None)
            }
            Admission::Breaker(breaker) => Ok(Some(breaker.acquire().await?)),
        }
    }

    /// Step 3: the ClusterIP, or a pod from the policy.
    fn route(&self, revision_slot: Option<Permit>) -> Option<Lease> {
        let routing = self.routing.read();
        if let Some(ip) = &routing.cluster_ip {
            return Some(Lease::cluster_ip(Arc::clone(ip), revision_slot));
        }
        let (i, pod_slot) = self.policy.pick(&routing.assigned)?;
        Some(Lease::pod(
            Arc::clone(&routing.assigned[i]),
            pod_slot,
            revision_slot,
        ))
    }

    #[cfg(test)]
    fn breaker(&self) -> &Arc<Breaker> {
        match &self.admission {
            Admission::Breaker(b) => b,
            Admission::Gate(_) => panic!("cc = 0 has no breaker"),
        }
    }

    #[cfg(test)]
    pub(super) fn subset(&self) -> Subset {
        self.backends.lock().subset
    }

    #[cfg(test)]
    fn assigned_capacities(&self) -> Vec<usize> {
        self.routing
            .read()
            .assigned
            .iter()
            .map(|t| t.capacity())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    fn dests(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn pods(n: usize) -> BTreeSet<String> {
        (0..n).map(|i| format!("ip{i}")).collect()
    }

    fn subset(num_activators: u32, index: i32) -> Subset {
        Subset {
            num_activators,
            index,
        }
    }

    // Upstream's TestThrottlerUpdateCapacity rows with pod trackers.
    #[test]
    fn pod_mode_capacity_table() {
        // (cc, pods, activators, index, want)
        for (cc, n, na, idx, want) in [
            (10, 1, 1, 0, 10),
            (10, 2, 1, 0, 20),
            (10, 2, 2, 0, 10),
            (10, 3, 2, 0, 20),
            (10, 3, 2, 1, 10),
            (1, 5, 2, 0, 3),
            (1, 5, 2, 1, 2),
        ] {
            let rt = RevisionThrottler::new(cc);
            rt.update_subset(subset(na, idx));
            rt.update_dests(None, &pods(n));
            assert_eq!(
                rt.capacity(),
                want,
                "cc {cc}, {n} pods, {na} activators, index {idx}"
            );
        }
    }

    // §10 check 27.
    #[test]
    fn cc1_five_pods_two_activators() {
        let rt = RevisionThrottler::new(1);
        rt.update_dests(None, &pods(5));
        rt.update_subset(subset(2, 0));
        assert_eq!(rt.capacity(), 3);
        assert_eq!(rt.assigned_dests(), vec!["ip0", "ip1", "ip4"]);
        rt.update_subset(subset(2, 1));
        assert_eq!(rt.capacity(), 2);
        assert_eq!(rt.assigned_dests(), vec!["ip2", "ip3"]);
    }

    // §10 check 28 (upstream's TestPodAssignmentFinite).
    #[test]
    fn cc42_six_pods_four_activators_then_scale_to_zero() {
        let rt = RevisionThrottler::new(42);
        rt.update_subset(subset(4, 0));
        rt.update_dests(None, &dests(&["ip4", "ip3", "ip5", "ip2", "ip1", "ip0"]));
        assert_eq!(rt.backends.lock().pods.len(), 6);
        assert_eq!(rt.assigned_dests(), vec!["ip0", "ip4"]);
        assert_eq!(rt.capacity(), 84);
        assert_eq!(rt.assigned_capacities(), vec![42, 42]);

        rt.update_dests(None, &BTreeSet::new());
        assert!(rt.backends.lock().pods.is_empty());
        assert!(rt.assigned_dests().is_empty());
        assert_eq!(rt.capacity(), 0);
    }

    // §10 check 29 (upstream's TestPodAssignmentInfinite and the
    // "Infinite capacity with podIP trackers" row).
    #[test]
    fn cc0_assigns_all_pods_regardless_of_index() {
        let rt = RevisionThrottler::new(0);
        rt.update_subset(subset(2, 1));
        rt.update_dests(None, &dests(&["ip3", "ip2", "ip1"]));
        assert_eq!(rt.assigned_dests(), vec!["ip1", "ip2", "ip3"]);
        assert_eq!(rt.capacity(), 1);
        assert_eq!(rt.assigned_capacities(), vec![1, 1, 1]);

        rt.update_dests(None, &BTreeSet::new());
        assert!(rt.assigned_dests().is_empty());
        assert_eq!(rt.capacity(), 0);
    }

    // §10 checks 26 and 43: ClusterIP mode splits k8s-ready backends; an
    // update with neither pods nor ClusterIP counts as zero backends.
    #[test]
    fn cluster_ip_mode_capacity() {
        let rt = RevisionThrottler::new(10);
        rt.update_subset(subset(5, 0));
        rt.update_dests(Some("129.0.0.1:1234".into()), &pods(10));
        assert_eq!(rt.capacity(), 20);
        assert_eq!(rt.assigned_dests(), vec!["129.0.0.1:1234"]);
        rt.update_subset(subset(200, 3));
        assert_eq!(rt.capacity(), 1);
        rt.update_dests(Some("129.0.0.1:1234".into()), &BTreeSet::new());
        assert_eq!(rt.capacity(), 0);
        rt.update_dests(None, &pods(2));
        rt.update_dests(None, &BTreeSet::new());
        assert_eq!(rt.capacity(), 0);
    }

    #[test]
    fn trackers_survive_updates_that_keep_their_pod() {
        let rt = RevisionThrottler::new(1);
        rt.update_dests(None, &dests(&["a", "b"]));
        let lease = rt.route(None).unwrap();
        assert_eq!(lease.dest(), "a");
        // "a" stays (with its slot taken), "b" goes, "c" arrives.
        rt.update_dests(None, &dests(&["a", "c"]));
        assert_eq!(rt.route(None).unwrap().dest(), "c");
        assert!(rt.route(None).is_some_and(|l| l.dest() == "c"));
        let held_c = rt.route(None).unwrap();
        assert!(rt.route(None).is_none(), "a and c are both busy");
        drop((lease, held_c));
    }

    // Activator set changes recompute with the stored backend count.
    #[test]
    fn activator_change_recomputes_with_the_stored_backend_count() {
        let rt = RevisionThrottler::new(10);
        rt.update_dests(Some("129.0.0.1:1234".into()), &pods(10));
        assert_eq!(rt.capacity(), 100);
        rt.update_subset(subset(5, 2));
        assert_eq!(rt.capacity(), 20);
        assert_eq!(rt.subset(), subset(5, 2));
    }

    // Spec §3.4 step 3: the policy found no pod, so the request gives its
    // revision slot back and queues again; it gets through once a pod frees.
    #[tokio::test(start_paused = true)]
    async fn no_pod_for_a_revision_slot_means_re_entering() {
        let rt = Arc::new(RevisionThrottler::new(1));
        rt.update_dests(None, &dests(&["a"]));
        // More revision capacity than pod slots, as when capacity races ahead
        // of the trackers.
        rt.breaker().set_capacity(2);
        let first = rt.clone().acquire().await.unwrap();
        assert_eq!(first.dest(), "a");

        let second = tokio::spawn(rt.clone().acquire());
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!second.is_finished(), "the only pod is busy");

        drop(first);
        let lease = timeout(Duration::from_secs(1), second)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(lease.dest(), "a");
        drop(lease);
        assert_eq!(rt.breaker().in_flight(), 0);
    }

    // Cancel-safety: a dropped acquire frees its place in the revision queue.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_acquire_frees_its_queue_slot() {
        let rt = Arc::new(RevisionThrottler::new(1));
        rt.update_dests(None, &dests(&["a"]));
        let held = rt.clone().acquire().await.unwrap();
        assert!(
            timeout(Duration::from_millis(10), rt.clone().acquire())
                .await
                .is_err()
        );
        assert_eq!(rt.breaker().in_flight(), 1);
        drop(held);
        assert_eq!(rt.breaker().in_flight(), 0);
    }

    // Dropping a lease frees both its slots: the next waiter gets the pod in
    // the very next scheduling round.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_lease_lets_the_next_waiter_through() {
        let rt = Arc::new(RevisionThrottler::new(1));
        rt.update_dests(None, &dests(&["a"]));
        let held = rt.clone().acquire().await.unwrap();
        let waiter = tokio::spawn(rt.clone().acquire());
        tokio::task::yield_now().await;
        drop(held);
        tokio::task::yield_now().await;
        assert!(waiter.is_finished());
        assert_eq!(waiter.await.unwrap().unwrap().dest(), "a");
    }
}
