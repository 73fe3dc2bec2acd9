//! What a request holds while it is proxied: its slot in the revision breaker,
//! its slot on the chosen pod and the destination. Upstream releases both when
//! the proxy function returns; here dropping the [`Lease`] does, so it can
//! travel with the response body until the last byte.

use queue_proxy::breaker::Permit;
use std::sync::Arc;

use super::tracker::{PodSlot, PodTracker};

/// A request's right to go to [`Lease::dest`] now. Dropping it frees the pod
/// slot first, then the revision slot, so a request woken by the latter finds
/// the pod free again.
#[derive(Debug)]
pub struct Lease {
    // Field order is drop order.
    target: Arc<PodTracker>,
    _pod: Option<PodSlot>,
    _revision: Option<Permit>,
    is_cluster_ip: bool,
}

impl Lease {
    pub(crate) fn pod(target: Arc<PodTracker>, pod: PodSlot, revision: Option<Permit>) -> Self {
        Lease {
            target,
            _pod: Some(pod),
            _revision: revision,
            is_cluster_ip: false,
        }
    }

    pub(crate) fn cluster_ip(target: Arc<PodTracker>, revision: Option<Permit>) -> Self {
        Lease {
            target,
            _pod: None,
            _revision: revision,
            is_cluster_ip: true,
        }
    }

    /// Where to send the request: a pod's or the ClusterIP's `ip:port`.
    pub fn dest(&self) -> &str {
        self.target.dest()
    }

    /// Whether [`Lease::dest`] is the revision's private ClusterIP service
    /// rather than a pod.
    pub fn is_cluster_ip(&self) -> bool {
        self.is_cluster_ip
    }
}
