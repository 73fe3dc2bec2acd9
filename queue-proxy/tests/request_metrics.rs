//! User-facing request metrics over real sockets (spec §8b): check 57, and the
//! route tag on the server duration (check 22 over the wire).

mod support;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::sync::Notify;

const PROMETHEUS: &str = r#"{"requestMetrics":{"protocol":"prometheus"}}"#;
const INVOCATION: &str = "kn_serving_invocation_duration_seconds";
const SERVER: &str = "http_server_request_duration_seconds";

/// An app that answers `/slow` after 900 ms (inside the `(0.75, 1]` bucket),
/// `/hold` once `release` is notified, anything else at once.
async fn start_test_app(release: Arc<Notify>) -> SocketAddr {
    start_app(move |req: Request<Incoming>| {
        let release = release.clone();
        async move {
            match req.uri().path() {
                "/slow" => tokio::time::sleep(Duration::from_millis(900)).await,
                "/hold" => release.notified().await,
                _ => {}
            }
            Response::new(full("ok"))
        }
    })
    .await
}

async fn scrape_text(qp: &Qp) -> String {
    let got = get(qp.user_metrics.expect("prometheus port"), "/metrics", &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = got.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

/// The value of the series `name` whose labels include all of `labels`.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        let (metric, label_text) = match key.split_once('{') {
            Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
            None => (key, ""),
        };
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|l| l == format!("{k}=\"{v}\"")));
        (metric == name && all).then(|| value.parse().unwrap())
    })
}

// Check 57: a ~1 s request lands in the `le="1"` bucket with its status; a
// probe that reaches the app is not recorded.
#[tokio::test]
async fn invocation_duration_is_recorded_for_non_probes() {
    let app = start_test_app(Arc::new(Notify::new())).await;
    let qp = Qp::start(app.port(), &[("OBSERVABILITY_CONFIG", PROMETHEUS)]).await;

    // A probe the drainer does not answer goes to the app, unrecorded.
    let got = get(qp.main, "/", &[("k-network-probe", "activator")]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.text(), "ok");
    let text = scrape_text(&qp).await;
    assert!(!text.contains(INVOCATION), "{text}");
    assert!(!text.contains(SERVER), "{text}");
    // No breaker (CC=0): no queue-depth gauge.
    assert!(!text.contains("kn_serving_queue_depth"), "{text}");

    let got = get(qp.main, "/slow", &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    let text = scrape_text(&qp).await;
    let status = ("http_response_status_code", "200");
    let count = format!("{INVOCATION}_count");
    let bucket = format!("{INVOCATION}_bucket");
    assert_eq!(series(&text, &count, &[status]), Some(1.0), "{text}");
    assert_eq!(
        series(&text, &bucket, &[status, ("le", "1.0")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(&text, &bucket, &[status, ("le", "0.75")]),
        Some(0.0),
        "{text}"
    );
    let sum = series(&text, &format!("{INVOCATION}_sum"), &[status]).unwrap();
    assert!((0.9..1.0).contains(&sum), "{sum}");
    qp.stop().await;
}

// Check 57: with CC=10 and one request in flight, the queue depth is 1.
#[tokio::test]
async fn queue_depth_counts_the_request_past_the_breaker() {
    let release = Arc::new(Notify::new());
    let app = start_test_app(release.clone()).await;
    let qp = Qp::start(
        app.port(),
        &[
            ("OBSERVABILITY_CONFIG", PROMETHEUS),
            ("CONTAINER_CONCURRENCY", "10"),
        ],
    )
    .await;
    let main = qp.main;
    let held = tokio::spawn(async move { get(main, "/hold", &[]).await });
    let text = within(5, async {
        loop {
            let text = scrape_text(&qp).await;
            // The gauge reads 0 until a request passes the breaker.
            if series(&text, "kn_serving_queue_depth", &[]) == Some(1.0) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        text.contains("# TYPE kn_serving_queue_depth gauge\n"),
        "{text}"
    );
    release.notify_one();
    assert_eq!(held.await.unwrap().status, StatusCode::OK);
    qp.stop().await;
}

// Check 22 over the wire: the route tag labels the server duration.
#[tokio::test]
async fn server_duration_carries_route_tag_and_protocol() {
    let app = start_test_app(Arc::new(Notify::new())).await;
    let qp = Qp::start(app.port(), &[("OBSERVABILITY_CONFIG", PROMETHEUS)]).await;
    get(qp.main, "/", &[("knative-serving-tag", "test-tag")]).await;
    get(qp.main, "/", &[]).await;
    let req = Request::post("/")
        .header("knative-serving-default-route", "x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send_h2(qp.main, req).await.status, StatusCode::OK);

    let text = scrape_text(&qp).await;
    let count = format!("{SERVER}_count");
    let common = [("http_response_status_code", "200"), ("url_scheme", "http")];
    for (method, tag, version) in [
        ("GET", "test-tag", "1.1"),
        ("GET", "kn:disabled", "1.1"),
        ("POST", "kn:default", "2"),
    ] {
        let mut labels = common.to_vec();
        labels.extend([
            ("http_request_method", method),
            ("kn_route_tag", tag),
            ("network_protocol_version", version),
        ]);
        assert_eq!(series(&text, &count, &labels), Some(1.0), "{tag}: {text}");
    }
    assert!(
        text.contains(&format!("# TYPE {SERVER} histogram\n")),
        "{text}"
    );
    // Other paths are not the exporter's.
    let got = get(qp.user_metrics.unwrap(), "/other", &[]).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    qp.stop().await;
}

// Check 57: protocol none (the default) serves nothing on the port.
#[tokio::test]
async fn protocol_none_listens_nowhere() {
    let app = start_test_app(Arc::new(Notify::new())).await;
    let port = closed_port().await;
    let qp = Qp::start(
        app.port(),
        &[("QUEUE_PROXY_USER_METRICS_PORT", &port.to_string())],
    )
    .await;
    assert!(qp.user_metrics.is_none());
    assert_eq!(get(qp.main, "/", &[]).await.status, StatusCode::OK);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    qp.stop().await;
}
