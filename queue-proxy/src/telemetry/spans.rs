//! Request tracing: the tracer provider built from `OBSERVABILITY_CONFIG.tracing`
//! and the span helpers the proxies call (spec §9, activator §8.3).
//!
//! Upstream wraps its handler in otelhttp (the server span, named after the
//! method), starts `kn.queueproxy.proxy` and `kn.queueproxy.wait` in its proxy
//! handler, and traces the app call with otelhttp's transport (the client span,
//! `HTTP <METHOD>`), which injects `traceparent`, `tracestate` and `baggage`.
//! Here the same spans come from [`Tracing`]: the handler starts them and keeps
//! each one alive in the response body until the response is over, which is when
//! upstream's `defer span.End()` runs.
//!
//! Cost: with `protocol: none` there is no [`Tracing`] at all and the handler
//! skips every step. When tracing is on but a request is not sampled, the spans
//! are the SDK's non-recording spans (no attributes are built: they are only set
//! when [`SpanGuard::is_recording`]), yet the context is still extracted and the
//! new span ids are injected toward the app, as Go's SDK does.

use http::{HeaderMap, Request, Response};
use opentelemetry::trace::{
    SpanBuilder, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanExporter,
};
use std::borrow::Cow;
use std::net::IpAddr;
use std::time::SystemTime;
use tokio::runtime::Handle;

use super::otlp::{Endpoint, EndpointError, Protocol, Signal};
use super::propagation::Propagator;
use super::semconv;
use super::span_export::{OtlpSpanExporter, StdoutSpanExporter};
use crate::body::ProxyBody;
use crate::observability::TracingConfig;

/// The instrumentation scope of the server and client spans (otelhttp's).
pub const HTTP_SCOPE: &str = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp";

/// The trace context of a request, stored in its extensions by
/// [`Tracing::server_span`] so the steps below can start child spans.
#[derive(Clone, Debug)]
pub struct RequestContext(pub Context);

/// A configured tracer: spans are sampled, batched and exported.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
    /// The server and client spans.
    http: SdkTracer,
    /// The component's own spans (`kn.queueproxy.*`, `throttler_try`, ...).
    component: SdkTracer,
    propagator: Propagator,
}

/// The tracing config names something this build cannot export to.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("OBSERVABILITY_CONFIG: unknown tracing.protocol {0:?}")]
    Protocol(String),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// Where spans go.
#[derive(Debug, Clone)]
enum Export {
    Stdout,
    Otlp(Endpoint),
}

/// A checked tracing config, ready to start once a runtime runs.
#[derive(Debug, Clone)]
pub struct TracingPlan {
    export: Export,
    sampler: Option<Sampler>,
}

impl TracingPlan {
    /// What `config` asks for: `None` for `none` (or no protocol), and for an
    /// `https://` collector, which is reported and left off. `env` reads the
    /// `OTEL_*` variables.
    pub fn from_config(
        config: &TracingConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<TracingPlan>, TracingError> {
        let (export, sampler) = match config.protocol.as_str() {
            "" | "none" => return Ok(None),
            "stdout" => (Export::Stdout, Sampler::AlwaysOn),
            name => {
                let protocol =
                    Protocol::from_name(name).ok_or_else(|| TracingError::Protocol(name.into()))?;
                match Endpoint::resolve(protocol, Signal::Traces, &config.endpoint, &env) {
                    Ok(endpoint) => (Export::Otlp(endpoint), sampler(config.sampling_rate)),
                    Err(err @ EndpointError::Https(_)) => {
                        tracing::error!(error = %err, "tracing stays off");
                        return Ok(None);
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        };
        // As upstream: `OTEL_TRACES_SAMPLER` lets the SDK's environment decide.
        let sampler = env("OTEL_TRACES_SAMPLER").is_none().then_some(sampler);
        Ok(Some(TracingPlan { export, sampler }))
    }

    /// Starts the tracer provider. `component_scope` names the proxy's own
    /// spans' scope (`knative.dev/serving/pkg/queue` for the queue-proxy);
    /// OTLP exports run on `runtime`.
    pub fn start(
        self,
        resource: Resource,
        component_scope: &'static str,
        runtime: Handle,
    ) -> Tracing {
        let builder = SdkTracerProvider::builder().with_resource(resource);
        let builder = match self.export {
            Export::Stdout => with_batcher(builder, StdoutSpanExporter),
            Export::Otlp(endpoint) => {
                with_batcher(builder, OtlpSpanExporter::new(endpoint, runtime))
            }
        };
        let builder = match self.sampler {
            Some(sampler) => builder.with_sampler(sampler),
            None => builder,
        };
        let provider = builder.build();
        Tracing {
            http: provider.tracer(HTTP_SCOPE),
            component: provider.tracer(component_scope),
            provider,
            propagator: Propagator::default(),
        }
    }
}

impl Tracing {
    /// The W3C propagators.
    pub fn propagator(&self) -> &Propagator {
        &self.propagator
    }

    /// Starts the server span for `req` as a child of the context its headers
    /// carry, and stores the new context in `req`'s extensions. When the span
    /// is recorded it gets the HTTP attributes and those `extra` returns (the
    /// queue-proxy's `kn.route.tag`, the activator's revision labels).
    pub fn server_span<B>(
        &self,
        req: &mut Request<B>,
        peer: IpAddr,
        extra: impl FnOnce(&Request<B>) -> Vec<KeyValue>,
    ) -> SpanGuard {
        self.server_span_since(req, peer, extra, SystemTime::now())
    }

    /// [`Tracing::server_span`] for a request that arrived at `start` (the
    /// activator may hold one before handing it to its handler).
    pub fn server_span_since<B>(
        &self,
        req: &mut Request<B>,
        peer: IpAddr,
        extra: impl FnOnce(&Request<B>) -> Vec<KeyValue>,
        start: SystemTime,
    ) -> SpanGuard {
        let parent = self.propagator.extract(req.headers());
        let builder = SpanBuilder::from_name(semconv::server_span_name(req.method()))
            .with_kind(SpanKind::Server)
            .with_start_time(start);
        let span = self.http.build_with_context(builder, &parent);
        let guard = SpanGuard {
            cx: parent.with_span(span),
            kind: SpanKind::Server,
        };
        if guard.is_recording() {
            let span = guard.cx.span();
            span.set_attributes(request_attributes(req, peer));
            span.set_attributes(extra(req));
        }
        req.extensions_mut()
            .insert(RequestContext(guard.cx.clone()));
        guard
    }

    /// Starts an internal span of the component's scope under `parent`.
    pub fn internal_span(&self, parent: &Context, name: &'static str) -> SpanGuard {
        self.internal_span_since(parent, name, SystemTime::now())
    }

    /// [`Tracing::internal_span`], started at `start`.
    pub fn internal_span_since(
        &self,
        parent: &Context,
        name: &'static str,
        start: SystemTime,
    ) -> SpanGuard {
        let builder = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(start);
        let span = self.component.build_with_context(builder, parent);
        SpanGuard {
            cx: parent.with_span(span),
            kind: SpanKind::Internal,
        }
    }

    /// Starts the client span for the call `req` is about to make, named `name`
    /// (upstream's otelhttp transport: `HTTP <METHOD>`), and injects its
    /// context into `req`'s headers.
    pub fn client_span<B>(
        &self,
        parent: &Context,
        req: &mut Request<B>,
        name: Cow<'static, str>,
        target: std::net::SocketAddr,
    ) -> SpanGuard {
        let builder = SpanBuilder::from_name(name).with_kind(SpanKind::Client);
        let span = self.http.build_with_context(builder, parent);
        let guard = SpanGuard {
            cx: parent.with_span(span),
            kind: SpanKind::Client,
        };
        if guard.is_recording() {
            let span = guard.cx.span();
            span.set_attributes([
                KeyValue::new("http.request.method", semconv::method(req.method())),
                KeyValue::new("server.address", target.ip().to_string()),
                KeyValue::new("server.port", i64::from(target.port())),
                KeyValue::new(
                    "url.full",
                    format!(
                        "http://{target}{}",
                        req.uri().path_and_query().map_or("/", |p| p.as_str())
                    ),
                ),
                KeyValue::new(
                    "network.protocol.version",
                    semconv::protocol_version(req.version()),
                ),
            ]);
        }
        self.propagator.inject(&guard.cx, req.headers_mut());
        guard
    }

    /// Exports what is still batched and stops the exporter. Blocks: call it
    /// from a blocking thread (the export itself runs on the runtime).
    pub fn shutdown(&self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "flushing spans at exit failed");
        }
    }
}

fn with_batcher(
    builder: opentelemetry_sdk::trace::TracerProviderBuilder,
    exporter: impl SpanExporter + 'static,
) -> opentelemetry_sdk::trace::TracerProviderBuilder {
    builder.with_span_processor(BatchSpanProcessor::builder(exporter).build())
}

/// Upstream's sampler for `samplingRate`.
fn sampler(rate: f64) -> Sampler {
    if rate >= 1.0 {
        Sampler::AlwaysOn
    } else if rate <= 0.0 || rate.is_nan() {
        Sampler::AlwaysOff
    } else {
        Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(rate)))
    }
}

/// The trace context of `req`, when its server span was started.
pub fn request_context<B>(req: &Request<B>) -> Option<&Context> {
    req.extensions().get::<RequestContext>().map(|c| &c.0)
}

/// A started span; it ends when the guard is dropped.
#[derive(Debug)]
pub struct SpanGuard {
    cx: Context,
    kind: SpanKind,
}

impl SpanGuard {
    /// The context with this span active: the parent of child spans.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Whether the span was sampled for recording.
    pub fn is_recording(&self) -> bool {
        self.cx.span().is_recording()
    }

    /// Records the response status: an error status for 5xx on server spans
    /// and for 4xx and 5xx on client spans, as otelhttp does.
    pub fn responded(&self, status: u16) {
        if !self.is_recording() {
            return;
        }
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        let error_from = if self.kind == SpanKind::Client {
            400
        } else {
            500
        };
        if status >= error_from {
            span.set_status(Status::error(""));
        }
    }

    /// Marks the span failed with `message`.
    pub fn failed(&self, message: impl Into<Cow<'static, str>>) {
        self.cx.span().set_status(Status::error(message));
    }
}

impl SpanGuard {
    /// Records `resp`'s status and keeps the span open until `resp`'s body is
    /// over (ended at once for a local or already finished body).
    pub fn attach(self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        if !self.is_recording() {
            // Ending a span that records nothing can happen now.
            return resp;
        }
        self.responded(resp.status().as_u16());
        resp.map(|body| body.holding(Box::new(self)))
    }
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        self.cx.span().end();
    }
}

fn request_attributes<B>(req: &Request<B>, peer: IpAddr) -> Vec<KeyValue> {
    let headers: &HeaderMap = req.headers();
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let server_address = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let mut attributes = vec![
        KeyValue::new("http.request.method", semconv::method(req.method())),
        KeyValue::new("url.scheme", "http"),
        KeyValue::new("url.path", req.uri().path().to_owned()),
        KeyValue::new("server.address", server_address.to_owned()),
        KeyValue::new(
            "network.protocol.version",
            semconv::protocol_version(req.version()),
        ),
        KeyValue::new("client.address", peer.to_string()),
    ];
    if let Some(ua) = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", ua.to_owned()));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_from_rate() {
        assert!(matches!(sampler(1.0), Sampler::AlwaysOn));
        assert!(matches!(sampler(2.0), Sampler::AlwaysOn));
        assert!(matches!(sampler(0.0), Sampler::AlwaysOff));
        assert!(matches!(sampler(-1.0), Sampler::AlwaysOff));
        assert!(matches!(sampler(0.5), Sampler::ParentBased(_)));
    }
}
