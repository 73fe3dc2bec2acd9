//! One destination of a revision as the throttler sees it: upstream's
//! `podTracker` in `pkg/activator/net/throttler.go`.
//!
//! With a container concurrency limit the tracker owns the pod's breaker
//! (capacity cc), used only non-blockingly: the revision breaker already did
//! the waiting, so a full pod just means "try another one". Without a limit it
//! counts requests in flight instead, for the random-choice-of-2 policy. The
//! ClusterIP destination is a tracker without either, never offered to a
//! policy.

use queue_proxy::breaker::{Breaker, BreakerParams, Permit};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::capacity::BREAKER_QUEUE_DEPTH;
use crate::lb::Target;

#[derive(Debug)]
pub(crate) struct PodTracker {
    dest: String,
    /// The pod's own limit (cc > 0).
    breaker: Option<Arc<Breaker>>,
    /// Requests in flight through unlimited reservations (cc = 0).
    weight: AtomicUsize,
}

impl PodTracker {
    /// A tracker for `dest` (`ip:port`) of a revision with concurrency `cc`.
    pub(crate) fn new(dest: String, cc: u32) -> Arc<Self> {
        let breaker = (cc > 0).then(|| {
            let cc = cc as usize;
            Breaker::with_params(BreakerParams {
                queue_depth: BREAKER_QUEUE_DEPTH,
                max_capacity: cc,
                initial_capacity: cc,
            })
        });
        Arc::new(PodTracker {
            dest,
            breaker,
            weight: AtomicUsize::new(0),
        })
    }

    pub(crate) fn dest(&self) -> &str {
        &self.dest
    }

    /// The pod's concurrency limit; 1 when it has none (as upstream reports).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.breaker.as_ref().map_or(1, |b| b.capacity())
    }

    /// Sets the pod's limit back to `cc` (upstream's `resetTrackers`, done on
    /// every reassignment).
    pub(crate) fn reset_capacity(&self, cc: u32) {
        if let Some(b) = &self.breaker {
            b.set_capacity(cc as usize);
        }
    }
}

/// A reservation on a pod, released on drop.
#[derive(Debug)]
pub(crate) enum PodSlot {
    /// A slot of the pod's breaker.
    Limited { _permit: Permit },
    /// One unit of the pod's weight.
    Weighted { _weight: Weight },
}

/// One unit of a tracker's weight; gives it back on drop.
#[derive(Debug)]
pub(crate) struct Weight(Arc<PodTracker>);

impl Drop for Weight {
    fn drop(&mut self) {
        self.0.weight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Target for Arc<PodTracker> {
    type Slot = PodSlot;

    fn try_reserve(&self) -> Option<PodSlot> {
        match &self.breaker {
            Some(b) => b.try_acquire().map(|p| PodSlot::Limited { _permit: p }),
            None => {
                self.weight.fetch_add(1, Ordering::AcqRel);
                Some(PodSlot::Weighted {
                    _weight: Weight(Arc::clone(self)),
                })
            }
        }
    }

    fn weight(&self) -> usize {
        self.weight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_tracker_reserves_up_to_cc() {
        let t = PodTracker::new("10.0.0.1:8012".into(), 2);
        assert_eq!(t.capacity(), 2);
        let a = t.try_reserve().unwrap();
        let _b = t.try_reserve().unwrap();
        assert!(t.try_reserve().is_none());
        drop(a);
        assert!(t.try_reserve().is_some());
        assert_eq!(t.weight(), 0);
    }

    #[test]
    fn unlimited_tracker_always_reserves_and_counts_weight() {
        let t = PodTracker::new("10.0.0.1:8012".into(), 0);
        assert_eq!(t.capacity(), 1);
        let slots: Vec<_> = (0..5).map(|_| t.try_reserve().unwrap()).collect();
        assert_eq!(t.weight(), 5);
        drop(slots);
        assert_eq!(t.weight(), 0);
    }

    #[test]
    fn reset_restores_the_pod_limit() {
        let t = PodTracker::new("p".into(), 3);
        t.breaker.as_ref().unwrap().set_capacity(1);
        assert_eq!(t.capacity(), 1);
        t.reset_capacity(3);
        assert_eq!(t.capacity(), 3);
    }
}
