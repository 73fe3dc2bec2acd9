//! The concurrency breaker: at most `capacity` requests execute, at most
//! `queue_depth` wait, and the next one is refused at once.
//!
//! Mirrors upstream's `pkg/queue/breaker.go`. The queue-proxy uses it with a
//! fixed capacity (`MaxConcurrency = CC`, `QueueDepth = 10 × CC`); the activator
//! reuses it for its per-revision throttling (capacity changed at runtime as
//! pods come and go) and for its per-pod trackers (non-blocking
//! [`Breaker::try_acquire`] only).
//!
//! One atomic counter admits a request while `queued + executing` is below
//! `max_capacity + queue_depth`, and a semaphore decides who executes. Upstream wakes waiters
//! in roughly arrival order and lets newcomers barge; tokio's semaphore is
//! strictly FIFO, which the spec allows as a refinement and which makes tail
//! latency fairer.
//!
//! Semaphore permits are taken out of the semaphore while a request executes
//! and put back by [`Permit`]'s drop, so the breaker decides what happens to a
//! returned slot. That is how a capacity decrease works without preempting
//! anyone (upstream's "reducers"): idle slots are withdrawn at once, and the
//! rest are recorded as a debt that returning permits pay off instead of going
//! back into circulation. In the fixed-capacity case the debt is always zero and
//! acquire/release touch only atomics and the semaphore itself.
//!
//! Both slots live in one [`Permit`], so whoever holds it (the response body, an
//! upgraded connection) frees them by dropping it, and a client that goes away
//! mid-wait frees its admission slot because the waiting future is dropped.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use tokio::sync::Semaphore;

/// Why the breaker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BreakerError {
    /// `capacity + queue_depth` requests are already queued or executing.
    #[error("pending request queue full")]
    QueueFull,
}

/// How a breaker is sized (upstream's `BreakerParams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerParams {
    /// Requests that may wait beyond `max_capacity`.
    pub queue_depth: usize,
    /// The largest capacity the breaker can ever be given; with `queue_depth`
    /// it bounds admission.
    pub max_capacity: usize,
    /// Execution slots at creation (may be 0: nobody executes until
    /// [`Breaker::set_capacity`] adds some).
    pub initial_capacity: usize,
}

/// A bounded queue in front of a (resizable) number of execution slots.
#[derive(Debug)]
pub struct Breaker {
    /// Requests admitted: queued plus executing.
    pending: AtomicUsize,
    total_slots: usize,
    max_capacity: usize,
    /// The capacity last set; what [`Breaker::capacity`] reports.
    capacity: AtomicUsize,
    /// Execution slots still to withdraw after a decrease: each returning
    /// permit pays one off instead of going back to the semaphore. Only
    /// `set_capacity` raises it (under `resize`); anyone may lower it.
    debt: AtomicUsize,
    /// Serialises capacity changes and the withdrawal of idle permits.
    resize: Mutex<()>,
    /// Free execution slots. Acquired permits are forgotten and re-added on
    /// release, so the breaker controls what a returned slot becomes.
    executing: Semaphore,
}

/// Holds one admission slot and one execution slot; dropping it frees both.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        // Execution slot first, so a waiter woken by the admission slot's
        // release never finds the execution slot still taken.
        self.breaker.release_execution_slot();
        self.breaker.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An admission slot while its request waits; freed on drop unless it became
/// part of a [`Permit`].
struct Admission<'a>(&'a Breaker);

impl Admission<'_> {
    fn into_permit(self, breaker: Arc<Breaker>) -> Permit {
        debug_assert!(std::ptr::eq(self.0, &*breaker));
        std::mem::forget(self);
        Permit { breaker }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Breaker {
    /// A breaker for `capacity` concurrent requests and `queue_depth` waiters,
    /// with `capacity` as its maximum.
    ///
    /// # Panics
    /// If `capacity` is 0: a zero-capacity fixed breaker would refuse everything,
    /// and upstream builds no breaker at all for `CONTAINER_CONCURRENCY < 1`.
    /// (Use [`Breaker::with_params`] for a breaker that starts empty.)
    pub fn new(capacity: usize, queue_depth: usize) -> Arc<Self> {
        assert!(capacity > 0, "breaker capacity must be at least 1");
        Self::with_params(BreakerParams {
            queue_depth,
            max_capacity: capacity,
            initial_capacity: capacity,
        })
    }

    /// A breaker sized by `params`.
    ///
    /// # Panics
    /// If `initial_capacity > max_capacity` or `max_capacity` exceeds what the
    /// semaphore can count (`usize::MAX >> 3`).
    pub fn with_params(params: BreakerParams) -> Arc<Self> {
        assert!(
            params.initial_capacity <= params.max_capacity,
            "initial capacity {} exceeds the maximum {}",
            params.initial_capacity,
            params.max_capacity
        );
        assert!(
            params.max_capacity <= Semaphore::MAX_PERMITS,
            "breaker capacity {} is too large",
            params.max_capacity
        );
        Arc::new(Breaker {
            pending: AtomicUsize::new(0),
            total_slots: params.max_capacity.saturating_add(params.queue_depth),
            max_capacity: params.max_capacity,
            capacity: AtomicUsize::new(params.initial_capacity),
            debt: AtomicUsize::new(0),
            resize: Mutex::new(()),
            executing: Semaphore::new(params.initial_capacity),
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
    /// left. Cancel-safe: dropping the returned future gives the admission slot
    /// back, and an execution slot handed to it before it was dropped goes to
    /// the next waiter.
    pub async fn acquire(self: &Arc<Self>) -> Result<Permit, BreakerError> {
        let admitted = self.admit()?;
        self.executing
            .acquire()
            .await
            .expect("the breaker's semaphore is never closed")
            .forget();
        Ok(admitted.into_permit(Arc::clone(self)))
    }

    /// Takes an execution slot only if one is free right now (upstream's
    /// `Reserve`): the activator's per-pod trackers use nothing else.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let admitted = self.admit().ok()?;
        self.executing.try_acquire().ok()?.forget();
        Some(admitted.into_permit(Arc::clone(self)))
    }

    fn admit(&self) -> Result<Admission<'_>, BreakerError> {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.total_slots).then_some(n + 1)
            })
            .map_err(|_| BreakerError::QueueFull)?;
        Ok(Admission(self))
    }

    /// Sets how many requests may execute at once, clamped to `max_capacity`.
    ///
    /// Growing hands the new slots to waiters in arrival order. Shrinking never
    /// preempts: free slots are withdrawn at once and the remainder as the
    /// requests holding them finish.
    pub fn set_capacity(&self, capacity: usize) {
        let target = capacity.min(self.max_capacity);
        let _resizing = self.resize.lock();
        let current = self.capacity.load(Ordering::Acquire);
        if target > current {
            let grow = target - current;
            // Slots still owed from an earlier decrease are simply kept.
            let owed = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    Some(d.saturating_sub(grow))
                })
                .expect("the update always succeeds");
            let added = grow - owed.min(grow);
            if added > 0 {
                self.executing.add_permits(added);
            }
        } else if target < current {
            self.debt.fetch_add(current - target, Ordering::SeqCst);
            // Pairs with the fence in `release_execution_slot`: either this
            // withdrawal sees a permit being returned, or the returner sees the
            // debt and withdraws it itself.
            fence(Ordering::SeqCst);
            self.withdraw_idle_slots();
        }
        self.capacity.store(target, Ordering::Release);
    }

    /// Gives an execution slot back, or keeps it out of circulation while a
    /// capacity decrease is still owed.
    fn release_execution_slot(&self) {
        if self.debt.load(Ordering::Acquire) != 0
            && self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                .is_ok()
        {
            return;
        }
        self.executing.add_permits(1);
        fence(Ordering::SeqCst);
        if self.debt.load(Ordering::Relaxed) != 0 {
            // A decrease raced this release and may have missed the slot.
            let _resizing = self.resize.lock();
            self.withdraw_idle_slots();
        }
    }

    /// Pays the debt from slots nobody holds. The caller holds `resize`.
    fn withdraw_idle_slots(&self) {
        let owed = self.debt.load(Ordering::Acquire);
        if owed == 0 {
            return;
        }
        let taken = self.executing.forget_permits(owed);
        if taken == 0 {
            return;
        }
        // Returning permits may have paid part of the debt meanwhile (they only
        // ever lower it); slots taken beyond what is still owed go back.
        let still_owed = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                Some(d.saturating_sub(taken))
            })
            .expect("the update always succeeds");
        let overpaid = taken.saturating_sub(still_owed);
        if overpaid > 0 {
            self.executing.add_permits(overpaid);
        }
    }

    /// Requests queued or executing right now (upstream's queue-depth gauge).
    pub fn in_flight(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// How many requests may execute at once (the capacity last set; requests
    /// admitted before a decrease may still be executing above it).
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    fn resizable(initial: usize) -> Arc<Breaker> {
        Breaker::with_params(BreakerParams {
            queue_depth: 100,
            max_capacity: 1000,
            initial_capacity: initial,
        })
    }

    /// How many permits can be taken right now (all returned afterwards).
    fn free_slots(b: &Arc<Breaker>) -> usize {
        let mut held = Vec::new();
        while let Some(p) = b.try_acquire() {
            held.push(p);
        }
        held.len()
    }

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

    #[tokio::test(start_paused = true)]
    async fn a_waiter_dropped_after_being_handed_a_slot_passes_it_on() {
        let b = Breaker::new(1, 10);
        let running = b.acquire().await.unwrap();
        let mut first = Box::pin(b.acquire());
        assert!(futures_poll_once(first.as_mut()).await.is_none());
        let second = {
            let b = b.clone();
            tokio::spawn(async move { b.acquire().await.map(drop) })
        };
        tokio::task::yield_now().await;
        // The slot goes to `first`, which is dropped before it ever runs again.
        drop(running);
        drop(first);
        timeout(Duration::from_secs(1), second)
            .await
            .expect("the wake-up reached the next waiter")
            .unwrap()
            .unwrap();
        assert_eq!(b.in_flight(), 0);
    }

    /// Polls a future once, returning its output if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[test]
    fn try_acquire_takes_free_slots_only() {
        let b = Breaker::new(2, 10);
        let one = b.try_acquire().unwrap();
        let two = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_none());
        // A refused try leaves no admission behind.
        assert_eq!(b.in_flight(), 2);
        drop(one);
        let three = b.try_acquire().unwrap();
        drop((two, three));
        assert_eq!(b.in_flight(), 0);
        assert_eq!(free_slots(&b), 2);
    }

    #[test]
    fn try_acquire_respects_the_admission_limit() {
        let b = Breaker::new(1, 0);
        let _running = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_none());
        assert_eq!(b.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_breaker_opens_when_capacity_is_added() {
        let b = resizable(0);
        assert_eq!(b.capacity(), 0);
        assert!(b.try_acquire().is_none());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.acquire().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(waiters.iter().all(|w| !w.is_finished()));
        b.set_capacity(3);
        assert_eq!(b.capacity(), 3);
        for w in waiters {
            timeout(Duration::from_secs(1), w)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    #[test]
    fn shrinking_withdraws_idle_slots_at_once() {
        let b = resizable(5);
        b.set_capacity(2);
        assert_eq!(b.capacity(), 2);
        assert_eq!(free_slots(&b), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn shrinking_never_preempts_and_absorbs_returning_slots() {
        let b = resizable(2);
        let first = b.acquire().await.unwrap();
        let second = b.acquire().await.unwrap();
        b.set_capacity(1);
        assert_eq!(b.capacity(), 1);
        // Both keep running; a newcomer waits.
        let newcomer = {
            let b = b.clone();
            tokio::spawn(async move { b.acquire().await })
        };
        tokio::task::yield_now().await;
        drop(first);
        tokio::task::yield_now().await;
        assert!(
            !newcomer.is_finished(),
            "the first returned slot is withdrawn"
        );
        drop(second);
        let permit = timeout(Duration::from_secs(1), newcomer)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(b.try_acquire().is_none());
        drop(permit);
        assert_eq!(free_slots(&b), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn growing_cancels_a_pending_withdrawal() {
        let b = resizable(2);
        let held = (b.acquire().await.unwrap(), b.acquire().await.unwrap());
        b.set_capacity(0);
        b.set_capacity(1);
        drop(held);
        assert_eq!(free_slots(&b), 1);
        b.set_capacity(4);
        assert_eq!(free_slots(&b), 4);
    }

    #[test]
    fn capacity_is_clamped_to_the_maximum() {
        let b = Breaker::with_params(BreakerParams {
            queue_depth: 1,
            max_capacity: 3,
            initial_capacity: 0,
        });
        b.set_capacity(10);
        assert_eq!(b.capacity(), 3);
        assert_eq!(free_slots(&b), 3);
    }

    /// Resizes race releases from other threads; once everything is returned
    /// the breaker holds exactly the last capacity set.
    #[test]
    fn resizing_under_concurrent_releases_keeps_the_books_straight() {
        let b = resizable(8);
        let start = std::sync::Barrier::new(5);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (b, start) = (&b, &start);
                s.spawn(move || {
                    start.wait();
                    let mut held = Vec::new();
                    for i in 0..50_000 {
                        if let Some(p) = b.try_acquire() {
                            held.push(p);
                        }
                        if (i + t) % 3 == 0 {
                            held.clear();
                        }
                    }
                });
            }
            let (b, start) = (&b, &start);
            s.spawn(move || {
                start.wait();
                for i in 0..50_000usize {
                    b.set_capacity((i * 7) % 13);
                }
                b.set_capacity(6);
            });
        });
        assert_eq!(b.capacity(), 6);
        assert_eq!(b.in_flight(), 0);
        assert_eq!(free_slots(&b), 6);
    }
}
