//! One revision's health state machine: upstream's `revisionWatcher`
//! (`pkg/activator/net/revision_backends.go`, spec §5.3).
//!
//! The watcher turns what Kubernetes says about a revision's pods (ready and
//! not-ready addresses, the private Service's ClusterIP) into where the
//! throttler may send traffic, by probing the queue-proxies itself:
//!
//! - pods are admitted one by one once they answer the probe, even before
//!   Kubernetes marks them ready when probe optimisation allows it, so a cold
//!   start does not wait for the kubelet's next readiness probe;
//! - a pod Kubernetes moves from ready to not ready is dropped and must pass a
//!   probe again;
//! - when no pod can be probed directly but the ClusterIP can (a mesh that
//!   forbids pod addressing), the revision switches, for the rest of this
//!   watcher's life, to the ClusterIP;
//! - healthy pods are not probed again while they stay in the Endpoints.
//!
//! The only departure from upstream is the re-probe cadence (see `schedule`).

use std::collections::BTreeSet;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::probe::{ProbeOutcome, probe};
use super::schedule::{Backoff, ProbeOptions};
use super::{BackendsOptions, MeshMode};
use crate::revision::{DestsUpdate, RevisionKey};

/// A revision's addresses as Kubernetes reports them (`ip:port`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Dests {
    pub(crate) ready: BTreeSet<String>,
    pub(crate) not_ready: BTreeSet<String>,
}

impl Dests {
    fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.not_ready.is_empty()
    }

    fn all(&self) -> BTreeSet<String> {
        self.ready.union(&self.not_ready).cloned().collect()
    }

    /// Addresses that were ready in `prev` and are not ready now.
    fn became_not_ready(&self, prev: &Dests) -> Vec<String> {
        prev.ready.intersection(&self.not_ready).cloned().collect()
    }
}

/// What the manager tells a watcher: upstream's Endpoints event, plus the
/// private Service's ClusterIP which upstream reads from its lister.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WatcherInput {
    pub(crate) dests: Dests,
    pub(crate) cluster_ip: Option<String>,
}

/// Settings fixed when the watcher is created.
pub(crate) struct WatcherConfig {
    pub(crate) key: RevisionKey,
    pub(crate) options: BackendsOptions,
    pub(crate) probe_optimisation: bool,
}

/// The result of probing a revision's pods once.
struct PodRound {
    healthy: BTreeSet<String>,
    /// The healthy set is what it was before the round.
    unchanged: bool,
    /// Some pod answered with something a mesh would not send.
    saw_not_mesh: bool,
}

/// One revision's health state.
pub(crate) struct Watcher {
    key: RevisionKey,
    mesh_mode: MeshMode,
    probe: ProbeOptions,
    probe_optimisation: bool,
    /// `Host` for probes when passthrough load balancing is on.
    passthrough_host: Option<String>,
    updates: mpsc::UnboundedSender<DestsUpdate>,

    /// Pods that passed a probe (or, mesh mode `disabled`, are ready).
    healthy_pods: BTreeSet<String>,
    cluster_ip_healthy: bool,
    /// Cleared for good once the ClusterIP passed while no pod did.
    pods_addressable: bool,
    /// The missing ClusterIP was already reported.
    warned_no_cluster_ip: bool,
}

impl Watcher {
    pub(crate) fn new(config: WatcherConfig, updates: mpsc::UnboundedSender<DestsUpdate>) -> Self {
        let passthrough_host = config.options.passthrough_lb.then(|| {
            format!(
                "{}.{}",
                crate::revision::private_service_name(&config.key.name),
                config.key.namespace
            )
        });
        Watcher {
            key: config.key,
            mesh_mode: config.options.mesh_mode,
            probe: config.options.probe,
            probe_optimisation: config.probe_optimisation,
            passthrough_host,
            updates,
            healthy_pods: BTreeSet::new(),
            cluster_ip_healthy: false,
            pods_addressable: true,
            warned_no_cluster_ip: false,
        }
    }

    /// Runs until `inputs`' sender is dropped. The first input is the current
    /// value of `inputs`.
    pub(crate) async fn run(mut self, mut inputs: watch::Receiver<WatcherInput>) {
        let mut backoff = Backoff::new(self.probe);
        let mut cur = WatcherInput::default();
        loop {
            // An Endpoints (or ClusterIP) change.
            let input = inputs.borrow_and_update().clone();
            if input.dests != cur.dests {
                backoff.reset();
            }
            let prev = std::mem::replace(&mut cur, input).dests;
            self.check(&cur, &prev).await;
            let mut last_check = Instant::now();

            // Re-probes until the next change. They compare the addresses with
            // themselves (upstream keeps comparing with the previous event's,
            // re-emitting an identical update at every tick after a pod went
            // from ready to not ready).
            loop {
                let next = self
                    .wants_reprobe(&cur.dests)
                    .then(|| last_check + backoff.current());
                tokio::select! {
                    changed = inputs.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        break;
                    }
                    () = sleep_until(next) => {
                        backoff.advance();
                        self.check(&cur, &cur.dests).await;
                        last_check = Instant::now();
                    }
                }
            }
        }
    }

    /// Upstream's ticker condition: some address, no healthy ClusterIP, and
    /// some address not yet healthy.
    fn wants_reprobe(&self, cur: &Dests) -> bool {
        !cur.is_empty() && !self.cluster_ip_healthy && cur.all() != self.healthy_pods
    }

    /// Upstream's `checkDests`: probe what needs it and emit an update when
    /// the routable set changes.
    async fn check(&mut self, cur: &WatcherInput, prev: &Dests) {
        let dests = &cur.dests;
        if dests.is_empty() {
            // Scaled to zero.
            self.cluster_ip_healthy = false;
            self.healthy_pods.clear();
            self.send(None, BTreeSet::new());
            return;
        }

        if self.pods_addressable && self.mesh_mode != MeshMode::Enabled {
            let demoted = dests.became_not_ready(prev);
            for pod in &demoted {
                self.healthy_pods.remove(pod);
            }
            if !demoted.is_empty() {
                tracing::info!(
                    revision = %self.key,
                    pods = ?demoted,
                    "pods became not ready; probing them again"
                );
            }
            let round = self.probe_pods(dests).await;
            if !round.unchanged || !demoted.is_empty() {
                self.healthy_pods = round.healthy.clone();
                self.send(None, round.healthy);
                return;
            }
            if !round.healthy.is_empty() {
                return;
            }
            // A non-mesh answer: pods are addressable, just not healthy yet.
            if round.saw_not_mesh {
                return;
            }
        }

        if self.passthrough_host.is_some() || self.mesh_mode == MeshMode::Disabled {
            return;
        }

        let Some(cluster_ip) = cur.cluster_ip.as_deref() else {
            if !self.warned_no_cluster_ip {
                tracing::warn!(
                    revision = %self.key,
                    "no pod answers and the private service's ClusterIP is unknown"
                );
                self.warned_no_cluster_ip = true;
            }
            return;
        };
        self.warned_no_cluster_ip = false;

        if self.cluster_ip_healthy {
            self.send(Some(cluster_ip.to_owned()), dests.ready.clone());
            return;
        }
        let deadline = Instant::now() + self.probe.timeout;
        let outcome = probe(cluster_ip, self.passthrough_host.as_deref(), deadline).await;
        if outcome.is_healthy() {
            tracing::info!(
                revision = %self.key,
                cluster_ip,
                "pods cannot be probed directly; routing through the ClusterIP"
            );
            self.pods_addressable = false;
            self.cluster_ip_healthy = true;
            self.healthy_pods.clear();
            self.send(Some(cluster_ip.to_owned()), dests.ready.clone());
        } else {
            tracing::debug!(revision = %self.key, cluster_ip, ?outcome, "ClusterIP not healthy");
        }
    }

    /// Upstream's `probePodIPs`: probe, in parallel and under one deadline,
    /// every address not known healthy.
    async fn probe_pods(&self, dests: &Dests) -> PodRound {
        let all = dests.all();
        if all == self.healthy_pods {
            return PodRound {
                healthy: self.healthy_pods.clone(),
                unchanged: true,
                saw_not_mesh: false,
            };
        }
        let mut healthy = self.healthy_pods.clone();
        if self.mesh_mode != MeshMode::Auto {
            // Without mesh detection to do, Kubernetes' word is enough.
            healthy.extend(dests.ready.iter().cloned());
        }
        let deadline = Instant::now() + self.probe.timeout;
        let host = self.passthrough_host.as_deref();
        let to_probe: Vec<&String> = all.iter().filter(|d| !healthy.contains(*d)).collect();
        let outcomes =
            futures_util::future::join_all(to_probe.iter().map(|dest| probe(dest, host, deadline)))
                .await;

        let mut saw_not_mesh = false;
        for (dest, outcome) in to_probe.into_iter().zip(outcomes) {
            saw_not_mesh |= outcome.rules_out_mesh();
            if outcome == ProbeOutcome::Healthy
                && (dests.ready.contains(dest) || self.probe_optimisation)
            {
                healthy.insert(dest.clone());
            }
        }
        healthy.retain(|d| all.contains(d));
        PodRound {
            unchanged: healthy == self.healthy_pods,
            healthy,
            saw_not_mesh,
        }
    }

    fn send(&self, cluster_ip_dest: Option<String>, dests: BTreeSet<String>) {
        tracing::debug!(revision = %self.key, ?cluster_ip_dest, ?dests, "backends changed");
        // A closed channel means the activator is stopping; the manager ends us.
        let _ = self.updates.send(DestsUpdate {
            key: self.key.clone(),
            cluster_ip_dest,
            dests,
        });
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
