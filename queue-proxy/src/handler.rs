//! The main port's request chain, in upstream's order (§3 of the spec, outermost
//! first): Forwarded shim → ProxyHandler (kubelet-probe bypass, autoscaler stats,
//! `K-Original-Host`, breaker) → reverse proxy.

use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::body::{Completion, ProxyBody};
use crate::breaker::Breaker;
use crate::error::ProxyError;
use crate::forwarded;
use crate::headers::{self, is_kubelet_probe, is_proxied_by_activator};
use crate::proxy::Proxy;
use crate::server::Handler;
use crate::stats::RequestStats;

/// The queue-proxy's main handler.
pub struct QueueProxy {
    stats: Arc<RequestStats>,
    breaker: Option<Arc<Breaker>>,
    proxy: Proxy,
}

impl QueueProxy {
    /// A handler recording into `stats`, limited by `breaker` (none when CC < 1),
    /// forwarding through `proxy`.
    pub fn new(stats: Arc<RequestStats>, breaker: Option<Arc<Breaker>>, proxy: Proxy) -> Self {
        QueueProxy {
            stats,
            breaker,
            proxy,
        }
    }

    async fn serve(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        forwarded::shim(req.headers_mut());

        // Kubelet probes reach the app without touching the breaker or the stats.
        if is_kubelet_probe(req.headers()) {
            return self
                .proxy
                .forward(req, peer.ip(), Completion::default())
                .await;
        }

        let in_flight = self.stats.track(is_proxied_by_activator(req.headers()));
        headers::rewrite_host_out(req.headers_mut());
        let permit = match &self.breaker {
            Some(breaker) => match breaker.acquire().await {
                Ok(permit) => Some(permit),
                Err(err) => return ProxyError::from(err).into_response(),
            },
            None => None,
        };
        let completion = Completion {
            in_flight: Some(in_flight),
            permit,
            checkin: None,
        };
        self.proxy.forward(req, peer.ip(), completion).await
    }
}

impl Handler for QueueProxy {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        self.serve(req, peer)
    }
}
