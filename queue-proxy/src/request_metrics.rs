//! User-facing request metrics (spec §8b), exported for Prometheus on `:9091`
//! (`GET /metrics`) when `OBSERVABILITY_CONFIG.requestMetrics.protocol` is
//! `prometheus`. With any other protocol nothing is recorded and nothing listens:
//! the handler holds `None` instead of a [`RequestMetrics`].
//!
//! Names are those upstream's OTel → Prometheus translation ("underscore escaping
//! with suffixes") renders: dots become underscores, unit `s` adds `_seconds`,
//! `{request}` units add nothing. The exposition is OpenMetrics text
//! (prometheus-client's encoder: `# TYPE`/`# HELP`/`# UNIT` lines, histograms as
//! `_sum`, `_count` and cumulative `_bucket{le=…}` series, ending with `# EOF`),
//! served as `application/openmetrics-text; version=1.0.0; charset=utf-8`:
//!
//! - `kn_serving_invocation_duration_seconds` (histogram; label
//!   `http_response_status_code`): from after the breaker to the end of the app's
//!   response; probes are not recorded.
//! - `kn_serving_queue_depth` (gauge, no labels): only with a breaker
//!   (containerConcurrency ≥ 1), set to the breaker's queued + executing count
//!   each time a request passes it.
//! - `http_server_request_duration_seconds` (histogram; labels
//!   `http_request_method`, `http_response_status_code`, `kn_route_tag`,
//!   `network_protocol_version`, `url_scheme`): the whole request as the server
//!   saw it (otelhttp's place, outermost); probes are not recorded.
//!
//! Histograms use the OTel default buckets `0.005 … 10` s. Recording takes no
//! lock beyond the label family's read lock for an existing label set: the
//! histograms here are atomics, not prometheus-client's mutex-guarded one.
//! Not reproduced: OTel resource attributes (`target_info`), `otel_scope_*`
//! labels, body-size histograms, client metrics and Go runtime metrics.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use parking_lot::RwLock;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::observability::RequestMetricsConfig;
use crate::route_tag;
use crate::server::{Handler, ServeError, bind_dual_stack};
use crate::telemetry::semconv;

/// OTel's default explicit histogram buckets, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The content type prometheus-client documents for its text encoder.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The protocol that turns request metrics on.
pub const PROMETHEUS: &str = "prometheus";

/// A fixed-bucket histogram of atomics: recording never blocks.
#[derive(Debug)]
pub struct AtomicHistogram {
    /// Per-bucket (not cumulative) counts; the last is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }
}

impl AtomicHistogram {
    /// Records one value.
    pub fn observe(&self, v: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The current counts and sum.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: [u64; BUCKETS.len() + 1] =
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed));
        HistogramSnapshot {
            // The buckets' total, so a reader racing a record stays consistent.
            count: buckets.iter().sum(),
            buckets,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

/// A histogram's state at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Per-bucket (not cumulative) counts, the last one `+Inf`.
    pub buckets: [u64; BUCKETS.len() + 1],
    pub count: u64,
    pub sum: f64,
}

/// Histograms by label set. Recording an existing label set takes the read
/// lock only; readers (a scrape, an OTLP push) see every series.
#[derive(Debug)]
pub struct HistogramFamily<L>(Arc<RwLock<HashMap<L, AtomicHistogram>>>);

impl<L> Clone for HistogramFamily<L> {
    fn clone(&self) -> Self {
        HistogramFamily(self.0.clone())
    }
}

impl<L> Default for HistogramFamily<L> {
    fn default() -> Self {
        HistogramFamily(Arc::default())
    }
}

impl<L: Clone + Hash + Eq> HistogramFamily<L> {
    /// Records `v` in the series of `labels`.
    pub fn observe(&self, labels: &L, v: f64) {
        if let Some(h) = self.0.read().get(labels) {
            h.observe(v);
            return;
        }
        self.0.write().entry(labels.clone()).or_default().observe(v);
    }

    /// Every series' current state.
    pub fn snapshot(&self) -> Vec<(L, HistogramSnapshot)> {
        self.0
            .read()
            .iter()
            .map(|(labels, h)| (labels.clone(), h.snapshot()))
            .collect()
    }
}

impl<L> TypedMetric for HistogramFamily<L> {
    const TYPE: MetricType = MetricType::Histogram;
}

impl<L: EncodeLabelSet + std::fmt::Debug + Send + Sync> EncodeMetric for HistogramFamily<L> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (labels, h) in self.0.read().iter() {
            h.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }

    fn is_empty(&self) -> bool {
        self.0.read().is_empty()
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot();
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(snapshot.buckets)
            .collect();
        encoder.encode_histogram::<NoLabelSet>(snapshot.sum, snapshot.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// `kn.serving.invocation.duration`'s attributes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvocationLabels {
    pub http_response_status_code: u16,
}

/// `http.server.request.duration`'s attributes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub http_request_method: &'static str,
    pub http_response_status_code: u16,
    pub kn_route_tag: Cow<'static, str>,
    pub network_protocol_version: &'static str,
    pub url_scheme: &'static str,
}

/// The instruments and the registry they are exposed from.
pub struct RequestMetrics {
    registry: Registry,
    invocation: HistogramFamily<InvocationLabels>,
    queue_depth: Gauge,
    with_breaker: bool,
    server: HistogramFamily<ServerLabels>,
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics").finish_non_exhaustive()
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new(false)
    }
}

impl RequestMetrics {
    /// The instruments; the queue-depth gauge is only exposed `with_breaker`.
    pub fn new(with_breaker: bool) -> Self {
        let mut registry = Registry::default();
        let invocation = HistogramFamily::<InvocationLabels>::default();
        registry.register_with_unit(
            "kn_serving_invocation_duration",
            "The time it takes for the user's application to respond to a request",
            Unit::Seconds,
            invocation.clone(),
        );
        let queue_depth = Gauge::default();
        if with_breaker {
            registry.register(
                "kn_serving_queue_depth",
                "Number of requests queued or executing in the queue-proxy's breaker",
                queue_depth.clone(),
            );
        }
        let server = HistogramFamily::<ServerLabels>::default();
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP server requests",
            Unit::Seconds,
            server.clone(),
        );
        RequestMetrics {
            registry,
            invocation,
            queue_depth,
            with_breaker,
            server,
        }
    }

    /// `kn.serving.invocation.duration`'s series.
    pub fn invocation_snapshot(&self) -> Vec<(InvocationLabels, HistogramSnapshot)> {
        self.invocation.snapshot()
    }

    /// `http.server.request.duration`'s series.
    pub fn server_snapshot(&self) -> Vec<(ServerLabels, HistogramSnapshot)> {
        self.server.snapshot()
    }

    /// `kn.serving.queue.depth`, when there is a breaker.
    pub fn queue_depth(&self) -> Option<i64> {
        self.with_breaker.then(|| self.queue_depth.get())
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// A request passed the breaker, which now holds `in_flight` requests.
    pub fn set_queue_depth(&self, in_flight: usize) {
        self.queue_depth
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }

    /// Starts timing the app's answer to a non-probe request.
    pub fn invocation_started(self: &Arc<Self>) -> InvocationTimer {
        InvocationTimer {
            metrics: self.clone(),
            started: Instant::now(),
            status: 0,
        }
    }

    /// Starts timing a non-probe request as the server sees it.
    pub fn server_started<B>(self: &Arc<Self>, req: &Request<B>) -> ServerTimer {
        ServerTimer {
            metrics: self.clone(),
            started: Instant::now(),
            labels: ServerLabels {
                http_request_method: semconv::method(req.method()),
                http_response_status_code: 0,
                kn_route_tag: tag_label(req.headers()),
                network_protocol_version: semconv::protocol_version(req.version()),
                url_scheme: "http",
            },
        }
    }
}

fn tag_label(headers: &HeaderMap) -> Cow<'static, str> {
    match route_tag::route_tag(headers) {
        route_tag::DISABLED => Cow::Borrowed(route_tag::DISABLED),
        route_tag::DEFAULT => Cow::Borrowed(route_tag::DEFAULT),
        route_tag::UNDEFINED => Cow::Borrowed(route_tag::UNDEFINED),
        tag => Cow::Owned(tag.to_owned()),
    }
}

/// Records the invocation duration when dropped: held by the response body
/// until the app's response is over.
pub struct InvocationTimer {
    metrics: Arc<RequestMetrics>,
    started: Instant,
    status: u16,
}

impl InvocationTimer {
    /// Hands the timer to `resp`'s body, recording the status it answered with.
    pub fn attach(mut self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        self.status = resp.status().as_u16();
        resp.map(|body| body.holding(Box::new(self)))
    }
}

impl Drop for InvocationTimer {
    fn drop(&mut self) {
        // Dropped before a response existed (the call was cancelled): upstream's
        // handler would have recorded its default status.
        let status = if self.status == 0 { 200 } else { self.status };
        self.metrics.invocation.observe(
            &InvocationLabels {
                http_response_status_code: status,
            },
            self.started.elapsed().as_secs_f64(),
        );
    }
}

/// Records the server request duration when dropped.
pub struct ServerTimer {
    metrics: Arc<RequestMetrics>,
    started: Instant,
    labels: ServerLabels,
}

impl ServerTimer {
    /// Hands the timer to `resp`'s body, recording its status.
    pub fn attach(mut self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        self.labels.http_response_status_code = resp.status().as_u16();
        resp.map(|body| body.holding(Box::new(self)))
    }
}

impl Drop for ServerTimer {
    fn drop(&mut self) {
        if self.labels.http_response_status_code == 0 {
            // The connection went away before an answer: otelhttp saw none either.
            return;
        }
        self.metrics
            .server
            .observe(&self.labels, self.started.elapsed().as_secs_f64());
    }
}

/// Something with a Prometheus text exposition (the queue-proxy's request
/// metrics, the activator's metrics).
pub trait Exposition: Send + Sync + 'static {
    /// The OpenMetrics text, as served with [`CONTENT_TYPE`].
    fn encode(&self) -> String;
}

impl Exposition for RequestMetrics {
    fn encode(&self) -> String {
        RequestMetrics::encode(self)
    }
}

/// The Prometheus endpoint: `GET /metrics`; other paths 404, other methods 405.
pub struct MetricsEndpoint<M: Exposition = RequestMetrics>(pub Arc<M>);

impl<M: Exposition> Handler for MetricsEndpoint<M> {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        let resp = if req.uri().path() != "/metrics" {
            plain(StatusCode::NOT_FOUND, "404 page not found\n")
        } else if req.method() != Method::GET && req.method() != Method::HEAD {
            plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        } else {
            let mut resp = Response::new(ProxyBody::local(Bytes::from(self.0.encode())));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            resp
        };
        std::future::ready(resp)
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::local(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Whether `config` turns the Prometheus exporter on.
pub fn enabled(config: &RequestMetricsConfig) -> bool {
    config.protocol == PROMETHEUS
}

/// Binds the exporter's listener: `endpoint` (`:port` on all interfaces, or
/// `host:port`) when set, else `default_port` on all interfaces.
pub fn bind(endpoint: &str, default_port: u16) -> Result<TcpListener, ServeError> {
    let endpoint = endpoint.trim();
    if endpoint.is_empty() {
        return bind_dual_stack(default_port);
    }
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| bad_endpoint(endpoint))?;
    let port: u16 = port.parse().map_err(|_| bad_endpoint(endpoint))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return bind_dual_stack(port);
    }
    let listener = std::net::TcpListener::bind((host, port))
        .and_then(|l| {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        })
        .map_err(|source| ServeError::Bind { port, source })?;
    Ok(listener)
}

fn bad_endpoint(endpoint: &str) -> ServeError {
    ServeError::Bind {
        port: 0,
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("OBSERVABILITY_CONFIG: requestMetrics.endpoint {endpoint:?} is not host:port"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_buckets() {
        let m = Arc::new(RequestMetrics::new(true));
        m.set_queue_depth(3);
        let mut t = m.invocation_started();
        t.status = 200;
        drop(t);
        let text = m.encode();
        assert!(text.contains("# TYPE kn_serving_invocation_duration_seconds histogram\n"));
        assert!(text.contains("# UNIT kn_serving_invocation_duration_seconds seconds\n"));
        assert!(text.contains(
            "kn_serving_invocation_duration_seconds_bucket{le=\"0.005\",http_response_status_code=\"200\"} 1\n"
        ) || text.contains(
            "kn_serving_invocation_duration_seconds_bucket{http_response_status_code=\"200\",le=\"0.005\"} 1\n"
        ), "{text}");
        assert!(text.contains("kn_serving_queue_depth 3\n"), "{text}");
        // A family with no series yet is left out entirely.
        assert!(!text.contains("http_server_request_duration"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        println!("{text}");
    }

    #[test]
    fn no_breaker_no_gauge() {
        assert!(!RequestMetrics::new(false).encode().contains("queue_depth"));
    }

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let h = AtomicHistogram::default();
        h.observe(1.0);
        h.observe(11.0);
        assert_eq!(h.buckets[9].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[14].load(Ordering::Relaxed), 1);
        assert_eq!(f64::from_bits(h.sum.load(Ordering::Relaxed)), 12.0);
    }
}
