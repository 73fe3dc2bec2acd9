//! Stat reporting to the autoscaler (spec §6): what the activator measures per revision
//! and how it gets there.
//!
//! - [`concurrency`]: per-revision request statistics, the immediate poke for a revision's
//!   first request and the batch every second (upstream's
//!   `pkg/activator/handler/concurrency_reporter.go`).
//! - [`link`]: the websocket the batches travel on, kept up forever, whose state gates
//!   readiness (knative.dev/pkg `websocket/connection.go`, `pkg/activator/stat_reporter.go`).
//!
//! The two meet through an unbounded channel of [`WireStatMessages`]: the reporter never
//! waits on the network, and the link drops what it cannot send.
//!
//! [`WireStatMessages`]: metrics_proto::WireStatMessages

pub mod concurrency;
pub mod link;

pub use concurrency::{ConcurrencyReporter, InFlight, REPORT_INTERVAL};
pub use link::{AutoscalerLink, Backoff, LinkError, LinkOptions};

/// The port the autoscaler's stat server listens on.
pub const AUTOSCALER_PORT: u16 = 8080;

/// Where the autoscaler's stat server is: `ws://autoscaler.<ns>.svc.<domain>:8080`
/// (upstream's `autoscalerEndpoint` in `cmd/activator/main.go`).
pub fn autoscaler_url(system_namespace: &str, cluster_domain: &str) -> String {
    format!("ws://autoscaler.{system_namespace}.svc.{cluster_domain}:{AUTOSCALER_PORT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_names_the_autoscaler_service() {
        assert_eq!(
            autoscaler_url("knative-serving", "cluster.local"),
            "ws://autoscaler.knative-serving.svc.cluster.local:8080"
        );
    }
}
