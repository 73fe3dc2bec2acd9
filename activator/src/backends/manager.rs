//! One watcher per revision, fed from the source's snapshots: upstream's
//! `revisionBackendsManager` (`pkg/activator/net/revision_backends.go`).
//!
//! Upstream creates a watcher on a revision's first private-Endpoints event
//! and stops it when that Endpoints object is deleted. A snapshot has no
//! Endpoints objects, so here a watcher starts once the revision has any
//! address or a ClusterIP, and stops when the revision leaves the snapshot.
//! As upstream, stopping sends no update: the throttler forgets the revision
//! on its own when the revision goes away.

use std::collections::{BTreeSet, HashMap};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::BackendsOptions;
use super::watcher::{Dests, Watcher, WatcherConfig, WatcherInput};
use crate::revision::{DestsUpdate, RevisionKey};
use crate::source::{RevisionState, Snapshot};

/// Keeps each revision's healthy destinations and reports their changes.
pub struct BackendsManager {
    snapshots: watch::Receiver<Snapshot>,
    updates: mpsc::UnboundedSender<DestsUpdate>,
    options: BackendsOptions,
}

/// A running watcher; dropping it stops the watcher.
struct WatcherHandle {
    input: watch::Sender<WatcherInput>,
    task: JoinHandle<()>,
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BackendsManager {
    /// A manager reading `snapshots` and sending every routing change to
    /// `updates`.
    pub fn new(
        snapshots: watch::Receiver<Snapshot>,
        updates: mpsc::UnboundedSender<DestsUpdate>,
        options: BackendsOptions,
    ) -> Self {
        BackendsManager {
            snapshots,
            updates,
            options,
        }
    }

    /// [`run`](Self::run) on a task of its own. Aborting the task stops every
    /// watcher.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    /// Follows the snapshots until nobody receives the updates any more. If the
    /// source goes away first, the watchers keep the last snapshot's addresses.
    pub async fn run(mut self) {
        let mut watchers: HashMap<RevisionKey, WatcherHandle> = HashMap::new();
        let mut source_open = true;
        loop {
            let snapshot = self.snapshots.borrow_and_update().clone();
            self.reconcile(&snapshot, &mut watchers);
            tokio::select! {
                changed = self.snapshots.changed(), if source_open => {
                    if changed.is_err() {
                        tracing::warn!("revision source closed; keeping the last known revisions");
                        source_open = false;
                    }
                }
                () = self.updates.closed() => return,
            }
        }
    }

    /// Starts, feeds and stops watchers to match `snapshot`.
    fn reconcile(&self, snapshot: &Snapshot, watchers: &mut HashMap<RevisionKey, WatcherHandle>) {
        watchers.retain(|key, _| {
            let keep = snapshot.contains_key(key);
            if !keep {
                tracing::debug!(revision = %key, "revision gone; stopping its watcher");
            }
            keep
        });
        for (key, state) in snapshot.iter() {
            let input = watcher_input(state);
            match watchers.get(key) {
                Some(handle) => {
                    handle.input.send_if_modified(|current| {
                        if *current == input {
                            return false;
                        }
                        *current = input;
                        true
                    });
                }
                None if has_endpoints(&input) => {
                    let handle = self.start(key, state, input);
                    watchers.insert(key.clone(), handle);
                }
                None => {}
            }
        }
    }

    fn start(
        &self,
        key: &RevisionKey,
        state: &RevisionState,
        input: WatcherInput,
    ) -> WatcherHandle {
        tracing::debug!(revision = %key, "watching revision backends");
        let watcher = Watcher::new(
            WatcherConfig {
                key: key.clone(),
                options: self.options,
                probe_optimisation: state.probe_optimisation,
            },
            self.updates.clone(),
        );
        let (input, inputs) = watch::channel(input);
        WatcherHandle {
            input,
            task: tokio::spawn(watcher.run(inputs)),
        }
    }
}

fn watcher_input(state: &RevisionState) -> WatcherInput {
    WatcherInput {
        dests: Dests {
            ready: state.ready.iter().cloned().collect::<BTreeSet<_>>(),
            not_ready: state.not_ready.iter().cloned().collect(),
        },
        cluster_ip: state.cluster_ip.clone(),
    }
}

/// Whether the revision has what upstream would see as an Endpoints object.
fn has_endpoints(input: &WatcherInput) -> bool {
    !input.dests.ready.is_empty() || !input.dests.not_ready.is_empty() || input.cluster_ip.is_some()
}
