//! How often a probe is attempted in one round: upstream's `doProbe`
//! (`pkg/queue/readiness/probe.go`).
//!
//! - Standard (`periodSeconds > 0`): one attempt with `timeoutSeconds` (at least
//!   1 s). The kubelet already repeats the queue-proxy's own readiness probe.
//! - Aggressive (`periodSeconds == 0`, Knative's default): attempt at once, then on
//!   a 50 ms ticker, each attempt bounded by 100 ms, until the probe has
//!   `successThreshold` consecutive successes; give up after 10 s. The ticker
//!   skips ticks an attempt overran, like Go's ticker, so slow attempts run back
//!   to back rather than in bursts.
//!
//! The consecutive-success counter belongs to the probe, not to the round: a
//! failure resets it, a success adds to it, and nothing else touches it. Once a
//! probe has passed, the next round therefore passes on its first good attempt
//! instead of making a ready app earn its threshold again on every health check,
//! which is what upstream does and what keeps a steady stream of health checks
//! cheap.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

use super::ReadinessOptions;
use super::error::ProbeError;

/// The attempt timeout of a standard probe: `timeoutSeconds`, at least 1 s (the
/// reconciler guarantees that too; upstream would run a 0 with no timeout).
pub(super) fn standard_timeout(timeout_seconds: i32) -> Duration {
    Duration::from_secs(u64::try_from(timeout_seconds).unwrap_or(0).max(1))
}

/// Polls `attempt` in aggressive mode until `successes` reaches `threshold` or
/// `options.aggressive_give_up` has passed.
pub(super) async fn aggressive<F, Fut>(
    options: &ReadinessOptions,
    successes: &AtomicU32,
    threshold: u32,
    mut attempt: F,
) -> Result<(), ProbeError>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<(), ProbeError>>,
{
    let threshold = threshold.max(1);
    let interval = options.aggressive_interval.max(Duration::from_millis(1));
    let start = Instant::now();
    let deadline = start + options.aggressive_give_up;
    let mut ticker = tokio::time::interval_at(start + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut failures = 0u32;
    let mut last = None;
    loop {
        match attempt(options.aggressive_attempt_timeout).await {
            Ok(()) => {
                let count = successes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        Some(n.saturating_add(1))
                    })
                    .unwrap_or(0)
                    .saturating_add(1);
                if count >= threshold {
                    return Ok(());
                }
            }
            Err(e) => {
                successes.store(0, Ordering::Relaxed);
                failures = failures.saturating_add(1);
                last = Some(Box::new(e));
            }
        }
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(deadline) => break,
            _ = ticker.tick() => {}
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(ProbeError::GaveUp {
        failures,
        last,
        successes: successes.load(Ordering::Relaxed),
        threshold,
        after: options.aggressive_give_up,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn options() -> ReadinessOptions {
        ReadinessOptions::default()
    }

    fn fail() -> ProbeError {
        ProbeError::NoHandler
    }

    #[test]
    fn standard_timeout_is_at_least_a_second() {
        assert_eq!(standard_timeout(0), Duration::from_secs(1));
        assert_eq!(standard_timeout(-3), Duration::from_secs(1));
        assert_eq!(standard_timeout(5), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_at_once_then_every_interval_with_the_attempt_timeout() {
        let starts = Mutex::new(Vec::new());
        let start = Instant::now();
        let counter = AtomicU32::new(0);
        let result = aggressive(&options(), &counter, 1, |timeout| {
            starts.lock().unwrap().push((start.elapsed(), timeout));
            async { Err(fail()) }
        })
        .await;
        let starts = starts.into_inner().unwrap();
        // 0, 50, ..., 9950 ms: 200 attempts; none at the 10 s deadline itself.
        assert_eq!(starts.len(), 200);
        for (i, (at, timeout)) in starts.iter().enumerate() {
            assert_eq!(*at, Duration::from_millis(50 * i as u64));
            assert_eq!(*timeout, Duration::from_millis(100));
        }
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        let err = result.unwrap_err();
        assert!(matches!(err, ProbeError::GaveUp { failures: 200, .. }));
        assert_eq!(
            err.to_string(),
            "aggressive probe error (failed 200 times): no probe found"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_attempts_run_back_to_back() {
        let starts = Mutex::new(Vec::new());
        let start = Instant::now();
        let counter = AtomicU32::new(0);
        let opts = ReadinessOptions {
            aggressive_give_up: Duration::from_secs(1),
            ..options()
        };
        let result = aggressive(&opts, &counter, 1, |timeout| {
            starts.lock().unwrap().push(start.elapsed());
            async move {
                tokio::time::sleep(timeout).await;
                Err(fail())
            }
        })
        .await;
        assert!(result.is_err());
        let starts = starts.into_inner().unwrap();
        let want: Vec<_> = (0..10).map(|i| Duration::from_millis(100 * i)).collect();
        assert_eq!(starts, want);
    }

    #[tokio::test(start_paused = true)]
    async fn needs_consecutive_successes_and_a_failure_resets() {
        // ok, fail, ok, ok, ok: passes on the 5th attempt.
        let script = Mutex::new(vec![true, true, true, false, true]);
        let counter = AtomicU32::new(0);
        let attempts = AtomicU32::new(0);
        let start = Instant::now();
        let result = aggressive(&options(), &counter, 3, |_| {
            attempts.fetch_add(1, Ordering::Relaxed);
            let ok = script.lock().unwrap().pop().unwrap();
            async move { if ok { Ok(()) } else { Err(fail()) } }
        })
        .await;
        result.unwrap();
        assert_eq!(attempts.load(Ordering::Relaxed), 5);
        assert_eq!(counter.load(Ordering::Relaxed), 3);
        assert_eq!(start.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn the_counter_persists_across_rounds() {
        let counter = AtomicU32::new(0);
        let attempts = AtomicU32::new(0);
        let ok = |_| {
            attempts.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        };
        aggressive(&options(), &counter, 3, ok).await.unwrap();
        assert_eq!(attempts.load(Ordering::Relaxed), 3);
        // The next round passes on its first success: the count is already 3.
        aggressive(&options(), &counter, 3, ok).await.unwrap();
        assert_eq!(attempts.load(Ordering::Relaxed), 4);
        assert_eq!(counter.load(Ordering::Relaxed), 4);

        // A failure resets it: the threshold must be earned again.
        let mut first = true;
        aggressive(&options(), &counter, 3, |_| {
            attempts.fetch_add(1, Ordering::Relaxed);
            let ok = !std::mem::replace(&mut first, false);
            async move { if ok { Ok(()) } else { Err(fail()) } }
        })
        .await
        .unwrap();
        assert_eq!(attempts.load(Ordering::Relaxed), 8);
        assert_eq!(counter.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_threshold_means_one() {
        let counter = AtomicU32::new(0);
        aggressive(&options(), &counter, 0, |_| async { Ok(()) })
            .await
            .unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn giving_up_without_a_failure_says_so() {
        let counter = AtomicU32::new(0);
        let opts = ReadinessOptions {
            aggressive_give_up: Duration::from_millis(120),
            ..options()
        };
        let err = aggressive(&opts, &counter, 100, |_| async { Ok(()) })
            .await
            .unwrap_err();
        // Attempts at 0, 50 and 100 ms succeeded; 3 of 100.
        assert_eq!(
            err.to_string(),
            "aggressive probe timed out after 120ms: 3 of 100 consecutive successes"
        );
    }
}
