//! The activator's spans (spec §8.3), on the queue-proxy's tracing stack
//! ([`queue_proxy::telemetry`]): under otelhttp's server span (named by the
//! method, labelled with the revision once it is known), `throttler_try` from
//! entering the activation step until capacity is obtained (status Error with
//! the throttler's message when it is not), then `activator_proxy` for the
//! proxying and, under it, the client span `<METHOD> <path>`, whose context the
//! pod receives. Completion order is `throttler_try`, the client span,
//! `activator_proxy`. Sampled-out requests get no child spans, only their
//! context passed on.

use http::{Request, Response};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};
use queue_proxy::body::ProxyBody;
use queue_proxy::telemetry::{SpanGuard, Tracing, request_context};
use std::net::SocketAddr;
use std::time::SystemTime;

use crate::revision::Revision;

/// Upstream's TracingAttributeHandler: the revision's labels on the server span.
pub fn label_server_span(cx: &Context, revision: &Revision) {
    let span = cx.span();
    if !span.is_recording() {
        return;
    }
    span.set_attributes([
        KeyValue::new("kn.service.name", revision.service.clone()),
        KeyValue::new("kn.configuration.name", revision.configuration.clone()),
        KeyValue::new("kn.revision.name", revision.key.name.clone()),
        KeyValue::new("k8s.namespace.name", revision.key.namespace.clone()),
    ]);
}

/// Starts `throttler_try` for a sampled request, at `start` (when the request
/// arrived: the early hold may have waited for capacity already).
pub fn throttler_try<B>(
    tracing: &Tracing,
    req: &Request<B>,
    start: SystemTime,
) -> Option<SpanGuard> {
    let cx = request_context(req)?;
    cx.span()
        .is_recording()
        .then(|| tracing.internal_span_since(cx, "throttler_try", start))
}

/// `activator_proxy` and the client span of one sampled request.
pub struct ProxySpans {
    proxy: SpanGuard,
    client: SpanGuard,
}

impl ProxySpans {
    /// Starts the spans of the call to `dest` and injects the client span's
    /// context into `req`; a sampled-out request only gets its own context.
    pub fn start<B>(tracing: &Tracing, req: &mut Request<B>, dest: &str) -> Option<Self> {
        let cx = request_context(req)?.clone();
        let target: Option<SocketAddr> = dest.parse().ok();
        let (true, Some(target)) = (cx.span().is_recording(), target) else {
            tracing.propagator().inject(&cx, req.headers_mut());
            return None;
        };
        let proxy = tracing.internal_span(&cx, "activator_proxy");
        let path = match req.uri().path() {
            "" => "/",
            path => path,
        };
        let name = format!("{} {path}", req.method());
        let client = tracing.client_span(proxy.context(), req, name.into(), target);
        Some(ProxySpans { proxy, client })
    }

    /// Keeps both spans open until `resp`'s body is over; the client span
    /// ends first.
    pub fn attach(self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let resp = self.client.attach(resp);
        self.proxy.attach(resp)
    }
}
