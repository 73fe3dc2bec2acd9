//! The activator's request chain (spec §2.1, outermost first):
//! kubelet health → network probe → activator probe ([`crate::probe`]) →
//! revision lookup ([`crate::resolve`]) → concurrency reporting
//! ([`crate::reporter`]) → timeouts → throttler ([`crate::throttler`]) →
//! forwarding ([`crate::forward`]).
//!
//! Telemetry steps (otel metrics and spans, request log) are not here yet.

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use queue_proxy::body::{Completion, ProxyBody};
use queue_proxy::error::{ProxyError, go_http_error};
use queue_proxy::server::Handler;
use queue_proxy::timeout::RequestTimeouts;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::forward::Forwarder;
use crate::held::HeldLimit;
use crate::probe::{self, Health};
use crate::reporter::ConcurrencyReporter;
use crate::resolve::revision_key;
use crate::revision::{Revision, RevisionKey, private_service_name};
use crate::source::Snapshot;
use crate::throttler::{Throttler, ThrottlerError};

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
}

impl ActivatorHandler {
    async fn serve(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        if let Some(answer) = probe::answer(&self.health, req.headers_mut()) {
            return answer;
        }
        let revision = match self.lookup(&req) {
            Ok(revision) => revision,
            Err(key) => {
                // Revision names are DNS labels, so Rust's quoting is Go's `%q`.
                let message = format!(
                    "Error getting active endpoint: revision.serving.knative.dev {:?} not found",
                    key.name
                );
                return go_http_error(StatusCode::NOT_FOUND, &message);
            }
        };
        let key = revision.key.clone();
        // Upstream creates the revision's throttler on first use; the source
        // sync may not have reached it yet for a revision just created.
        self.throttler.upsert_revision(&revision);
        // Counted from here to the end of the response, queue time included.
        let reported = self.reporter.track(&key);
        let timeouts = RequestTimeouts {
            total: revision.timeout,
            response_start: revision.response_start_timeout,
            idle: revision.idle_timeout.filter(|d| !d.is_zero()),
            message: TIMEOUT_MESSAGE,
        };
        let started = Instant::now();
        let tunnel_deadline = timeouts.head_deadline(started);
        timeouts
            .run(started, async move {
                let Some(_held) = self.held.enter(&key) else {
                    return go_http_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("too many requests held for revision {key}"),
                    );
                };
                let lease = match self.throttler.acquire(&key).await {
                    Ok(lease) => lease,
                    Err(ThrottlerError::QueueFull) => {
                        return ProxyError::from(queue_proxy::breaker::BreakerError::QueueFull)
                            .into_response();
                    }
                    Err(err) => {
                        tracing::debug!(revision = %key, error = %err, "throttler refused");
                        let mut resp = Response::new(ProxyBody::empty());
                        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        return resp;
                    }
                };
                drop(_held);
                let dest = lease.dest().to_owned();
                let passthrough_host = self
                    .passthrough_lb
                    .then(|| format!("{}.{}", private_service_name(&key.name), key.namespace));
                let completion = Completion {
                    tunnel_deadline: Some(tunnel_deadline),
                    held: Some(Box::new((lease, reported))),
                    ..Completion::default()
                };
                self.forwarder
                    .forward(
                        req,
                        peer.ip(),
                        &dest,
                        passthrough_host.as_deref(),
                        completion,
                    )
                    .await
            })
            .await
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

impl Handler for ActivatorHandler {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        self.serve(req, peer)
    }
}
