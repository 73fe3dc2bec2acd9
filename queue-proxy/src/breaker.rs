//! The concurrency breaker: at most `capacity` requests execute, at most
//! `queue_depth` wait, and the next one is refused at once.
//!
//! Mirrors upstream's `pkg/queue/breaker.go` as the queue-proxy uses it
//! (`MaxConcurrency = CC`, `QueueDepth = 10 × CC`): one atomic counter admits a
//! request while `queued + executing < capacity + queue_depth`, and a semaphore of
//! `capacity` permits decides who executes. Upstream wakes waiters in roughly
//! arrival order and lets newcomers barge; tokio's semaphore is strictly FIFO,
//! which the spec allows as a refinement and which makes tail latency fairer.
//!
//! Both slots live in one [`Permit`], so whoever holds it (the response body, an
//! upgraded connection) frees them by dropping it, and a client that goes away
//! mid-wait frees its admission slot because the waiting future is dropped.
//! The activator reuses this type for its per-revision throttling.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why the breaker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BreakerError {
    /// `capacity + queue_depth` requests are already queued or executing.
    #[error("pending request queue full")]
    QueueFull,
}

/// A bounded queue in front of a bounded number of execution slots.
#[derive(Debug)]
pub struct Breaker {
    /// Requests admitted: queued plus executing.
    pending: AtomicUsize,
    total_slots: usize,
    capacity: usize,
    executing: Arc<Semaphore>,
}

/// Holds one admission slot and one execution slot; dropping it frees both.
#[derive(Debug)]
pub struct Permit {
    _executing: OwnedSemaphorePermit,
    _admitted: Admission,
}

/// An admission slot, freed on drop (also while still waiting for execution).
#[derive(Debug)]
struct Admission(Arc<Breaker>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Breaker {
    /// A breaker for `capacity` concurrent requests and `queue_depth` waiters.
    ///
    /// # Panics
    /// If `capacity` is 0: a zero-capacity breaker would refuse everything, and
    /// upstream builds no breaker at all for `CONTAINER_CONCURRENCY < 1`.
    pub fn new(capacity: usize, queue_depth: usize) -> Arc<Self> {
        assert!(capacity > 0, "breaker capacity must be at least 1");
        Arc::new(Breaker {
            pending: AtomicUsize::new(0),
            total_slots: capacity + queue_depth,
            capacity,
            executing: Arc::new(Semaphore::new(capacity)),
        })
    }

    /// The queue-proxy's breaker for a container concurrency: `cc` executing and
    /// `10 × cc` waiting. `None` when `cc < 1`, which means no limit at all.
    pub fn for_container_concurrency(cc: i64) -> Option<Arc<Self>> {
        let cc = usize::try_from(cc).ok().filter(|cc| *cc >= 1)?;
        Some(Self::new(cc, cc.saturating_mul(10)))
    }

    /// Admits the request, then waits (FIFO) for an execution slot.
    ///
    /// Refuses at once with [`BreakerError::QueueFull`] when no admission slot is
    /// left. Cancel-safe: dropping the returned future gives the slot back.
    pub async fn acquire(self: &Arc<Self>) -> Result<Permit, BreakerError> {
        let admitted = self.admit()?;
        let executing = self
            .executing
            .clone()
            .acquire_owned()
            .await
            .expect("the breaker's semaphore is never closed");
        Ok(Permit {
            _executing: executing,
            _admitted: admitted,
        })
    }

    fn admit(self: &Arc<Self>) -> Result<Admission, BreakerError> {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.total_slots).then_some(n + 1)
            })
            .map_err(|_| BreakerError::QueueFull)?;
        Ok(Admission(self.clone()))
    }

    /// Requests queued or executing right now (upstream's queue-depth gauge).
    pub fn in_flight(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// How many requests may execute at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    #[test]
    fn no_breaker_below_one() {
        assert!(Breaker::for_container_concurrency(0).is_none());
        assert!(Breaker::for_container_concurrency(-3).is_none());
        let b = Breaker::for_container_concurrency(2).unwrap();
        assert_eq!(b.capacity(), 2);
        assert_eq!(b.total_slots, 22);
    }

    #[tokio::test(start_paused = true)]
    async fn admits_capacity_plus_queue_then_refuses() {
        let b = Breaker::for_container_concurrency(1).unwrap();
        let running = b.acquire().await.unwrap();
        // Ten more are admitted and wait.
        let mut waiters = Vec::new();
        for _ in 0..10 {
            let b = b.clone();
            waiters.push(tokio::spawn(async move { b.acquire().await }));
        }
        tokio::task::yield_now().await;
        assert_eq!(b.in_flight(), 11);
        // The twelfth is refused without waiting.
        assert_eq!(b.acquire().await.unwrap_err(), BreakerError::QueueFull);
        drop(running);
        for w in waiters {
            let permit = w.await.unwrap().unwrap();
            drop(permit);
        }
        assert_eq!(b.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_arrival_order() {
        let b = Breaker::new(1, 10);
        let first = b.acquire().await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..5 {
            let (b, tx) = (b.clone(), tx.clone());
            tokio::spawn(async move {
                let permit = b.acquire().await.unwrap();
                tx.send(i).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(permit);
            });
            // Let each waiter enqueue before the next one starts.
            tokio::task::yield_now().await;
        }
        drop(first);
        let mut order = Vec::new();
        for _ in 0..5 {
            order.push(rx.recv().await.unwrap());
        }
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_frees_its_admission_slot() {
        let b = Breaker::new(1, 1);
        let running = b.acquire().await.unwrap();
        assert!(
            timeout(Duration::from_millis(50), b.acquire())
                .await
                .is_err()
        );
        // The timed-out waiter's slot is back: one more may queue.
        assert_eq!(b.in_flight(), 1);
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.acquire().await.map(drop) })
        };
        tokio::task::yield_now().await;
        assert_eq!(b.in_flight(), 2);
        drop(running);
        waiter.await.unwrap().unwrap();
        assert_eq!(b.in_flight(), 0);
    }
}
