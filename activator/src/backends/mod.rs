//! Which destinations of each revision can take traffic (spec §5).
//!
//! Mirrors upstream's `pkg/activator/net/revision_backends.go`: the activator
//! does not trust Kubernetes readiness alone but probes each pod's
//! queue-proxy, so a revision scaling from zero gets traffic the moment its
//! first pod can serve, and falls back to the private Service's ClusterIP when
//! a service mesh hides the pods.
//!
//! - [`BackendsManager`] (`manager`): one watcher per revision, fed from the
//!   [`RevisionSource`](crate::source::RevisionSource)'s snapshots; every
//!   change of where a revision's traffic may go is sent as a
//!   [`DestsUpdate`](crate::revision::DestsUpdate).
//! - `watcher`: a revision's health state machine (upstream's `revisionWatcher`).
//! - `probe`: the probe request and its verdict ([`probe_queue_proxy`]).
//! - `schedule`: when unhealthy addresses are probed again ([`ProbeOptions`]).
//!
//! # Deviations from upstream
//!
//! - **Re-probe cadence.** Upstream re-probes not-yet-healthy addresses every
//!   200 ms. Here they are re-probed every 10 ms for 5 s after an address
//!   change, then the wait grows 1.5× per attempt up to 200 ms, so a pod that
//!   becomes ready during a typical start is admitted within milliseconds
//!   instead of up to 200 ms later. Healthy pods are still never re-probed.
//! - **No redundant updates.** Upstream, after a pod moved from ready to not
//!   ready, re-emits the same update at every tick until the Endpoints change
//!   again; here ticks emit only when the healthy set changes.
//! - **ClusterIP changes.** Upstream reads the ClusterIP only when it has pods
//!   to look after; here a change of the ClusterIP alone also re-runs the
//!   checks, so a revision in ClusterIP mode follows a recreated Service.
//! - Probes do not share connections with the proxy (see `probe`).

mod manager;
mod probe;
mod schedule;
mod watcher;

pub use manager::BackendsManager;
pub use probe::{
    PASSTHROUGH_LB_HEADER, PROBE_HEADER, PROBE_HEADER_VALUE, PROBE_PATH, PROBE_USER_AGENT,
    ProbeOutcome, probe_queue_proxy,
};
pub use schedule::{BACKOFF_FACTOR, ProbeOptions};

use std::str::FromStr;

/// `mesh-compatibility-mode` of `config-network`: whether pods are probed
/// directly, only the ClusterIP is used, or the activator finds out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MeshMode {
    /// Probe pods; fall back to the ClusterIP when only mesh-like failures
    /// are seen and the ClusterIP answers.
    #[default]
    Auto,
    /// Never probe pods: route through the ClusterIP once it answers.
    Enabled,
    /// Never use the ClusterIP; pods Kubernetes reports ready need no probe.
    Disabled,
}

/// A `mesh-compatibility-mode` value that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mesh-compatibility-mode: {0:?} is not one of enabled, disabled, auto")]
pub struct UnknownMeshMode(pub String);

impl FromStr for MeshMode {
    type Err = UnknownMeshMode;

    /// Case-insensitive, as upstream's config parsing.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "auto" => Ok(MeshMode::Auto),
            "enabled" => Ok(MeshMode::Enabled),
            "disabled" => Ok(MeshMode::Disabled),
            _ => Err(UnknownMeshMode(value.to_owned())),
        }
    }
}

/// How the backends are tracked; fixed for the manager's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendsOptions {
    pub mesh_mode: MeshMode,
    /// `enable-mesh-pod-addressability`: probes carry the private Service's
    /// host and `K-Passthrough-Lb: true`, and the ClusterIP is never used.
    pub passthrough_lb: bool,
    pub probe: ProbeOptions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_mode_parses_case_insensitively() {
        assert_eq!("Enabled".parse(), Ok(MeshMode::Enabled));
        assert_eq!("DISABLED".parse(), Ok(MeshMode::Disabled));
        assert_eq!("auto".parse(), Ok(MeshMode::Auto));
        let err = "sometimes".parse::<MeshMode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "mesh-compatibility-mode: \"sometimes\" is not one of enabled, disabled, auto"
        );
    }
}
