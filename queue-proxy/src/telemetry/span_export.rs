//! Where finished spans go: an OTLP collector (`grpc`, `http/protobuf`) or
//! stdout (`stdout`), behind the SDK's batch span processor.
//!
//! The batch processor runs exports on its own thread and blocks on their
//! futures; the OTLP request itself runs as a task on the proxy's tokio runtime
//! (hyper needs its reactor) and the exporter's future only waits for it.

use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prost::Message;
use serde_json::{Map, Value as Json, json};
use std::io::Write;
use tokio::runtime::Handle;

use super::otlp::{self, Endpoint};
use crate::timefmt::{Precision, rfc3339};

/// Sends batches of spans to a collector.
pub struct OtlpSpanExporter {
    endpoint: Endpoint,
    runtime: Handle,
    resource: ResourceAttributesWithSchema,
}

impl std::fmt::Debug for OtlpSpanExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpSpanExporter")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl OtlpSpanExporter {
    /// Exports to `endpoint`, running the requests on `runtime`.
    pub fn new(endpoint: Endpoint, runtime: Handle) -> Self {
        OtlpSpanExporter {
            endpoint,
            runtime,
            resource: ResourceAttributesWithSchema::default(),
        }
    }
}

impl SpanExporter for OtlpSpanExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &self.resource),
        };
        let message = request.encode_to_vec();
        let endpoint = self.endpoint.clone();
        let task = self
            .runtime
            .spawn(async move { otlp::export(&endpoint, message).await });
        async move {
            match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "exporting spans failed");
                    Err(OTelSdkError::InternalFailure(err.to_string()))
                }
                Err(err) => Err(OTelSdkError::InternalFailure(err.to_string())),
            }
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.into();
    }
}

/// Writes every span as one JSON line on stdout (`tracing.protocol: stdout`,
/// a debugging aid; the field names follow Go's stdouttrace exporter).
#[derive(Debug, Default)]
pub struct StdoutSpanExporter;

impl SpanExporter for StdoutSpanExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let mut out = Vec::new();
        for span in &batch {
            let _ = serde_json::to_writer(&mut out, &stdout_json(span));
            out.push(b'\n');
        }
        let written = std::io::stdout().lock().write_all(&out);
        std::future::ready(written.map_err(|e| OTelSdkError::InternalFailure(e.to_string())))
    }
}

fn stdout_json(span: &SpanData) -> Json {
    let attributes: Vec<Json> = span
        .attributes
        .iter()
        .map(|kv| json!({"Key": kv.key.as_str(), "Value": attribute_json(&kv.value)}))
        .collect();
    let (code, description) = match &span.status {
        Status::Unset => ("Unset", ""),
        Status::Ok => ("Ok", ""),
        Status::Error { description } => ("Error", description.as_ref()),
    };
    let mut obj = Map::new();
    obj.insert("Name".into(), json!(span.name));
    obj.insert(
        "SpanContext".into(),
        json!({
            "TraceID": span.span_context.trace_id().to_string(),
            "SpanID": span.span_context.span_id().to_string(),
            "TraceFlags": format!("{:02x}", span.span_context.trace_flags().to_u8()),
        }),
    );
    obj.insert(
        "Parent".into(),
        json!({
            "TraceID": span.span_context.trace_id().to_string(),
            "SpanID": span.parent_span_id.to_string(),
            "Remote": span.parent_span_is_remote,
        }),
    );
    obj.insert("SpanKind".into(), json!(kind_number(&span.span_kind)));
    obj.insert(
        "StartTime".into(),
        json!(rfc3339(span.start_time, Precision::Nanos)),
    );
    obj.insert(
        "EndTime".into(),
        json!(rfc3339(span.end_time, Precision::Nanos)),
    );
    obj.insert("Attributes".into(), Json::Array(attributes));
    obj.insert(
        "Status".into(),
        json!({"Code": code, "Description": description}),
    );
    obj.insert(
        "InstrumentationScope".into(),
        json!({"Name": span.instrumentation_scope.name()}),
    );
    Json::Object(obj)
}

/// Go's `trace.SpanKind` numbers.
fn kind_number(kind: &SpanKind) -> u8 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn attribute_json(value: &Value) -> Json {
    match value {
        Value::Bool(b) => json!({"Type": "BOOL", "Value": b}),
        Value::I64(i) => json!({"Type": "INT64", "Value": i}),
        Value::F64(f) => json!({"Type": "FLOAT64", "Value": f}),
        other => json!({"Type": "STRING", "Value": other.to_string()}),
    }
}
