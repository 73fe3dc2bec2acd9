//! The Knative header names and user agents the data plane acts on, as
//! `knative.dev/networking/pkg/http/header` defines them, and the request tests
//! built on them. Shared with the activator.
//!
//! Names are [`HeaderName`] constants: a lookup by `&str` parses and validates
//! the name on every call, which showed up as a sixth of the proxy's
//! instructions per request.

use http::{HeaderMap, HeaderName};

/// Set by the activator on requests it forwards; such requests are counted as
/// "proxied" in the autoscaler stats. Forwarded to the app unchanged.
pub const K_PROXY_REQUEST: HeaderName = HeaderName::from_static("k-proxy-request");
/// The value of [`K_PROXY_REQUEST`] the activator sends.
pub const ACTIVATOR_NAME: &str = "activator";
/// The Host the client meant; becomes the Host toward the app and is removed.
pub const K_ORIGINAL_HOST: HeaderName = HeaderName::from_static("k-original-host");
/// A non-empty value marks a kubelet probe: it bypasses the breaker and stats.
pub const K_KUBELET_PROBE: HeaderName = HeaderName::from_static("k-kubelet-probe");
/// Probe kind: `queue` (health), `probe` (network probe), `activator`.
pub const K_NETWORK_PROBE: HeaderName = HeaderName::from_static("k-network-probe");
/// Echoed back on network probes.
pub const K_NETWORK_HASH: HeaderName = HeaderName::from_static("k-network-hash");
/// Routing headers set by the activator and ingress; stripped before the app.
pub const KNATIVE_SERVING_REVISION: HeaderName =
    HeaderName::from_static("knative-serving-revision");
/// See [`KNATIVE_SERVING_REVISION`].
pub const KNATIVE_SERVING_NAMESPACE: HeaderName =
    HeaderName::from_static("knative-serving-namespace");
/// Appended with the peer's IP on every proxied request.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// User-agent prefix of kubelet probes.
pub const KUBE_PROBE_UA_PREFIX: &str = "kube-probe/";
/// User agent of the activator's health checks of queue-proxies.
pub const ACTIVATOR_USER_AGENT: &str = "Knative-Activator-Probe";
/// User agent of the autoscaler's probes of the public service.
pub const AUTOSCALING_USER_AGENT: &str = "Knative-Autoscaling-Probe";
/// `K-Network-Probe` value of a health check answered by the queue-proxy.
pub const QUEUE_PROBE_VALUE: &str = "queue";
/// `K-Network-Probe` value of an ingress network probe.
pub const NETWORK_PROBE_VALUE: &str = "probe";

/// Upstream's `IsKubeletProbe`: a `kube-probe/` user agent or any non-empty
/// `K-Kubelet-Probe` header.
pub fn is_kubelet_probe(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::USER_AGENT)
        .is_some_and(|ua| ua.as_bytes().starts_with(KUBE_PROBE_UA_PREFIX.as_bytes()))
        || headers.get(K_KUBELET_PROBE).is_some_and(|v| !v.is_empty())
}

/// Upstream's `IsProbe`, which keeps probes out of telemetry and (unless
/// enabled) the request log: a kubelet probe, or any non-empty `K-Network-Probe`.
pub fn is_probe(headers: &HeaderMap) -> bool {
    is_kubelet_probe(headers) || headers.get(K_NETWORK_PROBE).is_some_and(|v| !v.is_empty())
}

/// Whether the request came through the activator (`K-Proxy-Request: activator`).
pub fn is_proxied_by_activator(headers: &HeaderMap) -> bool {
    headers
        .get(K_PROXY_REQUEST)
        .is_some_and(|v| v.as_bytes() == ACTIVATOR_NAME.as_bytes())
}

/// Upstream's `RewriteHostOut`: a non-empty `K-Original-Host` becomes the Host
/// and is removed.
pub fn rewrite_host_out(headers: &mut HeaderMap) {
    if let Some(original) = headers.remove(K_ORIGINAL_HOST)
        && !original.is_empty()
    {
        headers.insert(http::header::HOST, original);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_probe_by_user_agent_or_header() {
        let mut h = HeaderMap::new();
        assert!(!is_kubelet_probe(&h));
        h.insert("user-agent", "kube-probe/1.29".parse().unwrap());
        assert!(is_kubelet_probe(&h));
        let mut h = HeaderMap::new();
        h.insert(K_KUBELET_PROBE, "".parse().unwrap());
        assert!(!is_kubelet_probe(&h));
        h.insert(K_KUBELET_PROBE, "x".parse().unwrap());
        assert!(is_kubelet_probe(&h));
    }

    #[test]
    fn proxied_only_for_exact_activator() {
        let mut h = HeaderMap::new();
        h.insert(K_PROXY_REQUEST, "Activator".parse().unwrap());
        assert!(!is_proxied_by_activator(&h));
        h.insert(K_PROXY_REQUEST, "activator".parse().unwrap());
        assert!(is_proxied_by_activator(&h));
    }
}
