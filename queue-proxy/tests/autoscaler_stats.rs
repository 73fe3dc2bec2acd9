//! The autoscaler's view over real sockets: spec §12 checks 8 and 52–56.

mod support;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::time::Duration;
use support::*;
use tokio::time::Instant;

// Check 52: before the first window closes, only pod_name is set.
// Check 53: whatever the Accept header, the answer is protobuf.
#[tokio::test]
async fn before_the_first_tick_only_pod_name_and_always_protobuf() {
    let app = start_echo_app().await;
    let qp = Qp::start(app.port(), &[]).await;
    for accept in [
        None,
        Some("something-else"),
        Some("application/protobuf"),
        Some("something/else, application/protobuf"),
        Some("text/plain"),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
        let got = get(qp.metrics, "/metrics", &headers).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.headers["content-type"], "application/protobuf");
        use metrics_proto::Message;
        let stat = metrics_proto::Stat::decode(got.body.clone()).unwrap();
        assert_eq!(
            stat,
            metrics_proto::Stat {
                pod_name: "test-pod-1".into(),
                ..Default::default()
            },
            "accept {accept:?}"
        );
    }
    // Any method.
    let req = Request::post("/metrics")
        .header("host", "x")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(send_h1(qp.metrics, req).await.status, StatusCode::OK);
    qp.stop().await;
}

// Check 56: other paths are Go's 404; so are all admin paths but the drain one.
#[tokio::test]
async fn other_metrics_paths_are_404() {
    let app = start_echo_app().await;
    let qp = Qp::start(app.port(), &[]).await;
    for path in ["/other", "/metrics/", "/"] {
        let got = get(qp.metrics, path, &[]).await;
        assert_eq!(got.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(got.text(), "404 page not found\n");
    }
    assert_eq!(
        get(qp.admin, "/anything-else", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    qp.stop().await;
}

/// Scrapes every `step` until `windows` distinct windows were seen (a window is
/// told apart by its `process_uptime`), returning them in order.
async fn windows(qp: &Qp, windows: usize) -> Vec<metrics_proto::Stat> {
    let mut seen: Vec<metrics_proto::Stat> = Vec::new();
    within(windows as u64 * 2 + 5, async {
        while seen.len() < windows {
            let (_, stat) = scrape(qp.metrics).await;
            if stat.process_uptime > 0.0
                && seen
                    .last()
                    .is_none_or(|last| last.process_uptime != stat.process_uptime)
            {
                seen.push(stat);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    seen
}

// Checks 8 and 54: 39 arrivals, 15 through the activator, are counted (summed
// over the windows they fell in, since a burst may straddle a tick).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counts_split_proxied_and_direct() {
    let app = start_echo_app().await;
    let qp = Qp::start(app.port(), &[]).await;
    // Wait for a fresh window so the burst starts right after a tick.
    let first = windows(&qp, 1).await;
    let mut proxied_echo = None;
    for i in 0..39 {
        let headers: &[(&str, &str)] = if i < 15 {
            &[("k-proxy-request", "activator")]
        } else {
            &[]
        };
        let got = get(qp.main, "/", headers).await;
        assert_eq!(got.status, StatusCode::OK);
        if i == 0 {
            proxied_echo = echoed_header(&got, "k-proxy-request");
        }
    }
    // Probes that reach the app are not counted.
    get(qp.main, "/", &[("k-kubelet-probe", "1")]).await;
    assert_eq!(proxied_echo.as_deref(), Some("activator"));

    let after = windows(&qp, 3).await;
    let (total, proxied) = after.iter().fold((0.0, 0.0), |(t, p), s| {
        (t + s.request_count, p + s.proxied_request_count)
    });
    assert_eq!((total, proxied), (39.0, 15.0), "windows: {after:?}");
    for stat in first.iter().chain(&after) {
        assert_eq!(stat.pod_name, "test-pod-1");
        assert_eq!(stat.timestamp, 0);
    }
    qp.stop().await;
}

// Check 54 (averages): one request held across whole windows reads as
// concurrency 1 in them, and 0 once it has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_across_windows_averages_one() {
    let app = start_app(|req: Request<Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(2600)).await;
        }
        Response::new(full("ok"))
    })
    .await;
    let qp = Qp::start(app.port(), &[]).await;
    let slow = tokio::spawn(get(qp.main, "/slow", &[("k-proxy-request", "activator")]));
    let seen = windows(&qp, 2).await;
    // At least one of the first windows lies fully inside the request.
    assert!(
        seen.iter()
            .any(|s| (s.average_concurrent_requests - 1.0).abs() < 1e-3
                && (s.average_proxied_concurrent_requests - 1.0).abs() < 1e-3),
        "{seen:?}"
    );
    slow.await.unwrap();
    // The first window seen may still hold the end of the request.
    let later = windows(&qp, 3).await;
    assert_eq!(later.last().unwrap().average_concurrent_requests, 0.0);
    qp.stop().await;
}

// Check 55: process_uptime tracks the time since start.
#[tokio::test]
async fn process_uptime_tracks_time_since_start() {
    let started = Instant::now();
    let app = start_echo_app().await;
    let qp = Qp::start(app.port(), &[]).await;
    let seen = windows(&qp, 2).await;
    let elapsed = started.elapsed().as_secs_f64();
    let last = seen.last().unwrap();
    assert!(
        last.process_uptime > 0.9 && last.process_uptime <= elapsed + 0.01,
        "uptime {} after {elapsed} s",
        last.process_uptime
    );
    qp.stop().await;
}
