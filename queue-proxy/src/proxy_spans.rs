//! The spans of upstream's proxy handler and transport (spec §9): under the
//! server span, `kn.queueproxy.proxy` for the whole proxying,
//! `kn.queueproxy.wait` while the request waits for the breaker (only with
//! one), and the client span `HTTP <METHOD>` for the call to the app, whose
//! context is injected into the request the app gets.
//!
//! As upstream, the wait span stays the request's context after it ends, so
//! the client span is its child when there is a breaker. Requests without a
//! server span (probes, tracing off) get none of these, and sampled-out ones
//! only the injected context.

use http::{Request, Response};
use std::borrow::Cow;
use std::net::SocketAddr;

use opentelemetry::trace::{SpanContext, TraceContextExt};

use crate::body::ProxyBody;
use crate::telemetry::{SpanGuard, Tracing, request_context};

/// The proxy step's spans of one traced request.
pub enum ProxySpans<'a> {
    /// The request is sampled: every span is recorded.
    Recording {
        tracing: &'a Tracing,
        proxy: SpanGuard,
        wait: Option<SpanGuard>,
        /// The context the client span is started under.
        parent: opentelemetry::Context,
        client: Option<SpanGuard>,
    },
    /// Sampled out: nothing would be recorded below the server span, so no
    /// span objects are made; the app still gets the trace id with a new span
    /// id, as from Go's non-recording spans.
    Unsampled {
        tracing: &'a Tracing,
        server: SpanContext,
    },
}

impl<'a> ProxySpans<'a> {
    /// Starts `kn.queueproxy.proxy` when `req` is traced.
    pub fn start<B>(tracing: Option<&'a Tracing>, req: &Request<B>) -> Option<Self> {
        let tracing = tracing?;
        let cx = request_context(req)?;
        let server = cx.span();
        if !server.is_recording() {
            return Some(ProxySpans::Unsampled {
                tracing,
                server: server.span_context().clone(),
            });
        }
        let proxy = tracing.internal_span(cx, "kn.queueproxy.proxy");
        Some(ProxySpans::Recording {
            tracing,
            parent: proxy.context().clone(),
            proxy,
            wait: None,
            client: None,
        })
    }

    /// Starts `kn.queueproxy.wait`: the request is about to wait for the breaker.
    pub fn waiting(mut self) -> Self {
        if let ProxySpans::Recording {
            tracing,
            proxy,
            wait,
            parent,
            ..
        } = &mut self
        {
            let span = tracing.internal_span(proxy.context(), "kn.queueproxy.wait");
            *parent = span.context().clone();
            *wait = Some(span);
        }
        self
    }

    /// Ends `kn.queueproxy.wait`: the breaker let the request through.
    pub fn waited(mut self) -> Self {
        if let ProxySpans::Recording { wait, .. } = &mut self {
            *wait = None;
        }
        self
    }

    /// Starts the client span and injects its context into `req`.
    pub fn call_app<B>(&mut self, req: &mut Request<B>, app: SocketAddr) {
        match self {
            ProxySpans::Recording {
                tracing,
                parent,
                client,
                ..
            } => {
                let name = Cow::Owned(format!("HTTP {}", req.method()));
                *client = Some(tracing.client_span(parent, req, name, app));
            }
            ProxySpans::Unsampled { tracing, server } => tracing
                .propagator()
                .inject_unsampled(server, req.headers_mut()),
        }
    }

    /// Keeps the client and proxy spans open until `resp` is delivered.
    pub fn attach(self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let ProxySpans::Recording { proxy, client, .. } = self else {
            return resp;
        };
        let resp = match client {
            Some(client) => client.attach(resp),
            None => resp,
        };
        resp.map(|body| body.holding(Box::new(proxy)))
    }
}
