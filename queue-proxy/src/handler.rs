//! The main port's request chain, in upstream's order (§3 of the spec, outermost
//! first): server span and server request metrics (otelhttp's place, when on;
//! probes skipped) → request log (when enabled; it sees probes too) → drainer ([`crate::probes`] answers, quiet-period resets) → in-flight tracking →
//! timeouts → Forwarded shim → ProxyHandler (kubelet-probe bypass,
//! `kn.queueproxy.proxy` span, autoscaler stats, `K-Original-Host`, breaker
//! with the `kn.queueproxy.wait` span) → app request metrics (when on) →
//! client span → reverse proxy.

use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

use crate::body::{Completion, ProxyBody};
use crate::breaker::Breaker;
use crate::drain::{Drainer, InFlightTracker, Tracked};
use crate::error::ProxyError;
use crate::forwarded;
use crate::headers::{self, is_kubelet_probe, is_proxied_by_activator};
use crate::probes::{self, ProbeAnswers};
use crate::proxy::Proxy;
use crate::proxy_spans::ProxySpans;
use crate::request_log::{LogGuard, RequestInfo, RequestLogger, content_length_from_hint};
use crate::request_metrics::{InvocationTimer, RequestMetrics};
use crate::route_tag;
use crate::server::Handler;
use crate::stats::RequestStats;
use crate::telemetry::Tracing;
use crate::timeout::RequestTimeouts;

/// The queue-proxy's main handler.
pub struct QueueProxy {
    pub(crate) stats: Arc<RequestStats>,
    pub(crate) breaker: Option<Arc<Breaker>>,
    pub(crate) proxy: Proxy,
    pub(crate) drainer: Arc<Drainer>,
    pub(crate) tracker: InFlightTracker,
    pub(crate) timeouts: RequestTimeouts,
    pub(crate) probes: ProbeAnswers,
    /// Present when `enableRequestLog` is on and the template parsed.
    pub(crate) request_log: Option<Arc<RequestLogger>>,
    /// Present when `requestMetrics.protocol` is `prometheus`, `grpc` or
    /// `http/protobuf`.
    pub(crate) request_metrics: Option<Arc<RequestMetrics>>,
    /// Present when `tracing.protocol` is not `none`.
    pub(crate) tracing: Option<Arc<Tracing>>,
}

impl QueueProxy {
    /// §3 step 2: otelhttp's place. The server span and the HTTP server
    /// metrics wrap everything below, probes excepted.
    async fn serve(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        if (self.request_metrics.is_none() && self.tracing.is_none())
            || headers::is_probe(req.headers())
        {
            return self.serve_logged(req, peer).await;
        }
        let timer = self
            .request_metrics
            .as_ref()
            .map(|metrics| metrics.server_started(&req));
        let span = self.tracing.as_ref().map(|tracing| {
            tracing.server_span(&mut req, peer.ip(), |req| {
                let tag = route_tag::route_tag(req.headers()).to_owned();
                vec![opentelemetry::KeyValue::new("kn.route.tag", tag)]
            })
        });
        let mut resp = Box::pin(self.clone().serve_logged(req, peer)).await;
        if let Some(span) = span {
            resp = span.attach(resp);
        }
        match timer {
            Some(timer) => timer.attach(resp),
            None => resp,
        }
    }

    /// §3 step 3: the request log wraps everything below.
    async fn serve_logged(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let Some(logger) = &self.request_log else {
            return self.serve_unlogged(req, peer).await;
        };
        let is_probe = headers::is_probe(req.headers());
        if !logger.should_log(is_probe) {
            return self.serve_unlogged(req, peer).await;
        }
        let logger = logger.clone();
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let content_length = content_length_from_hint(&http_body::Body::size_hint(&body));
        let info = RequestInfo::from_parts(&parts, Some(peer), content_length);
        let mut log = LogGuard::new(logger, info, is_probe, started);
        let resp = Box::pin(self.serve_unlogged(Request::from_parts(parts, body), peer)).await;
        log.responded(resp.status().as_u16());
        resp.map(|body| body.with_log(log))
    }

    async fn serve_unlogged(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        // §3 step 4: probes are answered here; everything else restarts a
        // running drain's quiet period.
        if let Some(kind) = probes::classify(req.headers()) {
            return self.probes.answer(kind, req.headers()).await;
        }
        self.drainer.request_arrived();
        // Step 5: counted until the response (or upgraded connection) is over.
        let tracked = self.tracker.track();
        // Step 8: the timers start now, so time queued in the breaker counts.
        let started = Instant::now();
        let tunnel_deadline = self.timeouts.head_deadline(started);
        let timeouts = self.timeouts;
        // Boxed once: the proxying future is large, and moving it by value
        // through the timeout wrapper cost more than the allocation.
        let proxying = Box::pin(self.proxy_handler(req, peer, tracked, tunnel_deadline));
        timeouts.run(started, proxying).await
    }

    /// Steps 9–12: Forwarded shim, stats, breaker, proxy.
    async fn proxy_handler(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        tracked: Tracked,
        tunnel_deadline: Instant,
    ) -> Response<ProxyBody> {
        forwarded::shim(req.headers_mut());
        let mut completion = Completion {
            tracked: Some(tracked),
            tunnel_deadline: Some(tunnel_deadline),
            ..Completion::default()
        };

        // Kubelet probes reach the app without touching the breaker or the stats.
        if is_kubelet_probe(req.headers()) {
            let timer = self.app_metrics(&req);
            let resp = self.proxy.forward(req, peer.ip(), completion).await;
            return attach(timer, resp);
        }

        let spans = ProxySpans::start(self.tracing.as_deref(), &req);
        completion.in_flight = Some(self.stats.track(is_proxied_by_activator(req.headers())));
        headers::rewrite_host_out(req.headers_mut());
        let mut spans = match (&self.breaker, spans) {
            (Some(breaker), spans) => {
                let waiting = spans.map(ProxySpans::waiting);
                match breaker.acquire().await {
                    Ok(permit) => completion.permit = Some(permit),
                    Err(err) => return ProxyError::from(err).into_response(),
                }
                waiting.map(ProxySpans::waited)
            }
            (None, spans) => spans,
        };
        if let Some(spans) = &mut spans {
            spans.call_app(&mut req, self.proxy.app_addr());
        }
        let timer = self.app_metrics(&req);
        let resp = self.proxy.forward(req, peer.ip(), completion).await;
        let resp = attach(timer, resp);
        match spans {
            Some(spans) => spans.attach(resp),
            None => resp,
        }
    }

    /// Step 11: the app request metrics. With a breaker, the queue depth is
    /// recorded for every request past it; the invocation is timed for non-probes.
    fn app_metrics(&self, req: &Request<Incoming>) -> Option<InvocationTimer> {
        let metrics = self.request_metrics.as_ref()?;
        if let Some(breaker) = &self.breaker {
            metrics.set_queue_depth(breaker.in_flight());
        }
        (!headers::is_probe(req.headers())).then(|| metrics.invocation_started())
    }
}

/// Lets `timer` record once the app's response is over.
fn attach(timer: Option<InvocationTimer>, resp: Response<ProxyBody>) -> Response<ProxyBody> {
    match timer {
        Some(timer) => timer.attach(resp),
        None => resp,
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
