//! When a revision watcher probes again (upstream: the `PROBE_FREQUENCY` ticker
//! of `revisionWatcher.run` in `pkg/activator/net/revision_backends.go`).
//!
//! Upstream re-probes every 200 ms while some address is not yet healthy, so a
//! pod that starts answering just after a tick waits up to 200 ms while requests
//! queue behind it. Here re-probes come every `initial_interval` (10 ms) for the
//! `fast_phase` (5 s) after the set of addresses last changed, which covers a
//! typical pod start, and then each further one waits 1.5× longer, up to
//! `max_interval` (200 ms, upstream's period). A pod that becomes healthy during
//! the fast phase is admitted ~5 ms later on average instead of ~100 ms; one
//! that takes longer never waits more than upstream's period. A failing probe of
//! a not-yet-started pod is a refused connection (or the queue-proxy's cached
//! 503), so the fast phase costs little. Addresses already healthy are never
//! re-probed, exactly as upstream.
//!
//! `ProbeOptions { initial_interval: 200 ms, fast_phase: 0, .. }` gives
//! upstream's fixed cadence back.

use std::time::Duration;
use tokio::time::Instant;

/// How much longer each re-probe waits than the previous one.
pub const BACKOFF_FACTOR: f64 = 1.5;

/// Probe cadence and deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Wait between re-probes during the fast phase.
    pub initial_interval: Duration,
    /// How long after an address change re-probes keep the initial interval.
    pub fast_phase: Duration,
    /// The longest wait between re-probes (upstream's `PROBE_FREQUENCY`).
    pub max_interval: Duration,
    /// The deadline shared by all probes of a round (upstream's `PROBE_TIMEOUT`).
    pub timeout: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            initial_interval: Duration::from_millis(10),
            fast_phase: Duration::from_secs(5),
            max_interval: Duration::from_millis(200),
            timeout: Duration::from_millis(300),
        }
    }
}

/// The growing wait between re-probes of one watcher.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    options: ProbeOptions,
    next: Duration,
    /// When the addresses last changed.
    phase_started: Instant,
}

impl Backoff {
    pub(crate) fn new(options: ProbeOptions) -> Self {
        Backoff {
            next: options.initial_interval.min(options.max_interval),
            options,
            phase_started: Instant::now(),
        }
    }

    /// The wait before the next re-probe.
    pub(crate) fn current(&self) -> Duration {
        self.next
    }

    /// A re-probe happened: past the fast phase, wait longer next time.
    pub(crate) fn advance(&mut self) {
        if self.phase_started.elapsed() < self.options.fast_phase {
            return;
        }
        self.next = self
            .next
            .mul_f64(BACKOFF_FACTOR)
            .min(self.options.max_interval);
    }

    /// The addresses changed: probe soon again.
    pub(crate) fn reset(&mut self) {
        self.next = self.options.initial_interval.min(self.options.max_interval);
        self.phase_started = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn fast_then_grows_by_half_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(ProbeOptions::default());
        // The fast phase: 500 re-probes 10 ms apart.
        for _ in 0..499 {
            tokio::time::advance(backoff.current()).await;
            backoff.advance();
            assert_eq!(backoff.current(), ms(10));
        }
        let mut waits = vec![];
        for _ in 0..10 {
            tokio::time::advance(backoff.current()).await;
            backoff.advance();
            waits.push(backoff.current());
        }
        let millis: Vec<u128> = waits.iter().map(|d| d.as_millis()).collect();
        assert_eq!(millis, [15, 22, 33, 50, 75, 113, 170, 200, 200, 200]);
        backoff.reset();
        assert_eq!(backoff.current(), ms(10));
        backoff.advance();
        assert_eq!(backoff.current(), ms(10));
    }

    #[tokio::test(start_paused = true)]
    async fn upstream_cadence_is_fixed() {
        let mut backoff = Backoff::new(ProbeOptions {
            initial_interval: ms(200),
            fast_phase: Duration::ZERO,
            ..ProbeOptions::default()
        });
        backoff.advance();
        backoff.advance();
        assert_eq!(backoff.current(), ms(200));
    }

    #[tokio::test]
    async fn initial_above_max_is_capped() {
        let backoff = Backoff::new(ProbeOptions {
            initial_interval: ms(500),
            max_interval: ms(100),
            ..ProbeOptions::default()
        });
        assert_eq!(backoff.current(), ms(100));
    }
}
