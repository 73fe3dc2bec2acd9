//! Where the activator learns about revisions and their endpoints.
//!
//! Upstream watches Revisions, the private and public Endpoints and the private
//! Services through informers. Here a [`RevisionSource`] publishes the same
//! knowledge as a [`Snapshot`]: a static file now (`static_file`), the
//! Kubernetes API later. Everything downstream (backends, throttler, handler)
//! reads snapshots and never knows which source produced them.

use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

use crate::revision::{Revision, RevisionKey};

pub mod kubernetes;
pub mod static_file;

/// What the source knows about one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionState {
    pub revision: Revision,
    /// Private Endpoints, `addresses`: pods Kubernetes reports ready (`ip:port`,
    /// the port named `http`/`http2`; IPv6 bracketed).
    pub ready: Vec<String>,
    /// Private Endpoints, `notReadyAddresses` (`ip:port`).
    pub not_ready: Vec<String>,
    /// The private Service's `clusterIP:port`, if known.
    pub cluster_ip: Option<String>,
    /// Public Endpoints' ready IPs: the activators serving this revision (for
    /// subsetting). Empty when unknown.
    pub activators: Vec<String>,
    /// Probe optimisation (§5.1): route to a not-yet-ready pod whose queue-proxy
    /// already answers. Off for exec readiness probes and startup probes.
    pub probe_optimisation: bool,
}

/// Every revision the source knows, by key.
pub type Snapshot = Arc<BTreeMap<RevisionKey, RevisionState>>;

/// A publisher of [`Snapshot`]s.
pub trait RevisionSource: Send + Sync + 'static {
    /// The latest snapshot, and every later one.
    fn subscribe(&self) -> watch::Receiver<Snapshot>;
}
