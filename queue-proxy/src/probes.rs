//! The answers to probes, which never reach the app: upstream's `Drainer`
//! (`knative.dev/pkg/network/handlers/drain.go`) with the queue-proxy's health
//! handler (`pkg/queue/health/handler.go`), §3 step 4 and §6.3 of the spec.
//!
//! - A **health check** is any request whose User-Agent starts with
//!   `kube-probe/`, `Knative-Activator-Probe` or `Knative-Autoscaling-Probe`, on
//!   any path and method. Draining → 503 `shutting down`; `K-Network-Probe` other
//!   than `queue` → 400 naming the value; the app not ready → 503 with no body;
//!   else 200 `queue`.
//! - A **network probe** is `K-Network-Probe: probe`. Draining → 503
//!   `shutting down`; no `K-Network-Hash` → 400; else 200 echoing the hash.
//!
//! Everything else is the app's. (The kubelet test here is the user agent only;
//! a `K-Kubelet-Probe` header merely bypasses the breaker further in.)

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use std::sync::Arc;

use crate::body::ProxyBody;
use crate::drain::Drainer;
use crate::error::go_http_error;
use crate::headers::{
    ACTIVATOR_USER_AGENT, AUTOSCALING_USER_AGENT, K_NETWORK_HASH, K_NETWORK_PROBE,
    KUBE_PROBE_UA_PREFIX, NETWORK_PROBE_VALUE, QUEUE_PROBE_VALUE,
};
use crate::readiness::Readiness;

/// Which probe a request is, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// kubelet, activator or autoscaler health check.
    HealthCheck,
    /// An ingress network probe (`K-Network-Probe: probe`).
    NetworkProbe,
}

/// Classifies a request as upstream's drainer does.
pub fn classify(headers: &HeaderMap) -> Option<ProbeKind> {
    let ua = headers
        .get(header::USER_AGENT)
        .map_or(&b""[..], HeaderValue::as_bytes);
    if [
        KUBE_PROBE_UA_PREFIX,
        ACTIVATOR_USER_AGENT,
        AUTOSCALING_USER_AGENT,
    ]
    .iter()
    .any(|prefix| ua.starts_with(prefix.as_bytes()))
    {
        return Some(ProbeKind::HealthCheck);
    }
    headers
        .get(K_NETWORK_PROBE)
        .is_some_and(|v| v.as_bytes() == NETWORK_PROBE_VALUE.as_bytes())
        .then_some(ProbeKind::NetworkProbe)
}

/// Answers probes from the drain state and the app's readiness.
pub struct ProbeAnswers {
    drainer: Arc<Drainer>,
    readiness: Arc<Readiness>,
}

impl ProbeAnswers {
    /// Answers that consult `drainer` and, for health checks, `readiness`.
    pub fn new(drainer: Arc<Drainer>, readiness: Arc<Readiness>) -> Self {
        ProbeAnswers { drainer, readiness }
    }

    /// The answer to a probe of `kind` with these request headers.
    pub async fn answer(&self, kind: ProbeKind, headers: &HeaderMap) -> Response<ProxyBody> {
        if self.drainer.is_draining() {
            return go_http_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        }
        match kind {
            ProbeKind::HealthCheck => self.health(headers).await,
            ProbeKind::NetworkProbe => network_probe(headers),
        }
    }

    async fn health(&self, headers: &HeaderMap) -> Response<ProxyBody> {
        let value = headers
            .get(K_NETWORK_PROBE)
            .map_or(&b""[..], HeaderValue::as_bytes);
        if value != QUEUE_PROBE_VALUE.as_bytes() {
            let message = format!(
                "unexpected probe header value: {}",
                String::from_utf8_lossy(value)
            );
            return go_http_error(StatusCode::BAD_REQUEST, &message);
        }
        if !self.readiness.check().await {
            let mut resp = Response::new(ProxyBody::empty());
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return resp;
        }
        let mut resp = Response::new(ProxyBody::local(QUEUE_PROBE_VALUE));
        // What Go sniffs for the body `queue`.
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

/// `serveKProbe`: echo the hash, or refuse a probe without one. The activator
/// answers network probes the same way.
pub fn network_probe(headers: &HeaderMap) -> Response<ProxyBody> {
    match headers.get(K_NETWORK_HASH).filter(|h| !h.is_empty()) {
        Some(hash) => {
            let mut resp = Response::new(ProxyBody::empty());
            resp.headers_mut().insert(K_NETWORK_HASH, hash.clone());
            resp
        }
        None => go_http_error(
            StatusCode::BAD_REQUEST,
            "a probe request must contain a non-empty \"K-Network-Hash\" header",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn classification_follows_the_drainer() {
        assert_eq!(
            classify(&headers(&[("user-agent", "kube-probe/1.29")])),
            Some(ProbeKind::HealthCheck)
        );
        assert_eq!(
            classify(&headers(&[("user-agent", "Knative-Activator-Probe")])),
            Some(ProbeKind::HealthCheck)
        );
        assert_eq!(
            classify(&headers(&[("user-agent", "Knative-Autoscaling-Probe/x")])),
            Some(ProbeKind::HealthCheck)
        );
        // Prefixes are case-sensitive.
        assert_eq!(
            classify(&headers(&[("user-agent", "Kube-Probe/1.29")])),
            None
        );
        assert_eq!(
            classify(&headers(&[("k-network-probe", "probe")])),
            Some(ProbeKind::NetworkProbe)
        );
        // `queue` from a normal client goes to the app, as does K-Kubelet-Probe.
        assert_eq!(
            classify(&headers(&[
                ("k-network-probe", "queue"),
                ("user-agent", "curl/8")
            ])),
            None
        );
        assert_eq!(classify(&headers(&[("k-kubelet-probe", "1")])), None);
    }
}
