//! An opt-in cap on requests held per revision (beyond upstream).
//!
//! Upstream's revision breaker admits up to 10,000 + MaxInt32 waiters, so an
//! activator in front of a revision that cannot keep up grows without bound and
//! is OOM-killed (knative#13583). With `ACTIVATOR_MAX_HELD_PER_REVISION` set, a
//! request that would wait while that many are already waiting for the same
//! revision gets a 503 at once instead. Unset, nothing is counted.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::revision::RevisionKey;

/// Counts held requests per revision against a cap.
pub struct HeldLimit {
    cap: Option<usize>,
    held: RwLock<HashMap<RevisionKey, Arc<AtomicUsize>>>,
}

/// One held request; dropping it (once released or gone) frees its place.
pub struct Held(Option<Arc<AtomicUsize>>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl HeldLimit {
    /// A limit of `cap` held requests per revision; `None` for no limit.
    pub fn new(cap: Option<usize>) -> Self {
        HeldLimit {
            cap,
            held: RwLock::new(HashMap::new()),
        }
    }

    /// A place among the revision's held requests, or `None` when it is full.
    pub fn enter(&self, key: &RevisionKey) -> Option<Held> {
        let Some(cap) = self.cap else {
            return Some(Held(None));
        };
        let count = self.counter(key);
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()?;
        Some(Held(Some(count)))
    }

    fn counter(&self, key: &RevisionKey) -> Arc<AtomicUsize> {
        if let Some(count) = self.held.read().get(key) {
            return count.clone();
        }
        self.held.write().entry(key.clone()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cap_never_refuses() {
        let limit = HeldLimit::new(None);
        let key = RevisionKey::new("ns", "rev");
        let held: Vec<_> = (0..1000).map(|_| limit.enter(&key).unwrap()).collect();
        assert_eq!(held.len(), 1000);
    }

    #[test]
    fn cap_is_per_revision_and_places_come_back() {
        let limit = HeldLimit::new(Some(2));
        let (a, b) = (RevisionKey::new("ns", "a"), RevisionKey::new("ns", "b"));
        let first = limit.enter(&a).unwrap();
        let _second = limit.enter(&a).unwrap();
        assert!(limit.enter(&a).is_none());
        assert!(limit.enter(&b).is_some());
        drop(first);
        assert!(limit.enter(&a).is_some());
    }
}
