//! Per-revision request statistics and the batches they become (spec §6.1).
//!
//! Mirrors upstream's `ConcurrencyReporter` (`pkg/activator/handler/concurrency_reporter.go`):
//! every request through the activator is tracked against its revision; the first request
//! of a revision this activator has not seen (or has forgotten) sends the one-message
//! *poke* batch `(1, 1)` at once, so the autoscaler can scale from zero before the next
//! tick; every tick then sends one batch with a [`Stat`] per known revision, discounted by
//! the poke on the first report after it.
//!
//! The averaging itself is the queue-proxy's [`RequestStats`], the same time-weighted
//! statistics upstream shares between both components.
//!
//! # Why the extra counters
//!
//! Upstream's read-locked lookup races with the write-locked removal of idle entries: a
//! request can look an entry up, the report can decide it was idle and delete it, and the
//! request then records into an entry nobody reports any more. Here each entry counts the
//! requests that started and finished on it (started is bumped under the map's read lock,
//! after the `in` event), and removal, under the write lock, re-checks that nothing
//! started since the report looked and nothing is in flight. A request thus either lands
//! in a reported entry or finds none and pokes. The same check keeps an entry whose window
//! was empty (zero length) while a request was in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use metrics_proto::{Stat, WireStatMessage, WireStatMessages};
use parking_lot::{Mutex, RwLock};
use queue_proxy::stats::{self, RequestStats};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::revision::RevisionKey;

/// How often upstream reports to the autoscaler (`reportInterval`).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Tracks requests per revision and turns them into [`WireStatMessages`] batches; see the
/// module docs. Share it behind an [`Arc`].
#[derive(Debug)]
pub struct ConcurrencyReporter {
    pod_name: String,
    batches: mpsc::UnboundedSender<WireStatMessages>,
    /// Read-locked by every request; write-locked only to add a revision or to remove idle
    /// ones.
    revisions: RwLock<HashMap<RevisionKey, Arc<Entry>>>,
    /// The adjusted concurrency of every revision in the last report.
    last: Mutex<HashMap<RevisionKey, f64>>,
}

/// One revision's statistics (upstream's `revisionStats`).
#[derive(Debug)]
struct Entry {
    stats: Arc<RequestStats>,
    /// Requests whose `in` event has been recorded.
    started: AtomicU64,
    /// Requests whose `out` event has been recorded.
    finished: AtomicU64,
    /// Set until the first report, which discounts the poke's `(1, 1)`.
    first: AtomicBool,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            stats: Arc::new(RequestStats::new(now)),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            first: AtomicBool::new(true),
        }
    }

    /// Records the `in` event. Must run while the map's read (or write) lock is held, so a
    /// removal either happens before the lookup or sees `started` move.
    fn begin(self: &Arc<Self>) -> InFlight {
        let request = self.stats.track(false);
        // After the `in` event: whoever sees the new count also sees the event.
        self.started.fetch_add(1, Ordering::AcqRel);
        InFlight {
            request: Some(request),
            entry: Arc::clone(self),
        }
    }
}

/// A request counted against its revision by [`ConcurrencyReporter::track`]; dropping it
/// records the request's end.
#[derive(Debug)]
#[must_use = "dropping the guard at once records the request as already finished"]
pub struct InFlight {
    /// Always `Some` until dropped; taken first so `out` is recorded before `finished`
    /// moves.
    request: Option<stats::InFlight>,
    entry: Arc<Entry>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        drop(self.request.take());
        self.entry.finished.fetch_add(1, Ordering::AcqRel);
    }
}

/// What a report learnt about one entry, kept until idle entries are removed.
struct Reported {
    key: RevisionKey,
    entry: Arc<Entry>,
    started_before: u64,
}

impl ConcurrencyReporter {
    /// A reporter naming itself `pod_name` (`POD_NAME`) in every stat and sending its
    /// batches (pokes and reports) to `batches`.
    pub fn new(pod_name: String, batches: mpsc::UnboundedSender<WireStatMessages>) -> Self {
        Self {
            pod_name,
            batches,
            revisions: RwLock::new(HashMap::new()),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request to `key` as arrived now and in flight until the guard is dropped.
    /// The first request of a revision without an entry creates it and, before returning,
    /// sends the poke batch `{pod_name, 1, 1}`.
    pub fn track(self: &Arc<Self>, key: &RevisionKey) -> InFlight {
        if let Some(entry) = self.revisions.read().get(key) {
            return entry.begin();
        }
        let mut revisions = self.revisions.write();
        // Another request may have created it between the two locks.
        if let Some(entry) = revisions.get(key) {
            return entry.begin();
        }
        let entry = Arc::new(Entry::new(Instant::now()));
        let guard = entry.begin();
        revisions.insert(key.clone(), entry);
        // Sent under the write lock: no report can include the entry before the poke is
        // queued, so the autoscaler always sees the poke first.
        self.send(self.poke(key));
        guard
    }

    fn poke(&self, key: &RevisionKey) -> WireStatMessages {
        WireStatMessages {
            messages: vec![self.message(key, 1.0, 1.0)],
        }
    }

    fn message(&self, key: &RevisionKey, concurrency: f64, count: f64) -> WireStatMessage {
        WireStatMessage {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            // Always present: the autoscaler skips messages without a stat.
            stat: Some(Stat {
                pod_name: self.pod_name.clone(),
                average_concurrent_requests: concurrency,
                request_count: count,
                ..Stat::default()
            }),
        }
    }

    fn send(&self, batch: WireStatMessages) {
        if self.batches.send(batch).is_err() {
            tracing::debug!("the autoscaler link is gone; stats batch not sent");
        }
    }

    /// Closes every revision's window at `now` and returns the batch to send: one message
    /// per revision, sorted by key, the first one after a poke discounted by it. Revisions
    /// idle for the whole window (nothing in flight) are forgotten after being reported,
    /// so their next request pokes again. `None` when no revision is known.
    pub fn report(&self, now: Instant) -> Option<WireStatMessages> {
        // Work on a snapshot so requests are not held up while windows close.
        let mut snapshot: Vec<(RevisionKey, Arc<Entry>)> = self
            .revisions
            .read()
            .iter()
            .map(|(key, entry)| (key.clone(), Arc::clone(entry)))
            .collect();
        if snapshot.is_empty() {
            self.last.lock().clear();
            return None;
        }
        snapshot.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        let mut messages = Vec::with_capacity(snapshot.len());
        let mut last = HashMap::with_capacity(snapshot.len());
        let mut idle = Vec::new();
        for (key, entry) in snapshot {
            // Read before closing the window: a request counted here is in the window.
            let started_before = entry.started.load(Ordering::Acquire);
            let window = entry.stats.report(now);
            let first = if entry.first.swap(false, Ordering::AcqRel) {
                1.0
            } else {
                0.0
            };
            let concurrency = (window.average_concurrency - first).max(0.0);
            let count = window.request_count - first;
            messages.push(self.message(&key, concurrency, count));
            last.insert(key.clone(), concurrency);
            if window.average_concurrency == 0.0 {
                idle.push(Reported {
                    key,
                    entry,
                    started_before,
                });
            }
        }
        *self.last.lock() = last;
        if !idle.is_empty() {
            self.forget_idle(idle);
        }
        Some(WireStatMessages { messages })
    }

    fn forget_idle(&self, idle: Vec<Reported>) {
        let mut revisions = self.revisions.write();
        for Reported {
            key,
            entry,
            started_before,
        } in idle
        {
            let started = entry.started.load(Ordering::Acquire);
            let finished = entry.finished.load(Ordering::Acquire);
            let untouched = started == started_before && finished == started;
            let same = revisions
                .get(&key)
                .is_some_and(|current| Arc::ptr_eq(current, &entry));
            if untouched && same {
                revisions.remove(&key);
            }
        }
    }

    /// The adjusted average concurrency `key` had in the last report (what upstream records
    /// as `kn.revision.request.concurrency`); `None` if it was not in that report.
    pub fn last_concurrency(&self, key: &RevisionKey) -> Option<f64> {
        self.last.lock().get(key).copied()
    }

    /// Every revision's adjusted concurrency in the last report.
    pub fn last_concurrencies(&self) -> Vec<(RevisionKey, f64)> {
        self.last
            .lock()
            .iter()
            .map(|(key, value)| (key.clone(), *value))
            .collect()
    }

    /// Reports every `period` (the first one `period` from now) and sends each non-empty
    /// batch. A late tick is skipped rather than caught up with a burst, as Go's ticker
    /// drops ticks. Runs until the future is dropped.
    ///
    /// # Panics
    /// If `period` is zero.
    pub async fn run(self: Arc<Self>, period: Duration) {
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            ticker.tick().await;
            if let Some(batch) = self.report(Instant::now()) {
                self.send(batch);
            }
        }
    }
}
