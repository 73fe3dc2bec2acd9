//! What the activator knows about a revision: its identity and the settings of
//! its spec that the data path uses (`serving.knative.dev/v1` Revision). Filled
//! by a [`crate::source`] (a static file now, the Kubernetes API later).

use std::fmt;
use std::time::Duration;

/// A revision's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RevisionKey {
    pub namespace: String,
    pub name: String,
}

impl RevisionKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        RevisionKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for RevisionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How the revision's pods speak: its serving port named `h2c` makes it HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Http1,
    H2c,
}

impl Protocol {
    /// The Endpoints port name pods are reached on (`http` or `http2`).
    pub fn port_name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http",
            Protocol::H2c => "http2",
        }
    }
}

/// The spec fields of a revision the activator acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub key: RevisionKey,
    /// The `serving.knative.dev/service` label (empty without one): a metrics label.
    pub service: String,
    /// The `serving.knative.dev/configuration` label (empty without one).
    pub configuration: String,
    /// `spec.containerConcurrency`: 0 means unlimited.
    pub container_concurrency: u32,
    /// `spec.timeoutSeconds` (the webhook always sets it; 300 by default).
    pub timeout: Duration,
    /// `spec.responseStartTimeoutSeconds`; `None` disables it.
    pub response_start_timeout: Option<Duration>,
    /// `spec.idleTimeoutSeconds`; `None` (or 0) disables it.
    pub idle_timeout: Option<Duration>,
    pub protocol: Protocol,
}

/// Where a revision's traffic may go after a round of probing: upstream's
/// `revisionDestsUpdate`, sent by [`crate::backends`] to [`crate::throttler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestsUpdate {
    pub key: RevisionKey,
    /// Set when the revision is reached through its private service's ClusterIP
    /// (`ip:port`) instead of pod by pod.
    pub cluster_ip_dest: Option<String>,
    /// Pod mode: the healthy pods (`ip:port`). ClusterIP mode: the addresses
    /// Kubernetes reports ready (they only count towards capacity).
    pub dests: std::collections::BTreeSet<String>,
}

/// The name of a revision's private Service: upstream's
/// `kmeta.ChildName(rev, "-private")`. Kubernetes names stop at 63 characters,
/// so a long revision name keeps its first 23 and adds its MD5 in hex.
pub fn private_service_name(revision: &str) -> String {
    const SUFFIX: &str = "-private";
    const LONGEST: usize = 63;
    const MD5_HEX_LEN: usize = 32;
    if revision.len() <= LONGEST - SUFFIX.len() {
        return format!("{revision}{SUFFIX}");
    }
    use md5::{Digest, Md5};
    let head = LONGEST - SUFFIX.len() - MD5_HEX_LEN;
    let digest = Md5::digest(revision.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    // Revision names are DNS labels (ASCII), so byte slicing is safe; fall
    // back to the whole name if that ever does not hold.
    let prefix = revision.get(..head).unwrap_or(revision);
    format!("{prefix}{hex}{SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_service_names_follow_child_name() {
        assert_eq!(private_service_name("hello-00001"), "hello-00001-private");
        let fifty_five = "a".repeat(55);
        assert_eq!(
            private_service_name(&fifty_five),
            format!("{fifty_five}-private")
        );
        // Checked against Python's hashlib: "a" * 60.
        assert_eq!(
            private_service_name(&"a".repeat(60)),
            "aaaaaaaaaaaaaaaaaaaaaaacc7ed669cf88f201c3297c6a91e1d18d-private"
        );
    }
}
