//! The activator's request chain (spec §2.1, outermost first):
//! kubelet health → network probe → activator probe ([`crate::probe`]) →
//! revision lookup ([`crate::resolve`]) → concurrency reporting
//! ([`crate::reporter`]) → timeouts → throttler ([`crate::throttler`]) →
//! forwarding ([`crate::forward`]).
//!
//! Metrics ([`crate::metrics`]) and the server span wrap everything past the
//! probe answers, the request log (queue-proxy's template engine, with the
//! request's revision) everything past the lookup, as upstream's
//! RequestLogHandler; [`crate::spans`] has the activation step's spans.

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use queue_proxy::body::{Completion, ProxyBody};
use queue_proxy::error::{ProxyError, go_http_error};
use queue_proxy::request_log::{
    LogGuard, RequestInfo, RequestLogger, RevisionInfo, content_length_from_hint,
};
use queue_proxy::server::Handler;
use queue_proxy::telemetry::{Tracing, request_context};
use queue_proxy::timeout::RequestTimeouts;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::SystemTime;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::early_hold::{Admitted, EarlyAdmission};
use crate::forward::Forwarder;
use crate::held::{self, HeldLimit};
use crate::metrics::ActivatorMetrics;
use crate::probe::{self, Health};
use crate::reporter::ConcurrencyReporter;
use crate::resolve::revision_key;
use crate::revision::{Revision, RevisionKey, private_service_name};
use crate::source::Snapshot;
use crate::spans;
use crate::throttler::{Lease, Throttler, ThrottlerError};

/// The 504 body of the activator's timeout handler.
pub const TIMEOUT_MESSAGE: &str = "activator request timeout";

/// The activator's main handler (ports 8012 and 8013).
pub struct ActivatorHandler {
    pub(crate) health: Arc<Health>,
    pub(crate) revisions: watch::Receiver<Snapshot>,
    pub(crate) cluster_domain: String,
    pub(crate) reporter: Arc<ConcurrencyReporter>,
    pub(crate) throttler: Arc<Throttler>,
    pub(crate) forwarder: Arc<Forwarder>,
    pub(crate) held: HeldLimit,
    /// Mesh pod addressability: address pods through the private Service name.
    pub(crate) passthrough_lb: bool,
    /// `None` unless the metrics protocol is `prometheus`.
    pub(crate) metrics: Option<Arc<ActivatorMetrics>>,
    /// `None` unless a request-log template is set.
    pub(crate) request_log: Option<Arc<RequestLogger>>,
    /// `None` unless the tracing protocol is set.
    pub(crate) tracing: Option<Arc<Tracing>>,
}

impl ActivatorHandler {
    async fn serve(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let early = EarlyAdmission::take(req.extensions_mut());
        if let Some(answer) = probe::answer(&self.health, req.headers_mut()) {
            return answer;
        }
        let (started, started_at) = early.as_ref().map_or_else(
            || (Instant::now(), SystemTime::now()),
            |e| (e.started, e.started_at),
        );
        let server_span = self.tracing.as_ref().map(|tracing| {
            tracing.server_span_since(&mut req, peer.ip(), |_| Vec::new(), started_at)
        });
        let mut timer = self
            .metrics
            .as_ref()
            .map(|m| m.server_started(&req, started));
        let resp = match self.lookup(&req) {
            Ok(revision) => {
                if let Some(timer) = timer.as_mut() {
                    timer.revision(&revision);
                }
                if let Some(cx) = request_context(&req) {
                    spans::label_server_span(cx, &revision);
                }
                let arrival = Arrival {
                    started,
                    started_at,
                    early,
                };
                self.activate(req, peer, revision, arrival).await
            }
            Err(key) => revision_not_found(&key),
        };
        let resp = match timer {
            Some(timer) => timer.attach(resp),
            None => resp,
        };
        match server_span {
            Some(span) => span.attach(resp),
            None => resp,
        }
    }

    /// Everything past the lookup: the request log, reporting, timeouts,
    /// throttling and forwarding. A plain function that builds one future
    /// (as is [`Self::activate_revision`]): an `async fn` would keep its
    /// arguments twice, in every held request (rustc #62958).
    fn activate(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        revision: Revision,
        arrival: Arrival,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        let logger = self.request_log.as_ref().filter(|l| l.should_log(false));
        let (req, log) = match logger {
            None => (req, None),
            Some(logger) => {
                let (parts, body) = req.into_parts();
                let content_length = content_length_from_hint(&http_body::Body::size_hint(&body));
                let info = RequestInfo::from_parts(&parts, Some(peer), content_length);
                let log = LogGuard::new(logger.clone(), info, false, arrival.started)
                    .for_revision(Arc::new(request_log_revision(&revision)));
                (Request::from_parts(parts, body), Some(log))
            }
        };
        let activating = self.activate_revision(req, peer, revision, arrival);
        async move {
            let resp = activating.await;
            match log {
                Some(mut log) => {
                    log.responded(resp.status().as_u16());
                    resp.map(|body| body.with_log(log))
                }
                None => resp,
            }
        }
    }

    /// Past the lookup: reporting, timeouts, throttling and forwarding.
    fn activate_revision(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        revision: Revision,
        arrival: Arrival,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        let key = revision.key.clone();
        // Upstream creates the revision's throttler on first use; the source
        // sync may not have reached it yet for a revision just created.
        self.throttler.upsert_revision(&revision);
        let Arrival {
            started,
            started_at,
            early,
        } = arrival;
        let (reported, queued, early_lease) = match early {
            Some(early) => (Some(early.reported), early.queued, early.lease),
            None => (None, None, None),
        };
        // Counted from arrival to the end of the response, queue time included.
        let reported = reported.unwrap_or_else(|| self.reporter.track(&key));
        let timeouts = request_timeouts(&revision);
        let tunnel_deadline = timeouts.head_deadline(started);
        // Boxed: `run` would otherwise keep two copies of this future's state
        // (its argument and its local), in every held request.
        let timed = Box::pin(async move {
            let queued = queued.or_else(|| self.metrics.as_ref().map(|m| m.queued(&key)));
            let trying = self
                .tracing
                .as_deref()
                .and_then(|t| spans::throttler_try(t, &req, started_at));
            let lease = match early_lease {
                Some(lease) => Ok(lease),
                None => {
                    let Some(_held) = self.held.enter(&key) else {
                        return go_http_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &format!("too many requests held for revision {key}"),
                        );
                    };
                    self.wait_for_capacity(&key, &mut req).await
                }
            };
            if let (Some(span), Err(err)) = (&trying, &lease) {
                span.failed(err.to_string());
            }
            drop(trying);
            let lease = match lease {
                Ok(lease) => lease,
                Err(ThrottlerError::QueueFull) => {
                    return ProxyError::from(queue_proxy::breaker::BreakerError::QueueFull)
                        .into_response();
                }
                // Removed while the request waited (wherever it waited): the
                // answer a request arriving now gets.
                Err(err @ (ThrottlerError::RevisionGone | ThrottlerError::RevisionNotFound(_))) => {
                    tracing::debug!(revision = %key, error = %err, "throttler refused");
                    return revision_not_found(&key);
                }
            };
            let active = queued.map(|q| q.into_active());
            let dest = lease.dest().to_owned();
            let passthrough_host = self
                .passthrough_lb
                .then(|| format!("{}.{}", private_service_name(&key.name), key.namespace));
            let completion = Completion {
                tunnel_deadline: Some(tunnel_deadline),
                held: Some(Box::new((lease, reported, active))),
                ..Completion::default()
            };
            let proxying = self
                .tracing
                .as_deref()
                .and_then(|t| spans::ProxySpans::start(t, &mut req, &dest));
            // Boxed: a held request's future stays small (a few hundred
            // bytes instead of the proxy's ~10 KB) while it waits.
            let resp = Box::pin(self.forwarder.forward(
                req,
                peer.ip(),
                &dest,
                passthrough_host.as_deref(),
                completion,
            ))
            .await;
            match proxying {
                Some(spans) => spans.attach(resp),
                None => resp,
            }
        });
        async move { timeouts.run(started, timed).await }
    }

    /// The throttler's answer; a request that has to wait for it is detached
    /// from its connection's read buffer first (see [`crate::held`]).
    async fn wait_for_capacity(
        &self,
        key: &RevisionKey,
        req: &mut Request<Incoming>,
    ) -> Result<Lease, ThrottlerError> {
        let acquire = self.throttler.acquire(key);
        let mut acquire = std::pin::pin!(acquire);
        let first = std::future::poll_fn(|cx| Poll::Ready(acquire.as_mut().poll(cx))).await;
        match first {
            Poll::Ready(answer) => answer,
            Poll::Pending => {
                held::detach_head(req);
                acquire.await
            }
        }
    }

    fn key_of(&self, req: &Request<Incoming>) -> RevisionKey {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        revision_key(req.headers(), host, &self.cluster_domain)
    }

    /// The revision the request is for, or the key that was not found.
    fn lookup(&self, req: &Request<Incoming>) -> Result<Revision, RevisionKey> {
        let key = self.key_of(req);
        let found = self
            .revisions
            .borrow()
            .get(&key)
            .map(|s| s.revision.clone());
        found.ok_or(key)
    }
}

/// Upstream's 404 for a revision it does not know.
fn revision_not_found(key: &RevisionKey) -> Response<ProxyBody> {
    // Revision names are DNS labels, so Rust's quoting is Go's `%q`.
    let message = format!(
        "Error getting active endpoint: revision.serving.knative.dev {:?} not found",
        key.name
    );
    go_http_error(StatusCode::NOT_FOUND, &message)
}

/// When a request arrived, and what the early hold decided for it.
struct Arrival {
    started: Instant,
    started_at: SystemTime,
    early: Option<Admitted>,
}

/// The revision's timeouts, which count from the request's arrival.
pub(crate) fn request_timeouts(revision: &Revision) -> RequestTimeouts {
    RequestTimeouts {
        total: revision.timeout,
        response_start: revision.response_start_timeout,
        idle: revision.idle_timeout.filter(|d| !d.is_zero()),
        message: TIMEOUT_MESSAGE,
    }
}

/// The revision as the request log's `.Revision` shows it: the activator has
/// no pod of the revision, so `PodName` and `PodIP` are empty (spec §8.2).
pub(crate) fn request_log_revision(revision: &Revision) -> RevisionInfo {
    RevisionInfo {
        name: revision.key.name.clone(),
        namespace: revision.key.namespace.clone(),
        service: revision.service.clone(),
        configuration: revision.configuration.clone(),
        pod_name: String::new(),
        pod_ip: String::new(),
    }
}

impl Handler for ActivatorHandler {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        self.serve(req, peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, F>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    // A request the handler holds (an HTTP/2 stream, a kept-alive request)
    // keeps this future, boxed, while it waits: 2,000 bytes when written (6,000
    // before the timed part was boxed and the inner steps became plain
    // functions), plus the ~1 KB timed part. It must not creep up unnoticed.
    #[test]
    fn the_handlers_future_stays_small() {
        let size = future_size(ActivatorHandler::serve);
        assert!(size <= 2304, "the handler's future is {size} bytes");
    }
}
