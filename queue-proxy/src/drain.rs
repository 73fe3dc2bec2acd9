//! The drain: once asked to drain, fail probes at once and wait for a quiet
//! period without requests before letting the pod go.
//!
//! Mirrors `knative.dev/pkg/network/handlers.Drainer` as the queue-proxy uses it:
//! - [`Drainer::drain`] starts the quiet period (30 s upstream) if it is not
//!   running and waits for it to end; concurrent callers all wait for the same
//!   end and are released together; after the end it returns at once.
//! - Every non-probe request ([`Drainer::request_arrived`]) restarts the quiet
//!   period while it has not yet ended. Probes never do.
//! - [`Drainer::reset`] interrupts the drain: waiters return, and if the quiet
//!   period had not ended the drainer stops draining (probes succeed again). If
//!   it had ended, the drainer stays drained, as upstream's does.
//!
//! The per-request check is one atomic load while not draining, so the common
//! path takes no lock.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Upstream's `drainSleepDuration`.
pub const DEFAULT_QUIET_PERIOD: Duration = Duration::from_secs(30);

/// Coordinates the drain of one queue-proxy.
#[derive(Debug)]
pub struct Drainer {
    quiet_period: Duration,
    /// Mirrors `state.timer.is_some()` for the lock-free request path.
    draining: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Present from the first `drain` until a `reset` that came in time.
    timer: Option<QuietTimer>,
    /// Released (set to `true`) when the drain ends or is reset.
    waiters: Option<watch::Sender<bool>>,
}

#[derive(Debug)]
struct QuietTimer {
    deadline: Instant,
    fired: bool,
}

impl Drainer {
    /// A drainer whose quiet period is `quiet_period`.
    pub fn new(quiet_period: Duration) -> Self {
        Drainer {
            quiet_period,
            draining: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    /// Whether probes must fail because a drain started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts the drain if none is running and waits until the quiet period has
    /// passed without requests, or until [`Drainer::reset`].
    pub async fn drain(self: &Arc<Self>) {
        let mut released = {
            let mut state = self.state.lock();
            match &state.waiters {
                Some(waiters) => waiters.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(false);
                    state.waiters = Some(tx.clone());
                    if state.timer.as_ref().is_some_and(|t| t.fired) {
                        // Drained before and not reset in time: nothing to wait for.
                        let _ = tx.send(true);
                    } else {
                        state.timer = Some(QuietTimer {
                            deadline: Instant::now() + self.quiet_period,
                            fired: false,
                        });
                        self.draining.store(true, Ordering::Release);
                        tokio::spawn(self.clone().run_timer(tx));
                    }
                    rx
                }
            }
        };
        let _ = released.wait_for(|done| *done).await;
    }

    /// Waits out the quiet period, which requests may push back.
    async fn run_timer(self: Arc<Self>, done: watch::Sender<bool>) {
        loop {
            let deadline = {
                let mut state = self.state.lock();
                let Some(timer) = state.timer.as_mut() else {
                    return; // reset
                };
                if done.is_closed() || *done.borrow() {
                    return; // reset (its waiters were released)
                }
                if Instant::now() >= timer.deadline {
                    timer.fired = true;
                    let _ = done.send(true);
                    return;
                }
                timer.deadline
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = done.closed() => return,
            }
        }
    }

    /// A non-probe request arrived: restart the quiet period if it is running.
    pub fn request_arrived(&self) {
        if !self.is_draining() {
            return;
        }
        let mut state = self.state.lock();
        if let Some(timer) = state.timer.as_mut()
            && !timer.fired
        {
            timer.deadline = Instant::now() + self.quiet_period;
        }
    }

    /// Interrupts the drain: releases every waiter and, if the quiet period had
    /// not ended yet, stops draining.
    pub fn reset(&self) {
        let mut state = self.state.lock();
        if state.timer.as_ref().is_some_and(|t| !t.fired) {
            state.timer = None;
            self.draining.store(false, Ordering::Release);
        }
        if let Some(waiters) = state.waiters.take() {
            let _ = waiters.send(true);
        }
    }
}

/// Counts the requests that got past the drainer until their response (or
/// upgraded connection) is over: upstream's `HijackTracker`, which the shutdown
/// waits on because a server's graceful stop does not see upgraded connections.
#[derive(Debug, Clone, Default)]
pub struct InFlightTracker(Arc<TrackerInner>);

#[derive(Debug, Default)]
struct TrackerInner {
    count: AtomicUsize,
    idle: Notify,
}

/// One tracked request; dropping it ends the tracking.
#[derive(Debug)]
pub struct Tracked(Arc<TrackerInner>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlightTracker {
    /// Starts tracking one request.
    pub fn track(&self) -> Tracked {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        Tracked(self.0.clone())
    }

    /// Requests tracked right now.
    pub fn count(&self) -> usize {
        self.0.count.load(Ordering::Acquire)
    }

    /// Waits until nothing is tracked, at most `limit`. Returns whether it got there.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.0.idle.notified();
                if self.count() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const QUIET: Duration = Duration::from_secs(30);

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_the_quiet_period() {
        let d = Arc::new(Drainer::new(QUIET));
        assert!(!d.is_draining());
        let started = Instant::now();
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.drain().await }
        });
        settle().await;
        assert!(d.is_draining());
        waiter.await.unwrap();
        assert_eq!(started.elapsed(), QUIET);
        // Drained: a later call returns at once and probes keep failing.
        let again = Instant::now();
        d.drain().await;
        assert_eq!(again.elapsed(), Duration::ZERO);
        assert!(d.is_draining());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_push_the_end_back_and_probes_do_not_exist_here() {
        let d = Arc::new(Drainer::new(QUIET));
        let started = Instant::now();
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.drain().await }
        });
        settle().await;
        advance(Duration::from_secs(20)).await;
        d.request_arrived();
        waiter.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(50));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_are_released_together() {
        let d = Arc::new(Drainer::new(QUIET));
        let started = Instant::now();
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let d = d.clone();
            waiters.push(tokio::spawn(async move {
                d.drain().await;
                Instant::now()
            }));
            settle().await;
            advance(Duration::from_secs(1)).await;
        }
        let mut ends = Vec::new();
        for w in waiters {
            ends.push(w.await.unwrap());
        }
        assert!(ends.iter().all(|e| *e == ends[0]), "{ends:?}");
        assert_eq!(ends[0] - started, QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_in_time_releases_waiters_and_stops_draining() {
        let d = Arc::new(Drainer::new(QUIET));
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.drain().await }
        });
        settle().await;
        advance(Duration::from_secs(1)).await;
        d.reset();
        waiter.await.unwrap();
        assert!(!d.is_draining());
        // A new drain waits the whole quiet period again.
        let started = Instant::now();
        d.drain().await;
        assert_eq!(started.elapsed(), QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_after_the_end_keeps_draining() {
        let d = Arc::new(Drainer::new(QUIET));
        d.drain().await;
        d.reset();
        assert!(d.is_draining());
        let started = Instant::now();
        d.drain().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn tracker_waits_for_the_last_request_or_gives_up() {
        let tracker = InFlightTracker::default();
        assert!(tracker.wait_idle(Duration::from_secs(60)).await);
        let a = tracker.track();
        let b = tracker.track();
        assert_eq!(tracker.count(), 2);
        let waited = tokio::spawn({
            let tracker = tracker.clone();
            async move {
                let started = Instant::now();
                (
                    tracker.wait_idle(Duration::from_secs(60)).await,
                    started.elapsed(),
                )
            }
        });
        settle().await;
        advance(Duration::from_secs(5)).await;
        drop(a);
        advance(Duration::from_secs(5)).await;
        drop(b);
        let (idle, elapsed) = waited.await.unwrap();
        assert!(idle);
        assert_eq!(elapsed, Duration::from_secs(10));

        let _stuck = tracker.track();
        let started = Instant::now();
        assert!(!tracker.wait_idle(Duration::from_secs(60)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn request_arrived_is_a_no_op_when_not_draining() {
        let d = Arc::new(Drainer::new(QUIET));
        d.request_arrived();
        assert!(!d.is_draining());
    }
}
