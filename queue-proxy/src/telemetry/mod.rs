//! OpenTelemetry for both proxies: request tracing exported over OTLP or to
//! stdout, W3C context propagation, and the OTLP push of the request metrics
//! (spec §8b and §9; the activator's spans, activator spec §8.3).
//!
//! Built on the `opentelemetry` API and SDK (sampler, span ids, batching) and
//! the `opentelemetry-proto` message types; the OTLP requests go out through
//! a small hyper client ([`otlp`]) rather than opentelemetry-otlp's reqwest or
//! tonic stacks, which would double the HTTP and TLS code in the binary.
//!
//! For the activator: build a [`ResourceInfo`], check the config with
//! [`TracingPlan::from_config`] at start, [`TracingPlan::start`] it inside the
//! runtime with the activator's scope, then start the server span with
//! [`Tracing::server_span`] (it stores a [`RequestContext`] in the request's
//! extensions), its own spans with [`Tracing::internal_span`] (e.g.
//! `throttler_try`, `activator_proxy`), and the client span with
//! [`Tracing::client_span`], which injects the context into the outgoing
//! headers. Every span ends when its [`SpanGuard`] is dropped. Call
//! [`Tracing::shutdown`] from a blocking thread at exit to flush.

pub mod metrics_export;
pub mod otlp;
pub mod propagation;
pub mod resource;
pub mod semconv;
pub mod span_export;
pub mod spans;

pub use metrics_export::MetricsPusher;
pub use propagation::Propagator;
pub use resource::ResourceInfo;
pub use spans::{RequestContext, SpanGuard, Tracing, TracingError, TracingPlan, request_context};

/// The telemetry settings name something unusable.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Tracing(#[from] TracingError),
    #[error("OBSERVABILITY_CONFIG: requestMetrics: {0}")]
    MetricsEndpoint(#[from] otlp::EndpointError),
}

/// Where request metrics are pushed, when `requestMetrics.protocol` is an
/// OTLP one; an `https://` collector is reported and left off.
pub fn metrics_push_endpoint(
    config: &crate::observability::RequestMetricsConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<otlp::Endpoint>, TelemetryError> {
    let Some(protocol) = otlp::Protocol::from_name(&config.protocol) else {
        return Ok(None);
    };
    match otlp::Endpoint::resolve(protocol, otlp::Signal::Metrics, &config.endpoint, env) {
        Ok(endpoint) => Ok(Some(endpoint)),
        Err(err @ otlp::EndpointError::Https(_)) => {
            tracing::error!(error = %err, "request metrics push stays off");
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// Reads an `OTEL_*` variable from the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
