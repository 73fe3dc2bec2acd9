//! The spans of upstream's proxy handler and transport (spec §9): under the
//! server span, `kn.queueproxy.proxy` for the whole proxying,
//! `kn.queueproxy.wait` while the request waits for the breaker (only with
//! one), and the client span `HTTP <METHOD>` for the call to the app, whose
//! context is injected into the request the app gets.
//!
//! As upstream, the wait span stays the request's context after it ends, so
//! the client span is its child when there is a breaker. Requests without a
//! server span (probes, tracing off) get none of these.

use http::{Request, Response};
use std::borrow::Cow;
use std::net::SocketAddr;

use crate::body::ProxyBody;
use crate::telemetry::{SpanGuard, Tracing, request_context};

/// The proxy step's spans of one traced request.
pub struct ProxySpans<'a> {
    tracing: &'a Tracing,
    proxy: SpanGuard,
    wait: Option<SpanGuard>,
    /// The context the client span is started under.
    parent: opentelemetry::Context,
    client: Option<SpanGuard>,
}

impl<'a> ProxySpans<'a> {
    /// Starts `kn.queueproxy.proxy` when `req` is traced.
    pub fn start<B>(tracing: Option<&'a Tracing>, req: &Request<B>) -> Option<Self> {
        let tracing = tracing?;
        let proxy = tracing.internal_span(request_context(req)?, "kn.queueproxy.proxy");
        Some(ProxySpans {
            tracing,
            parent: proxy.context().clone(),
            proxy,
            wait: None,
            client: None,
        })
    }

    /// Starts `kn.queueproxy.wait`: the request is about to wait for the breaker.
    pub fn waiting(mut self) -> Self {
        let wait = self
            .tracing
            .internal_span(self.proxy.context(), "kn.queueproxy.wait");
        self.parent = wait.context().clone();
        self.wait = Some(wait);
        self
    }

    /// Ends `kn.queueproxy.wait`: the breaker let the request through.
    pub fn waited(mut self) -> Self {
        self.wait = None;
        self
    }

    /// Starts the client span and injects its context into `req`.
    pub fn call_app<B>(&mut self, req: &mut Request<B>, app: SocketAddr) {
        let name = Cow::Owned(format!("HTTP {}", req.method()));
        self.client = Some(self.tracing.client_span(&self.parent, req, name, app));
    }

    /// Keeps the client and proxy spans open until `resp` is delivered.
    pub fn attach(self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let resp = match self.client {
            Some(client) => client.attach(resp),
            None => resp,
        };
        resp.map(|body| body.holding(Box::new(self.proxy)))
    }
}
