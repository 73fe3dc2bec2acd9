//! OTLP push of the request metrics (`requestMetrics.protocol` `grpc` or
//! `http/protobuf`, knative#16215): every `exportInterval` (OTel's default
//! 60 s when unset), and once more at shutdown, the instruments of
//! [`RequestMetrics`] are read and sent as one `ExportMetricsServiceRequest`.
//!
//! Recording is untouched: requests still only bump the atomic histograms of
//! [`crate::request_metrics`]; this task reads them. Temporality is cumulative
//! (the Go SDK's default), from the exporter's start.

use opentelemetry::KeyValue as ApiKeyValue;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;
use prost::Message;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::otlp::{self, Endpoint};
use super::spans::HTTP_SCOPE;
use crate::request_metrics::{BUCKETS, HistogramSnapshot, RequestMetrics};

/// The queue-proxy's own instruments' scope.
pub const QUEUE_SCOPE: &str = "knative.dev/serving/pkg/queue";

/// OTel's default export interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Pushes `metrics` to a collector.
pub struct MetricsPusher {
    endpoint: Endpoint,
    interval: Duration,
    metrics: Arc<RequestMetrics>,
    resource: Vec<KeyValue>,
    started: SystemTime,
}

impl MetricsPusher {
    /// A pusher of `metrics` to `endpoint` every `interval` (zero: the default).
    pub fn new(
        endpoint: Endpoint,
        interval: Duration,
        metrics: Arc<RequestMetrics>,
        resource: &Resource,
    ) -> Self {
        MetricsPusher {
            endpoint,
            interval: if interval.is_zero() {
                DEFAULT_INTERVAL
            } else {
                interval
            },
            metrics,
            resource: ResourceAttributesWithSchema::from(resource).attributes.0,
            started: SystemTime::now(),
        }
    }

    /// Pushes every interval until `stop` completes, then pushes a last time.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.push().await,
                () = &mut stop => break,
            }
        }
        self.push().await;
    }

    async fn push(&self) {
        let message = self.request(SystemTime::now()).encode_to_vec();
        if let Err(err) = otlp::export(&self.endpoint, message).await {
            tracing::warn!(error = %err, "pushing request metrics failed");
        }
    }

    /// The export request for the instruments' state now.
    pub fn request(&self, now: SystemTime) -> ExportMetricsServiceRequest {
        let start = unix_nanos(self.started);
        let time = unix_nanos(now);
        let histogram = |name: &str, description: &str, points: Vec<HistogramDataPoint>| Metric {
            name: name.to_owned(),
            description: description.to_owned(),
            unit: "s".to_owned(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Metric::default()
        };

        let invocations = self
            .metrics
            .invocation_snapshot()
            .into_iter()
            .map(|(labels, h)| {
                let attributes = vec![kv(
                    "http.response.status_code",
                    i64::from(labels.http_response_status_code),
                )];
                point(attributes, &h, start, time)
            })
            .collect();
        let mut queue_metrics = vec![histogram(
            "kn.serving.invocation.duration",
            "The time it takes for the user's application to respond to a request",
            invocations,
        )];
        if let Some(depth) = self.metrics.queue_depth() {
            queue_metrics.push(Metric {
                name: "kn.serving.queue.depth".to_owned(),
                description: "Number of requests queued or executing in the queue-proxy's breaker"
                    .to_owned(),
                unit: "{request}".to_owned(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: time,
                        value: Some(number_data_point::Value::AsInt(depth)),
                        ..NumberDataPoint::default()
                    }],
                })),
                ..Metric::default()
            });
        }

        let server_points = self
            .metrics
            .server_snapshot()
            .into_iter()
            .map(|(labels, h)| {
                let attributes = vec![
                    kv("http.request.method", labels.http_request_method),
                    kv(
                        "http.response.status_code",
                        i64::from(labels.http_response_status_code),
                    ),
                    kv("kn.route.tag", labels.kn_route_tag.into_owned()),
                    kv("network.protocol.name", "http"),
                    kv("network.protocol.version", labels.network_protocol_version),
                    kv("url.scheme", labels.url_scheme),
                ];
                point(attributes, &h, start, time)
            })
            .collect();

        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(ProtoResource {
                    attributes: self.resource.clone(),
                    ..ProtoResource::default()
                }),
                scope_metrics: vec![
                    ScopeMetrics {
                        scope: Some(scope(QUEUE_SCOPE)),
                        metrics: queue_metrics,
                        schema_url: String::new(),
                    },
                    ScopeMetrics {
                        scope: Some(scope(HTTP_SCOPE)),
                        metrics: vec![histogram(
                            "http.server.request.duration",
                            "Duration of HTTP server requests.",
                            server_points,
                        )],
                        schema_url: String::new(),
                    },
                ],
                schema_url: String::new(),
            }],
        }
    }
}

fn point(
    attributes: Vec<KeyValue>,
    h: &HistogramSnapshot,
    start: u64,
    time: u64,
) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: h.count,
        sum: Some(h.sum),
        bucket_counts: h.buckets.to_vec(),
        explicit_bounds: BUCKETS.to_vec(),
        ..HistogramDataPoint::default()
    }
}

fn scope(name: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_owned(),
        ..InstrumentationScope::default()
    }
}

fn kv(key: &str, value: impl Into<opentelemetry::Value>) -> KeyValue {
    let api = ApiKeyValue::new(key.to_owned(), value);
    KeyValue {
        key: api.key.as_str().to_owned(),
        value: Some(AnyValue::from(api.value)),
        ..KeyValue::default()
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    let nanos = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

/// The string value of `kv`, if it is one (for tests and collectors).
pub fn string_value(kv: &KeyValue) -> Option<&str> {
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::otlp::{Protocol, Signal};

    #[test]
    fn request_carries_the_instruments() {
        let metrics = Arc::new(RequestMetrics::new(true));
        metrics.set_queue_depth(2);
        drop(metrics.invocation_started());
        let endpoint =
            Endpoint::resolve(Protocol::HttpProtobuf, Signal::Metrics, "c:4318", |_| None).unwrap();
        let pusher = MetricsPusher::new(
            endpoint,
            Duration::ZERO,
            metrics,
            &Resource::builder_empty().build(),
        );
        assert_eq!(pusher.interval, DEFAULT_INTERVAL);
        let req = pusher.request(SystemTime::now());
        let scopes = &req.resource_metrics[0].scope_metrics;
        assert_eq!(scopes[0].scope.as_ref().unwrap().name, QUEUE_SCOPE);
        let invocation = &scopes[0].metrics[0];
        assert_eq!(invocation.name, "kn.serving.invocation.duration");
        let Some(metric::Data::Histogram(h)) = &invocation.data else {
            panic!("not a histogram: {invocation:?}")
        };
        assert_eq!(h.data_points.len(), 1);
        assert_eq!(h.data_points[0].count, 1);
        assert_eq!(h.data_points[0].bucket_counts.len(), BUCKETS.len() + 1);
        let Some(metric::Data::Gauge(g)) = &scopes[0].metrics[1].data else {
            panic!("no gauge")
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsInt(2))
        );
    }
}
