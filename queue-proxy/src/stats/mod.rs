//! Autoscaling request statistics (spec §3 step 10 and §8a).
//!
//! Mirrors upstream's `RequestStats` (`knative.dev/networking/pkg/http/stats/request.go`, tested
//! by `pkg/queue/stats_test.go`). Every request that reaches the proxy handler records an
//! *in* event on arrival and an *out* event when it is done; a ticker calls
//! [`RequestStats::report`] once per window. The report gives
//!
//! - the time-weighted average concurrency, `∫ concurrency dt / window length`,
//! - the number of arrivals in the window,
//!
//! each for all requests and for the *proxied* subset (those that came through the
//! activator, which the autoscaler subtracts because the activator reports them itself).
//! Windows are measured between successive reports (the first from `started_at`); the window
//! length is the latest time seen by any event or report minus the previous window's end, and
//! an event stamped earlier than a time already seen is applied without integrating backwards,
//! as upstream does.
//!
//! # Why sharded
//!
//! Upstream keeps the state under one mutex taken twice per request, so every request on
//! every core contends on one cache line. Here the very same state lives in [`SHARDS`]
//! cache-line-padded shards; a thread records into the shard picked by a thread-local index
//! handed out round-robin the first time the thread records anything, so with one shard per
//! worker thread recording is an uncontended lock on a line no other core writes.
//!
//! This is exact, not an approximation, because everything is linear. Each shard integrates
//! its own concurrency delta (which may be negative when a request started on one shard ends
//! on another): `Σ_shards ∫ c_i dt = ∫ Σ c_i dt`. A report brings every shard to the same
//! `now`, sums them and resets them. The window length is a property of the window, not of a
//! shard, so it is kept once, next to the report. With the single-threaded event sequences
//! of upstream's tests every shard but one contributes exact zeros, so the averages are
//! bit-for-bit upstream's.
//!
//! [`RequestStats::track`] goes one step further: its [`InFlight`] guard remembers the shard
//! the request started on and records the end there, even when dropped on another thread (a
//! task moved by the scheduler), so shards stay non-negative and their integrals small.
//!
//! The per-window publishing (what `:9090/metrics` serves) lives in [`reporter`].

pub mod reporter;

pub use reporter::{REPORTING_PERIOD, StatReporter, run_reporter};

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

/// Number of shards per [`RequestStats`]: enough that worker threads rarely share one, small
/// enough that a report (16 uncontended locks) stays trivial.
pub const SHARDS: usize = 16;

/// A request lifecycle event, as upstream's `ReqEventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqEvent {
    /// A request arrived.
    In,
    /// A request finished.
    Out,
    /// A request that came through the activator (`K-Proxy-Request: activator`) arrived. It
    /// counts in the totals and in the proxied figures.
    ProxiedIn,
    /// A proxied request finished.
    ProxiedOut,
}

/// One closed window, as [`RequestStats::report`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RequestStatsReport {
    /// `∫ concurrency dt` over the window divided by its length; 0 for an empty window.
    /// Two requests each taking 500 ms in a 1 s window give 1.0.
    pub average_concurrency: f64,
    /// The same for proxied requests only.
    pub average_proxied_concurrency: f64,
    /// Requests that arrived in the window (proxied ones included). A count, not a rate.
    pub request_count: f64,
    /// Proxied requests that arrived in the window.
    pub proxied_request_count: f64,
}

/// Collects request statistics; see the module docs. Cheap to record into from any thread.
#[derive(Debug)]
pub struct RequestStats {
    shards: [Shard; SHARDS],
    /// End of the previous window (initially `started_at`). Only reports touch it, and
    /// holding it for the whole report also serialises concurrent reports.
    window_start: Mutex<Instant>,
}

/// One shard, alone on its cache lines (128 bytes covers adjacent-line prefetching on x86
/// and the 128-byte lines of some ARM cores).
#[derive(Debug)]
#[repr(align(128))]
struct Shard(Mutex<ShardState>);

/// Upstream's state, minus `secondsInUse` (kept once per window instead).
#[derive(Debug)]
struct ShardState {
    /// This shard's share of the requests in flight. Can be negative, see the module docs.
    concurrency: i64,
    proxied_concurrency: i64,
    /// Latest time this shard has integrated up to.
    last_change: Instant,
    // Window accumulators, reset by every report.
    requests: u64,
    proxied_requests: u64,
    /// `Σ concurrency × seconds`.
    concurrency_integral: f64,
    proxied_concurrency_integral: f64,
}

impl ShardState {
    /// Integrates the current concurrency up to `now`. Does nothing for a `now` that is not
    /// later than what was already seen (events racing a report; upstream ignores those too).
    fn advance(&mut self, now: Instant) {
        if now > self.last_change {
            let seconds = (now - self.last_change).as_secs_f64();
            self.concurrency_integral += self.concurrency as f64 * seconds;
            self.proxied_concurrency_integral += self.proxied_concurrency as f64 * seconds;
            self.last_change = now;
        }
    }

    fn apply(&mut self, event: ReqEvent) {
        match event {
            ReqEvent::In => {
                self.concurrency += 1;
                self.requests += 1;
            }
            ReqEvent::ProxiedIn => {
                self.concurrency += 1;
                self.requests += 1;
                self.proxied_concurrency += 1;
                self.proxied_requests += 1;
            }
            ReqEvent::Out => self.concurrency -= 1,
            ReqEvent::ProxiedOut => {
                self.concurrency -= 1;
                self.proxied_concurrency -= 1;
            }
        }
    }
}

/// Hands out shard indices to threads, round-robin.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// This thread's shard index, assigned on first use.
fn current_shard() -> usize {
    THREAD_SHARD
        .try_with(|slot| match slot.get() {
            Some(index) => index,
            None => {
                let index = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
                slot.set(Some(index));
                index
            }
        })
        // Only during thread-local teardown (a guard dropped by a TLS destructor): any shard
        // is correct, just possibly shared.
        .unwrap_or(0)
}

/// The state is plain numbers updated without panicking, so a poisoned lock (a panic
/// elsewhere while holding it) still guards consistent data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RequestStats {
    /// Starts collecting; the first window begins at `started_at`.
    pub fn new(started_at: Instant) -> Self {
        Self {
            shards: std::array::from_fn(|_| {
                Shard(Mutex::new(ShardState {
                    concurrency: 0,
                    proxied_concurrency: 0,
                    last_change: started_at,
                    requests: 0,
                    proxied_requests: 0,
                    concurrency_integral: 0.0,
                    proxied_concurrency_integral: 0.0,
                }))
            }),
            window_start: Mutex::new(started_at),
        }
    }

    /// Records `event` as having happened at `now`. Every `In`/`ProxiedIn` must be matched
    /// by one `Out`/`ProxiedOut` (from any thread); prefer [`track`](Self::track), which
    /// cannot forget the end.
    pub fn handle_event(&self, event: ReqEvent, now: Instant) {
        self.record(current_shard(), event, now);
    }

    fn record(&self, shard: usize, event: ReqEvent, now: Instant) {
        let mut state = lock(&self.shards[shard].0);
        state.advance(now);
        state.apply(event);
    }

    /// Closes the window at `now`: returns its averages and counts and starts the next
    /// window. Requests in flight carry over into the next window.
    pub fn report(&self, now: Instant) -> RequestStatsReport {
        let mut window_start = lock(&self.window_start);
        let mut window_end = now.max(*window_start);
        let mut sums = RequestStatsReport::default();
        let (mut integral, mut proxied_integral) = (0.0, 0.0);
        for shard in &self.shards {
            let mut state = lock(&shard.0);
            state.advance(now);
            // An event stamped after `now` (it raced this report) already moved the shard
            // past it; like upstream, the window then extends to that event.
            window_end = window_end.max(state.last_change);
            integral += std::mem::take(&mut state.concurrency_integral);
            proxied_integral += std::mem::take(&mut state.proxied_concurrency_integral);
            sums.request_count += std::mem::take(&mut state.requests) as f64;
            sums.proxied_request_count += std::mem::take(&mut state.proxied_requests) as f64;
        }
        let seconds = (window_end - *window_start).as_secs_f64();
        *window_start = window_end;
        if seconds > 0.0 {
            sums.average_concurrency = integral / seconds;
            sums.average_proxied_concurrency = proxied_integral / seconds;
        }
        sums
    }

    /// Records `In` (or `ProxiedIn`) now; the returned guard records the matching `Out` (or
    /// `ProxiedOut`) at the moment it is dropped, on the shard the request started on.
    pub fn track(self: &Arc<Self>, proxied: bool) -> InFlight {
        let shard = current_shard();
        let event = if proxied {
            ReqEvent::ProxiedIn
        } else {
            ReqEvent::In
        };
        self.record(shard, event, Instant::now());
        InFlight {
            stats: Arc::clone(self),
            shard,
            proxied,
        }
    }
}

/// A request counted as in flight by [`RequestStats::track`]; dropping it ends the request.
/// Keep it alive for as long as the request should count (for upgraded connections, the
/// whole connection).
#[derive(Debug)]
#[must_use = "dropping the guard at once records the request as already finished"]
pub struct InFlight {
    stats: Arc<RequestStats>,
    shard: usize,
    proxied: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let event = if self.proxied {
            ReqEvent::ProxiedOut
        } else {
            ReqEvent::Out
        };
        self.stats.record(self.shard, event, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn report(
        average_concurrency: f64,
        average_proxied_concurrency: f64,
        request_count: f64,
        proxied_request_count: f64,
    ) -> RequestStatsReport {
        RequestStatsReport {
            average_concurrency,
            average_proxied_concurrency,
            request_count,
            proxied_request_count,
        }
    }

    // Upstream's stats_test.go cases, compared exactly.

    #[test]
    fn no_data() {
        let now = Instant::now();
        let s = RequestStats::new(now);
        assert_eq!(s.report(now), report(0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn single_request_whole_time() {
        let mut now = Instant::now();
        let s = RequestStats::new(now);
        s.handle_event(ReqEvent::In, now);
        now += ms(1000);
        s.handle_event(ReqEvent::Out, now);
        assert_eq!(s.report(now), report(1.0, 0.0, 1.0, 0.0));
    }

    #[test]
    fn single_request_half_time() {
        let mut now = Instant::now();
        let s = RequestStats::new(now);
        s.handle_event(ReqEvent::In, now);
        now += ms(1000);
        s.handle_event(ReqEvent::Out, now);
        now += ms(1000);
        assert_eq!(s.report(now), report(0.5, 0.0, 1.0, 0.0));
    }

    #[test]
    fn very_short_lived_request() {
        let mut now = Instant::now();
        let s = RequestStats::new(now);
        s.handle_event(ReqEvent::In, now);
        now += ms(10);
        s.handle_event(ReqEvent::Out, now);
        now += ms(990);
        assert_eq!(s.report(now), report(10.0 / 1000.0, 0.0, 1.0, 0.0));
    }

    #[test]
    fn multiple_requests_whole_time() {
        let mut now = Instant::now();
        let s = RequestStats::new(now);
        for length in [300, 300, 400] {
            s.handle_event(ReqEvent::In, now);
            now += ms(length);
            s.handle_event(ReqEvent::Out, now);
        }
        assert_eq!(s.report(now), report(1.0, 0.0, 3.0, 0.0));
    }

    #[test]
    fn multiple_requests_interleaved() {
        let mut now = Instant::now();
        let s = RequestStats::new(now);
        s.handle_event(ReqEvent::In, now);
        now += ms(100);
        s.handle_event(ReqEvent::In, now);
        now += ms(500);
        s.handle_event(ReqEvent::Out, now);
        now += ms(400);
        s.handle_event(ReqEvent::Out, now);
        assert_eq!(s.report(now), report(1.5, 0.0, 2.0, 0.0));
    }

    #[test]
    fn one_request_across_reportings() {
        let mut now = Instant::now();
        let s = RequestStats::new(now);
        s.handle_event(ReqEvent::In, now);
        now += ms(1000);
        assert_eq!(s.report(now), report(1.0, 0.0, 1.0, 0.0));
        now += ms(500);
        s.handle_event(ReqEvent::Out, now);
        now += ms(500);
        assert_eq!(s.report(now), report(0.5, 0.0, 0.0, 0.0));
    }

    #[test]
    fn one_proxied_request() {
        let mut now = Instant::now();
        let s = RequestStats::new(now);
        s.handle_event(ReqEvent::ProxiedIn, now);
        now += ms(1000);
        assert_eq!(s.report(now), report(1.0, 1.0, 1.0, 1.0));
    }

    #[test]
    fn one_ended_proxied_request() {
        let mut now = Instant::now();
        let s = RequestStats::new(now);
        s.handle_event(ReqEvent::ProxiedIn, now);
        now += ms(500);
        s.handle_event(ReqEvent::ProxiedOut, now);
        now += ms(500);
        assert_eq!(s.report(now), report(0.5, 0.5, 1.0, 1.0));
    }

    #[test]
    fn two_requests_one_proxied() {
        let mut now = Instant::now();
        let s = RequestStats::new(now);
        s.handle_event(ReqEvent::ProxiedIn, now);
        now += ms(500);
        s.handle_event(ReqEvent::ProxiedOut, now);
        s.handle_event(ReqEvent::In, now);
        now += ms(500);
        assert_eq!(s.report(now), report(1.0, 0.5, 2.0, 1.0));
    }

    // Beyond upstream's table.

    #[test]
    fn report_before_start_or_repeated_is_empty() {
        let start = Instant::now() + ms(1000);
        let s = RequestStats::new(start);
        s.handle_event(ReqEvent::In, start);
        // A report stamped before the window began has no length, hence no averages, but
        // still hands over the count.
        assert_eq!(s.report(start - ms(10)), report(0.0, 0.0, 1.0, 0.0));
        assert_eq!(s.report(start), report(0.0, 0.0, 0.0, 0.0));
        assert_eq!(s.report(start + ms(250)), report(1.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn late_event_extends_the_window_like_upstream() {
        let start = Instant::now();
        let s = RequestStats::new(start);
        s.handle_event(ReqEvent::In, start);
        // The request ends at 2 s but the report is stamped 1 s: upstream's single clock has
        // then advanced to 2 s, so the window is 2 s long with one request throughout.
        s.handle_event(ReqEvent::Out, start + ms(2000));
        assert_eq!(s.report(start + ms(1000)), report(1.0, 0.0, 1.0, 0.0));
        // The next window starts at 2 s.
        assert_eq!(s.report(start + ms(2500)), report(0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn events_split_across_threads_integrate_exactly() {
        let start = Instant::now();
        let s = RequestStats::new(start);
        // In on one thread, Out on another: typically two shards, +1 and -1.
        std::thread::scope(|scope| {
            scope.spawn(|| s.handle_event(ReqEvent::ProxiedIn, start));
        });
        std::thread::scope(|scope| {
            scope.spawn(|| s.handle_event(ReqEvent::ProxiedOut, start + ms(250)));
        });
        assert_eq!(s.report(start + ms(1000)), report(0.25, 0.25, 1.0, 1.0));
        assert_eq!(s.report(start + ms(2000)), report(0.0, 0.0, 0.0, 0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn track_guard_records_in_and_out() {
        let start = Instant::now();
        let stats = Arc::new(RequestStats::new(start));
        let plain = stats.track(false);
        let proxied = stats.track(true);
        tokio::time::advance(ms(500)).await;
        drop(proxied);
        tokio::time::advance(ms(250)).await;
        drop(plain);
        tokio::time::advance(ms(250)).await;
        assert_eq!(stats.report(Instant::now()), report(1.25, 0.5, 2.0, 1.0));
    }

    #[test]
    fn guard_dropped_on_another_thread_ends_on_its_own_shard() {
        let stats = Arc::new(RequestStats::new(Instant::now()));
        let guards: Vec<InFlight> = (0..4)
            .map(|i| {
                let stats = Arc::clone(&stats);
                std::thread::spawn(move || stats.track(i % 2 == 0))
                    .join()
                    .unwrap()
            })
            .collect();
        let shards_in_flight: i64 = stats.shards.iter().map(|s| lock(&s.0).concurrency).sum();
        assert_eq!(shards_in_flight, 4);
        drop(guards);
        for shard in &stats.shards {
            let state = lock(&shard.0);
            assert_eq!((state.concurrency, state.proxied_concurrency), (0, 0));
        }
        let r = stats.report(Instant::now());
        assert_eq!((r.request_count, r.proxied_request_count), (4.0, 2.0));
    }

    #[test]
    fn concurrent_threads_balance() {
        const THREADS: usize = 8;
        const PER_THREAD: usize = 5_000;
        let start = Instant::now();
        let stats = Arc::new(RequestStats::new(start));
        // Each thread leaves one request open and hands its guard back.
        let open: Vec<InFlight> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let stats = &stats;
                    scope.spawn(move || {
                        for i in 0..PER_THREAD {
                            let proxied = i % 3 == 0;
                            if i % 2 == 0 {
                                drop(stats.track(proxied));
                            } else {
                                let (event_in, event_out) = if proxied {
                                    (ReqEvent::ProxiedIn, ReqEvent::ProxiedOut)
                                } else {
                                    (ReqEvent::In, ReqEvent::Out)
                                };
                                stats.handle_event(event_in, Instant::now());
                                stats.handle_event(event_out, Instant::now());
                            }
                        }
                        stats.track(t % 2 == 0)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let window_end = Instant::now();
        let proxied_per_thread = PER_THREAD.div_ceil(3);
        let r = stats.report(window_end);
        assert_eq!(r.request_count, (THREADS * (PER_THREAD + 1)) as f64);
        assert_eq!(
            r.proxied_request_count,
            (THREADS * proxied_per_thread + THREADS / 2) as f64
        );

        // The open requests span the whole next window: concurrency is exactly THREADS.
        let later = window_end + ms(1000);
        let r = stats.report(later);
        assert_eq!(r, report(THREADS as f64, (THREADS / 2) as f64, 0.0, 0.0));

        // Once they end, nothing is in flight. (The guards stamp the real clock, which is
        // behind `later`; like upstream, such events apply without integrating backwards.)
        drop(open);
        assert_eq!(stats.report(later + ms(1000)), report(0.0, 0.0, 0.0, 0.0));
        let in_flight: i64 = stats.shards.iter().map(|s| lock(&s.0).concurrency).sum();
        assert_eq!(in_flight, 0);
    }

    #[test]
    fn shards_are_padded_and_types_are_thread_safe() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_send<T: Send>() {}
        assert_send_sync::<RequestStats>();
        assert_send::<InFlight>();
        assert!(std::mem::align_of::<Shard>() >= 128);
    }
}
