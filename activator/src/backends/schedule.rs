//! When a revision watcher probes again (upstream: the `PROBE_FREQUENCY` ticker
//! of `revisionWatcher.run` in `pkg/activator/net/revision_backends.go`).
//!
//! Upstream re-probes every 200 ms while some address is not yet healthy, so a
//! pod that starts answering just after a tick waits up to 200 ms while requests
//! queue behind it. Here the first re-probe comes after `initial_interval`
//! (10 ms) and each further one waits 1.5× longer, up to `max_interval` (200 ms,
//! upstream's period), starting over whenever the set of addresses changes. The
//! extra wait after a pod becomes healthy is thus at most about half the time
//! it has been failing, and never more than upstream's. Addresses already
//! healthy are never re-probed, exactly as upstream.
//!
//! `ProbeOptions { initial_interval: 200 ms, max_interval: 200 ms, .. }` gives
//! upstream's fixed cadence back.

use std::time::Duration;

/// How much longer each re-probe waits than the previous one.
pub const BACKOFF_FACTOR: f64 = 1.5;

/// Probe cadence and deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Wait before the first re-probe after the addresses changed.
    pub initial_interval: Duration,
    /// The longest wait between re-probes (upstream's `PROBE_FREQUENCY`).
    pub max_interval: Duration,
    /// The deadline shared by all probes of a round (upstream's `PROBE_TIMEOUT`).
    pub timeout: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            initial_interval: Duration::from_millis(10),
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
}

impl Backoff {
    pub(crate) fn new(options: ProbeOptions) -> Self {
        Backoff {
            next: options.initial_interval.min(options.max_interval),
            options,
        }
    }

    /// The wait before the next re-probe.
    pub(crate) fn current(&self) -> Duration {
        self.next
    }

    /// A re-probe happened: wait longer next time.
    pub(crate) fn advance(&mut self) {
        self.next = self
            .next
            .mul_f64(BACKOFF_FACTOR)
            .min(self.options.max_interval);
    }

    /// The addresses changed: probe soon again.
    pub(crate) fn reset(&mut self) {
        self.next = self.options.initial_interval.min(self.options.max_interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grows_by_half_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(ProbeOptions::default());
        let mut waits = vec![backoff.current()];
        for _ in 0..9 {
            backoff.advance();
            waits.push(backoff.current());
        }
        let millis: Vec<u128> = waits.iter().map(|d| d.as_millis()).collect();
        assert_eq!(millis, [10, 15, 22, 33, 50, 75, 113, 170, 200, 200]);
        backoff.reset();
        assert_eq!(backoff.current(), ms(10));
    }

    #[test]
    fn upstream_cadence_is_fixed() {
        let mut backoff = Backoff::new(ProbeOptions {
            initial_interval: ms(200),
            ..ProbeOptions::default()
        });
        backoff.advance();
        backoff.advance();
        assert_eq!(backoff.current(), ms(200));
    }

    #[test]
    fn initial_above_max_is_capped() {
        let backoff = Backoff::new(ProbeOptions {
            initial_interval: ms(500),
            max_interval: ms(100),
            timeout: ms(300),
        });
        assert_eq!(backoff.current(), ms(100));
    }
}
