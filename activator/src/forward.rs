//! Forwarding a released request to the pod (or ClusterIP) the throttler chose,
//! as upstream's activation handler sets it up (spec §2.3):
//!
//! - the client's Host is kept in `K-Original-Host` (unless that header is
//!   already set) and the upstream Host becomes the target `ip:port`;
//! - `K-Proxy-Request: activator` tells the queue-proxy to count the request as
//!   proxied;
//! - the rest (revision headers stripped, hop-by-hop rules, `X-Forwarded-For`,
//!   h2c for HTTP/2, upgrades, streaming, Go-shaped 502s) is the queue-proxy's
//!   reverse proxy, reused as is: one [`Proxy`] and connection pool per target.

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use parking_lot::RwLock;
use queue_proxy::body::{Completion, ProxyBody};
use queue_proxy::error::go_http_error;
use queue_proxy::headers::{ACTIVATOR_NAME, K_ORIGINAL_HOST, K_PROXY_REQUEST};
use queue_proxy::proxy::Proxy;
use queue_proxy::proxy::client::AppClient;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Set on requests sent through a mesh to a pod chosen by the activator.
const K_PASSTHROUGH_LB: http::HeaderName = http::HeaderName::from_static("k-passthrough-lb");

/// Proxies to any number of targets, keeping one connection pool per target so
/// the keep-alive connections survive from request to request.
pub struct Forwarder {
    proxies: RwLock<HashMap<String, Proxy>>,
    max_idle_per_host: usize,
}

impl Forwarder {
    /// A forwarder keeping `max_idle_per_host` idle connections per target.
    pub fn new(max_idle_per_host: usize) -> Self {
        Forwarder {
            proxies: RwLock::new(HashMap::new()),
            max_idle_per_host: max_idle_per_host.max(1),
        }
    }

    /// Sends `req` to `dest` (`ip:port`), holding `completion` until the response
    /// (or upgraded connection) is over.
    ///
    /// With `passthrough_host` (mesh pod addressability), the request is sent
    /// with that Host (`<rev>-private.<ns>`) and `K-Passthrough-Lb: true`, so a
    /// mesh routes it to the chosen pod.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        peer: IpAddr,
        dest: &str,
        passthrough_host: Option<&str>,
        completion: Completion,
    ) -> Response<ProxyBody> {
        let Some(proxy) = self.proxy_for(dest) else {
            let message = format!("invalid backend address {dest:?}");
            return go_http_error(http::StatusCode::BAD_GATEWAY, &message);
        };
        rewrite_for_target(&mut req);
        if let Some(host) = passthrough_host.and_then(|h| HeaderValue::from_str(h).ok()) {
            req.headers_mut().insert(header::HOST, host);
            req.headers_mut()
                .insert(K_PASSTHROUGH_LB, HeaderValue::from_static("true"));
        }
        proxy.forward(req, peer, completion).await
    }

    fn proxy_for(&self, dest: &str) -> Option<Proxy> {
        if let Some(proxy) = self.proxies.read().get(dest) {
            return Some(proxy.clone());
        }
        let addr: SocketAddr = dest.parse().ok()?;
        let mut proxies = self.proxies.write();
        let proxy = proxies
            .entry(dest.to_owned())
            .or_insert_with(|| Proxy::new(AppClient::new(addr, self.max_idle_per_host)));
        Some(proxy.clone())
    }

    /// Forgets the pools of targets no longer in `live` (pods that went away).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.proxies.write().retain(|dest, _| live(dest));
    }
}

/// Moves the client's Host to `K-Original-Host` and marks the request as the
/// activator's, so the proxy addresses the target by its own `ip:port`.
fn rewrite_for_target(req: &mut Request<Incoming>) {
    let original = req.headers_mut().remove(header::HOST).or_else(|| {
        let authority = req.uri().authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    if let Some(original) = original
        && !req.headers().contains_key(K_ORIGINAL_HOST)
    {
        req.headers_mut().insert(K_ORIGINAL_HOST, original);
    }
    req.headers_mut()
        .insert(K_PROXY_REQUEST, HeaderValue::from_static(ACTIVATOR_NAME));
    // Without an authority (nor Host) the proxy uses the target's address.
    if req.uri().authority().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        if let Ok(uri) = path.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_of_vanished_targets_are_dropped() {
        let forwarder = Forwarder::new(10);
        assert!(forwarder.proxy_for("10.0.0.1:8012").is_some());
        assert!(forwarder.proxy_for("10.0.0.2:8012").is_some());
        assert!(forwarder.proxy_for("not an address").is_none());
        forwarder.retain(|dest| dest == "10.0.0.2:8012");
        let pools: Vec<String> = forwarder.proxies.read().keys().cloned().collect();
        assert_eq!(pools, vec!["10.0.0.2:8012".to_owned()]);
    }
}
