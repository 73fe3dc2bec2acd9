//! Publishing closed windows as the protobuf `Stat` served on `:9090/metrics` (spec §8a).
//!
//! Mirrors upstream's `ProtobufStatsReporter` (`pkg/queue/protobuf_stats_reporter.go`) and
//! the reporting loop in `pkg/queue/sharedmain/main.go`: a ticker closes a
//! [`RequestStats`] window every [`REPORTING_PERIOD`] and stores it; scrapes get the last
//! stored window, so they are up to one period stale and repeat if made more often. Before
//! the first tick the stat carries only the pod name.
//!
//! Unlike upstream, which marshals on every scrape, the stat is encoded once per report and
//! scrapes hand out a reference-counted copy of the bytes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use metrics_proto::{Message, Stat};
use tokio::time::{Instant, MissedTickBehavior};

use super::{RequestStats, RequestStatsReport, lock};

/// How often windows are closed and published (upstream's `reportingPeriod`).
pub const REPORTING_PERIOD: Duration = Duration::from_secs(1);

/// Holds the last published [`Stat`], ready to serve.
#[derive(Debug)]
pub struct StatReporter {
    pod_name: String,
    /// Request counts are divided by this to turn them into per-second rates.
    period_seconds: f64,
    started_at: Instant,
    current: Mutex<Published>,
}

#[derive(Debug)]
struct Published {
    stat: Stat,
    encoded: Bytes,
}

impl Published {
    fn new(stat: Stat) -> Self {
        let encoded = Bytes::from(stat.encode_to_vec());
        Self { stat, encoded }
    }
}

impl StatReporter {
    /// A reporter for `pod_name` (`SERVING_POD`, never changed afterwards) whose windows
    /// last `reporting_period`; `process_uptime` counts from `started_at`. Until the first
    /// [`report`](Self::report) the stat holds only the pod name.
    ///
    /// # Panics
    /// If `reporting_period` is zero (rates would be infinite).
    pub fn new(pod_name: String, reporting_period: Duration, started_at: Instant) -> Self {
        assert!(
            !reporting_period.is_zero(),
            "the reporting period must not be zero"
        );
        let initial = Stat {
            pod_name: pod_name.clone(),
            ..Stat::default()
        };
        Self {
            pod_name,
            period_seconds: reporting_period.as_secs_f64(),
            started_at,
            current: Mutex::new(Published::new(initial)),
        }
    }

    /// Publishes one closed window, as of `now`. Averages are taken as they are; the request
    /// counts become rates by dividing by the reporting period (upstream does the same, so
    /// with the 1 s period they stay counts).
    pub fn report(&self, report: &RequestStatsReport, now: Instant) {
        let stat = Stat {
            pod_name: self.pod_name.clone(),
            average_concurrent_requests: report.average_concurrency,
            average_proxied_concurrent_requests: report.average_proxied_concurrency,
            request_count: report.request_count / self.period_seconds,
            proxied_request_count: report.proxied_request_count / self.period_seconds,
            process_uptime: now.saturating_duration_since(self.started_at).as_secs_f64(),
            timestamp: 0,
        };
        // Encode before taking the lock so scrapes never wait on it.
        let published = Published::new(stat);
        *lock(&self.current) = published;
    }

    /// The encoded `Stat` of the last closed window: the `:9090/metrics` response body.
    pub fn current(&self) -> Bytes {
        lock(&self.current).encoded.clone()
    }

    /// The last closed window's `Stat`, decoded.
    pub fn current_stat(&self) -> Stat {
        lock(&self.current).stat.clone()
    }
}

/// Every `period`, closes the window of `stats` and publishes it into `reporter`. The first
/// window closes one `period` after the call, not at once. A late tick is not caught up with
/// a burst (which would publish near-empty windows); the schedule skips ahead, as Go's
/// ticker drops ticks. Runs until the future is dropped or its task aborted.
///
/// # Panics
/// If `period` is zero.
pub async fn run_reporter(stats: Arc<RequestStats>, reporter: Arc<StatReporter>, period: Duration) {
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let report = stats.report(now);
        reporter.report(&report, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ReqEvent;

    const POD: &str = "the-pod-00001-deployment-abcde";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Stats, a reporter and a running reporting loop, all starting now.
    fn start() -> (
        Arc<RequestStats>,
        Arc<StatReporter>,
        tokio::task::JoinHandle<()>,
    ) {
        let now = Instant::now();
        let stats = Arc::new(RequestStats::new(now));
        let reporter = Arc::new(StatReporter::new(POD.to_owned(), REPORTING_PERIOD, now));
        let task = tokio::spawn(run_reporter(
            Arc::clone(&stats),
            Arc::clone(&reporter),
            REPORTING_PERIOD,
        ));
        (stats, reporter, task)
    }

    fn decoded(reporter: &StatReporter) -> Stat {
        Stat::decode(reporter.current()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn before_first_tick_only_pod_name() {
        let (stats, reporter, task) = start();
        // Traffic before the first tick is not visible yet: no immediate first report.
        let guard = stats.track(true);
        tokio::time::sleep(ms(999)).await;

        let mut want = vec![0x0a, POD.len() as u8];
        want.extend_from_slice(POD.as_bytes());
        assert_eq!(reporter.current(), want);
        assert_eq!(
            reporter.current_stat(),
            Stat {
                pod_name: POD.to_owned(),
                ..Stat::default()
            }
        );
        drop(guard);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn counts_arrivals_in_the_window() {
        let (stats, reporter, task) = start();
        tokio::time::sleep(ms(100)).await;
        for i in 0..39 {
            drop(stats.track(i < 15));
        }
        tokio::time::sleep(ms(1400)).await;

        let stat = decoded(&reporter);
        assert_eq!(stat.request_count, 39.0);
        assert_eq!(stat.proxied_request_count, 15.0);
        assert_eq!(stat.pod_name, POD);
        assert_eq!(stat, reporter.current_stat());

        // The next window saw nothing.
        tokio::time::sleep(ms(1000)).await;
        let stat = reporter.current_stat();
        assert_eq!((stat.request_count, stat.proxied_request_count), (0.0, 0.0));
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn average_concurrency_of_two_half_second_requests() {
        let (stats, reporter, task) = start();
        tokio::time::sleep(ms(100)).await;
        let (a, b) = (stats.track(false), stats.track(false));
        tokio::time::sleep(ms(500)).await;
        drop((a, b));
        tokio::time::sleep(ms(800)).await;

        let stat = reporter.current_stat();
        assert!(
            (stat.average_concurrent_requests - 1.0).abs() < 1e-9,
            "{stat:?}"
        );
        assert_eq!(stat.average_proxied_concurrent_requests, 0.0);
        assert_eq!(stat.request_count, 2.0);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn uptime_grows_and_pod_name_stays() {
        let (stats, reporter, task) = start();
        for _ in 0..11 {
            stats.handle_event(ReqEvent::In, Instant::now());
            tokio::time::sleep(ms(500)).await;
            stats.handle_event(ReqEvent::Out, Instant::now());
            assert_eq!(reporter.current_stat().pod_name, POD);
        }
        // 5.5 s since start; the last report was at 5 s.
        let uptime = reporter.current_stat().process_uptime;
        assert!((5.0..=6.0).contains(&uptime), "uptime {uptime}");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn late_ticks_are_skipped_not_bursted() {
        let now = Instant::now();
        let stats = Arc::new(RequestStats::new(now));
        let reporter = Arc::new(StatReporter::new(POD.to_owned(), REPORTING_PERIOD, now));
        let task = tokio::spawn(run_reporter(
            Arc::clone(&stats),
            Arc::clone(&reporter),
            REPORTING_PERIOD,
        ));
        tokio::task::yield_now().await;
        // Jump 3.5 s without letting the reporter run, then let it catch up.
        stats.handle_event(ReqEvent::In, now);
        tokio::time::advance(ms(3500)).await;
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        // One late report covering the whole 3.5 s (a burst would have followed it with
        // zero-length windows that wipe the count).
        let stat = reporter.current_stat();
        assert_eq!(stat.request_count, 1.0);
        assert_eq!(stat.average_concurrent_requests, 1.0);
        assert_eq!(stat.process_uptime, 3.5);
        task.abort();
    }

    #[test]
    fn rates_use_the_reporting_period() {
        let start = Instant::now();
        let reporter = StatReporter::new(POD.to_owned(), Duration::from_secs(2), start);
        let window = RequestStatsReport {
            average_concurrency: 3.5,
            average_proxied_concurrency: 1.25,
            request_count: 10.0,
            proxied_request_count: 4.0,
        };
        reporter.report(&window, start + ms(2500));
        let want = Stat {
            pod_name: POD.to_owned(),
            average_concurrent_requests: 3.5,
            average_proxied_concurrent_requests: 1.25,
            request_count: 5.0,
            proxied_request_count: 2.0,
            process_uptime: 2.5,
            timestamp: 0,
        };
        assert_eq!(reporter.current_stat(), want);
        assert_eq!(reporter.current(), want.encode_to_vec());
    }

    #[test]
    #[should_panic(expected = "reporting period")]
    fn zero_period_is_rejected() {
        let _ = StatReporter::new(POD.to_owned(), Duration::ZERO, Instant::now());
    }
}
