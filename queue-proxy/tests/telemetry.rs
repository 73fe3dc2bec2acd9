//! Tracing and the OTLP metrics push against a collector stand-in on loopback
//! (spec §8b, §9): the real queue-proxy exports its spans and request metrics;
//! the app sees the propagated context.

mod support;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use support::collector::{Collector, Received};
use support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn str_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn int_attr(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attributes, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

fn span<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {:?}", names(spans)))
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

fn config(tracing: &str, rate: f64, endpoint: &str, metrics: &str) -> String {
    format!(
        r#"{{"tracing":{{"protocol":"{tracing}","endpoint":"{endpoint}","samplingRate":{rate}}},
            "requestMetrics":{{"protocol":"{metrics}","endpoint":"{endpoint}","exportInterval":100000000}}}}"#
    )
}

/// The invocation histogram's total count in the last metrics push.
fn pushed_invocations(r: &Received) -> u64 {
    let Some(last) = r.metrics.last() else {
        return 0;
    };
    last.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "kn.serving.invocation.duration")
        .filter_map(|m| match &m.data {
            Some(metric::Data::Histogram(h)) => {
                Some(h.data_points.iter().map(|p| p.count).sum::<u64>())
            }
            _ => None,
        })
        .sum()
}

// Server → kn.queueproxy.proxy → kn.queueproxy.wait → client, over OTLP/HTTP,
// with the incoming context as the server span's parent and the client span's
// context at the app; probes add no spans; request metrics are pushed too.
#[tokio::test]
async fn spans_nest_and_propagate_over_otlp_http() {
    let collector = Collector::start().await;
    let app = start_echo_app().await;
    let observability = config(
        "http/protobuf",
        1.0,
        &collector.http_endpoint(),
        "http/protobuf",
    );
    let qp = Qp::start(
        app.port(),
        &[
            ("OBSERVABILITY_CONFIG", &observability),
            ("CONTAINER_CONCURRENCY", "10"),
        ],
    )
    .await;

    let got = get(
        qp.main,
        "/hello?x=1",
        &[
            ("traceparent", TRACEPARENT),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("baggage", "user=alice"),
            ("knative-serving-tag", "blue"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    let sent = echoed_header(&got, "traceparent").expect("the app gets a traceparent");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE_ID, "01"),
        "{sent}"
    );
    assert_ne!(parts[2], PARENT_SPAN, "the client span is the app's parent");
    assert_eq!(
        echoed_header(&got, "tracestate").as_deref(),
        Some("congo=t61rcWkgMzE")
    );
    assert_eq!(
        echoed_header(&got, "baggage").as_deref(),
        Some("user=alice")
    );

    // Probes: answered by the queue-proxy, or forwarded (kubelet) — no spans.
    let probe = get(
        qp.main,
        "/",
        &[
            ("k-network-probe", "queue"),
            ("user-agent", "kube-probe/1.30"),
        ],
    )
    .await;
    assert_eq!(probe.status, 200);
    let kubelet = get(
        qp.main,
        "/",
        &[("k-kubelet-probe", "1"), ("traceparent", TRACEPARENT)],
    )
    .await;
    assert_eq!(
        echoed_header(&kubelet, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );

    collector.wait_for(|r| pushed_invocations(r) >= 1).await;
    qp.stop().await;

    let spans = collector.spans();
    assert_eq!(spans.len(), 4, "{:?}", names(&spans));
    let server = span(&spans, "GET");
    let proxy = span(&spans, "kn.queueproxy.proxy");
    let wait = span(&spans, "kn.queueproxy.wait");
    let client = span(&spans, "HTTP GET");
    for s in &spans {
        assert_eq!(hex(&s.trace_id), TRACE_ID);
    }
    assert_eq!(hex(&server.parent_span_id), PARENT_SPAN);
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(proxy.parent_span_id, server.span_id);
    assert_eq!(proxy.kind, SpanKind::Internal as i32);
    assert_eq!(wait.parent_span_id, proxy.span_id);
    // As upstream: the wait span stays the request's context, so it parents the call.
    assert_eq!(client.parent_span_id, wait.span_id);
    assert_eq!(client.kind, SpanKind::Client as i32);
    assert_eq!(hex(&client.span_id), parts[2]);

    assert_eq!(str_attr(&server.attributes, "kn.route.tag"), Some("blue"));
    assert_eq!(
        int_attr(&server.attributes, "http.response.status_code"),
        Some(200)
    );
    assert_eq!(str_attr(&server.attributes, "url.path"), Some("/hello"));
    assert_eq!(
        int_attr(&client.attributes, "http.response.status_code"),
        Some(200)
    );
    // Children end before their parents.
    assert!(client.end_time_unix_nano <= proxy.end_time_unix_nano);
    assert!(proxy.end_time_unix_nano <= server.end_time_unix_nano);
    assert!(wait.end_time_unix_nano <= client.start_time_unix_nano);

    collector.with(|r| {
        let resource = r.traces[0].resource_spans[0].resource.as_ref().unwrap();
        assert_eq!(
            str_attr(&resource.attributes, "k8s.pod.name"),
            Some("test-pod-1")
        );
        assert_eq!(
            str_attr(&resource.attributes, "k8s.container.name"),
            Some("queue-proxy")
        );
        assert!(
            r.requests
                .iter()
                .all(|(_, ct)| ct == "application/x-protobuf")
        );
        // Only the traced request counts: the kubelet probe reached the app unrecorded.
        assert_eq!(pushed_invocations(r), 1);
    });
}

// OTLP/gRPC for both signals; no breaker, so no wait span.
#[tokio::test]
async fn spans_and_metrics_over_otlp_grpc() {
    let collector = Collector::start().await;
    let app = start_echo_app().await;
    let observability = config("grpc", 1.0, &collector.http_endpoint(), "grpc");
    let qp = Qp::start(app.port(), &[("OBSERVABILITY_CONFIG", &observability)]).await;

    let got = get(qp.main, "/", &[]).await;
    assert_eq!(got.status, 200);
    let sent = echoed_header(&got, "traceparent").expect("a new trace reaches the app");
    collector.wait_for(|r| pushed_invocations(r) >= 1).await;
    qp.stop().await;

    let spans = collector.spans();
    assert_eq!(names(&spans).len(), 3, "{:?}", names(&spans));
    let server = span(&spans, "GET");
    let proxy = span(&spans, "kn.queueproxy.proxy");
    let client = span(&spans, "HTTP GET");
    assert!(server.parent_span_id.is_empty(), "a root span");
    assert_eq!(proxy.parent_span_id, server.span_id);
    assert_eq!(client.parent_span_id, proxy.span_id);
    assert_eq!(
        sent,
        format!("00-{}-{}-01", hex(&client.trace_id), hex(&client.span_id))
    );
    collector.with(|r| {
        assert!(r.requests.iter().all(|(_, ct)| ct == "application/grpc"));
        let queue_scope = &r.metrics[0].resource_metrics[0].scope_metrics[0];
        assert_eq!(
            queue_scope.scope.as_ref().unwrap().name,
            "knative.dev/serving/pkg/queue"
        );
        // No breaker: no queue-depth gauge.
        assert!(
            queue_scope
                .metrics
                .iter()
                .all(|m| m.name != "kn.serving.queue.depth")
        );
    });
}

/// A request with `traceparent`, `tracestate: a=b` and `baggage: k=v`.
async fn get_with_full_context(qp: &Qp) -> Got {
    let context = [
        ("traceparent", TRACEPARENT),
        ("tracestate", "a=b"),
        ("baggage", "k=v"),
    ];
    get(qp.main, "/", &context).await
}

fn assert_trace_state_and_baggage_kept(got: &Got) {
    assert_eq!(echoed_header(got, "tracestate").as_deref(), Some("a=b"));
    assert_eq!(echoed_header(got, "baggage").as_deref(), Some("k=v"));
}

// `none`: the headers reach the app exactly as sent, nothing is exported.
#[tokio::test]
async fn tracing_none_passes_headers_unchanged() {
    let collector = Collector::start().await;
    let app = start_echo_app().await;
    let observability = config("none", 1.0, &collector.http_endpoint(), "none");
    let qp = Qp::start(app.port(), &[("OBSERVABILITY_CONFIG", &observability)]).await;
    let got = get_with_full_context(&qp).await;
    assert_eq!(
        echoed_header(&got, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );
    assert_trace_state_and_baggage_kept(&got);
    let plain = get(qp.main, "/", &[]).await;
    assert_eq!(echoed_header(&plain, "traceparent"), None);
    qp.stop().await;
    assert!(collector.with(|r| r.requests.is_empty()));
}

// samplingRate 0: nothing is exported, but the context still propagates (a new
// span id, not sampled), as Go's SDK does with a never-sampler.
#[tokio::test]
async fn sampled_out_requests_propagate_but_export_nothing() {
    let collector = Collector::start().await;
    let app = start_echo_app().await;
    let observability = config("http/protobuf", 0.0, &collector.http_endpoint(), "none");
    let qp = Qp::start(app.port(), &[("OBSERVABILITY_CONFIG", &observability)]).await;
    let got = get(qp.main, "/", &[("traceparent", TRACEPARENT)]).await;
    let sent = echoed_header(&got, "traceparent").unwrap();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!((parts[1], parts[3]), (TRACE_ID, "00"), "{sent}");
    assert_ne!(parts[2], PARENT_SPAN);
    // No empty `tracestate` is added (Go's propagator sets none).
    assert_eq!(echoed_header(&got, "tracestate"), None);
    let got = get_with_full_context(&qp).await;
    assert_trace_state_and_baggage_kept(&got);
    // Without a parent, a new trace id reaches the app.
    let got = get(qp.main, "/", &[]).await;
    let sent = echoed_header(&got, "traceparent").expect("a new trace");
    assert!(sent.starts_with("00-") && sent.ends_with("-00"), "{sent}");
    qp.stop().await;
    assert!(collector.spans().is_empty());
}

// An unknown protocol is a startup error naming the variable.
#[test]
fn unknown_tracing_protocol_is_an_error() {
    let mut env = queue_proxy::config::test_env(8080);
    env.insert(
        "OBSERVABILITY_CONFIG".into(),
        r#"{"tracing":{"protocol":"zipkin"}}"#.into(),
    );
    env.insert("QUEUE_SERVING_PORT".into(), "0".into());
    let config = queue_proxy::config::Config::from_env(&env).unwrap();
    let err = queue_proxy::Sidecar::bind(config).err().expect("refused");
    assert!(
        err.to_string().starts_with("OBSERVABILITY_CONFIG: "),
        "{err}"
    );
    assert!(err.to_string().contains("zipkin"), "{err}");
}
