//! The revision "breaker" for unlimited container concurrency (cc = 0):
//! upstream's `infiniteBreaker` in `pkg/activator/net/throttler.go`.
//!
//! Nothing is counted: while the revision has no capacity the gate is closed
//! and every request waits; once any capacity appears it opens and every
//! request passes at once. There is no queue limit. Waiting costs one
//! [`Notify`] registration, woken all together when the gate opens.

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Gate {
    open: AtomicBool,
    opened: Notify,
}

impl Gate {
    /// Opens for any non-zero capacity, closes for zero.
    pub(crate) fn set_capacity(&self, capacity: usize) {
        let open = capacity != 0;
        let was_open = self.open.swap(open, Ordering::AcqRel);
        if open && !was_open {
            self.opened.notify_waiters();
        }
    }

    /// 1 while open, 0 while closed (what upstream reports).
    pub(crate) fn capacity(&self) -> usize {
        usize::from(self.open.load(Ordering::Acquire))
    }

    /// Returns once the gate is open. Cancel-safe.
    pub(crate) async fn pass(&self) {
        loop {
            if self.open.load(Ordering::Acquire) {
                return;
            }
            let opened = self.opened.notified();
            tokio::pin!(opened);
            // Registered before the re-check, so an opening in between is not missed.
            opened.as_mut().enable();
            if self.open.load(Ordering::Acquire) {
                return;
            }
            opened.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::time::timeout;

    // Upstream's TestInfiniteBreaker.
    #[tokio::test(start_paused = true)]
    async fn closed_until_capacity_then_everyone_passes() {
        let gate = Arc::new(Gate::default());
        assert_eq!(gate.capacity(), 0);
        assert!(
            timeout(Duration::from_millis(10), gate.pass())
                .await
                .is_err()
        );

        let waiters: Vec<_> = (0..100)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.pass().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(waiters.iter().all(|w| !w.is_finished()));

        gate.set_capacity(10);
        assert_eq!(gate.capacity(), 1);
        for w in waiters {
            timeout(Duration::from_secs(1), w).await.unwrap().unwrap();
        }
        // Open: passes immediately, any number of times.
        for _ in 0..3 {
            timeout(Duration::ZERO, gate.pass()).await.unwrap();
        }

        gate.set_capacity(0);
        assert_eq!(gate.capacity(), 0);
        assert!(
            timeout(Duration::from_millis(10), gate.pass())
                .await
                .is_err()
        );
    }
}
