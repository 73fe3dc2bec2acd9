//! Single-flight probe rounds: upstream's `gateValue` barrier in
//! `pkg/queue/readiness/probe.go`.
//!
//! Health checks arrive from the kubelet, the activator and others, often at the
//! same moment. Probing the app once per caller would multiply the load on an app
//! that may be starting up, and with aggressive probes each caller would poll for
//! up to 10 s. So while a round runs, further callers wait for it and share its
//! result. Nothing is cached: a call that arrives after a round finished starts a
//! new one, because a readiness answer must be current.
//!
//! The round runs in its own task, so the callers are only waiting: a caller that
//! goes away (its connection closed) does not cancel the round for the others.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;

/// `None` while the round runs, then its result.
type Outcome = watch::Receiver<Option<bool>>;

/// At most one round at a time; callers during a round share its result.
#[derive(Debug, Default)]
pub(super) struct SingleFlight {
    current: Arc<Mutex<Option<Outcome>>>,
}

impl SingleFlight {
    /// Joins the running round, or starts `round` in a new task if none runs.
    /// A round that panics counts as not ready.
    pub(super) async fn run<F, Fut>(&self, round: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let mut outcome = {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            match current.as_ref() {
                Some(outcome) => outcome.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    *current = Some(rx.clone());
                    let finished = Finished {
                        current: Arc::clone(&self.current),
                        outcome: rx.clone(),
                    };
                    let round = round();
                    tokio::spawn(async move {
                        let ready = round.await;
                        // Later callers start a new round from here on.
                        drop(finished);
                        tx.send_replace(Some(ready));
                    });
                    rx
                }
            }
        };
        match outcome.wait_for(Option::is_some).await {
            Ok(ready) => ready.unwrap_or(false),
            // The round's task ended without a result: it panicked.
            Err(_) => false,
        }
    }
}

/// Clears the current round when the round's task ends, however it ends.
struct Finished {
    current: Arc<Mutex<Option<Outcome>>>,
    outcome: Outcome,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|c| c.same_channel(&self.outcome))
        {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;
    use tokio::time::{Instant, sleep};

    fn counted_round(
        rounds: &Arc<AtomicU32>,
        ready: bool,
        takes: Duration,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + use<> {
        let rounds = Arc::clone(rounds);
        move || {
            rounds.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                sleep(takes).await;
                ready
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_round_and_later_ones_start_another() {
        let flight = Arc::new(SingleFlight::default());
        let rounds = Arc::new(AtomicU32::new(0));
        let ms200 = Duration::from_millis(200);
        let start = Instant::now();
        let (a, b) = tokio::join!(flight.run(counted_round(&rounds, true, ms200)), async {
            sleep(Duration::from_millis(100)).await;
            flight.run(counted_round(&rounds, false, ms200)).await
        });
        // The second caller joined the first round and got its result.
        assert!(a && b);
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        assert_eq!(start.elapsed(), ms200);

        // No caching: the next call runs a new round.
        assert!(!flight.run(counted_round(&rounds, false, ms200)).await);
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
        assert_eq!(start.elapsed(), 2 * ms200);
    }

    #[tokio::test(start_paused = true)]
    async fn a_departed_starter_does_not_cancel_the_round() {
        let flight = Arc::new(SingleFlight::default());
        let rounds = Arc::new(AtomicU32::new(0));
        let ms200 = Duration::from_millis(200);
        let starter = {
            let flight = Arc::clone(&flight);
            let round = counted_round(&rounds, true, ms200);
            tokio::spawn(async move { flight.run(round).await })
        };
        sleep(Duration::from_millis(50)).await;
        starter.abort();
        assert!(starter.await.unwrap_err().is_cancelled());
        let start = Instant::now();
        assert!(flight.run(counted_round(&rounds, false, ms200)).await);
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        assert_eq!(start.elapsed(), Duration::from_millis(150));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_round_is_not_ready_and_does_not_wedge() {
        let flight = SingleFlight::default();
        let ready = flight
            .run(|| async {
                sleep(Duration::from_millis(10)).await;
                let broken = true;
                assert!(!broken, "round failed");
                true
            })
            .await;
        assert!(!ready);
        assert!(flight.run(|| async { true }).await);
    }
}
