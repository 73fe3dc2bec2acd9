//! Probe answers through the real proxy: spec §12 checks 23–30, 46 and 48.

mod support;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::*;

/// An app counting the requests it gets; `/healthz` answers 200 while `ready`.
async fn counting_app(hits: Arc<AtomicUsize>, ready: Arc<AtomicBool>) -> std::net::SocketAddr {
    start_app(move |req: Request<Incoming>| {
        let (hits, ready) = (hits.clone(), ready.clone());
        async move {
            if req.uri().path() == "/healthz" {
                let status = if ready.load(Ordering::SeqCst) {
                    200
                } else {
                    503
                };
                return Response::builder().status(status).body(full("")).unwrap();
            }
            hits.fetch_add(1, Ordering::SeqCst);
            Response::new(full("app"))
        }
    })
    .await
}

fn http_probe(port: u16) -> String {
    format!(
        r#"{{"httpGet":{{"path":"/healthz","port":{port},"host":"127.0.0.1","scheme":"HTTP"}},"successThreshold":1,"periodSeconds":1,"timeoutSeconds":1}}"#
    )
}

// Checks 23–29 and 30.
#[tokio::test]
async fn probe_answers() {
    let (hits, ready) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(true)),
    );
    let app = counting_app(hits.clone(), ready.clone()).await;
    let probe = http_probe(app.port());
    let qp = Qp::start(app.port(), &[("SERVING_READINESS_PROBE", &probe)]).await;

    // 23: kubelet probe of a ready app.
    let got = get(
        qp.main,
        "/",
        &[
            ("user-agent", "kube-probe/1.29"),
            ("k-network-probe", "queue"),
        ],
    )
    .await;
    assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "queue"));
    // 26: the activator's probe, path /healthz.
    let got = get(
        qp.main,
        "/healthz",
        &[
            ("user-agent", "Knative-Activator-Probe"),
            ("k-network-probe", "queue"),
        ],
    )
    .await;
    assert_eq!((got.status, &got.body[..]), (StatusCode::OK, &b"queue"[..]));
    // 25: wrong or missing probe header.
    let got = get(
        qp.main,
        "/",
        &[
            ("user-agent", "kube-probe/1.29"),
            ("k-network-probe", "test-probe"),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.text(), "unexpected probe header value: test-probe\n");
    let got = get(qp.main, "/", &[("user-agent", "kube-probe/1.29")]).await;
    assert_eq!(got.text(), "unexpected probe header value: \n");
    // 27: the autoscaler's probe lands here and fails as expected.
    let got = get(
        qp.main,
        "/",
        &[
            ("user-agent", "Knative-Autoscaling-Probe"),
            ("k-network-probe", "activator"),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.text(), "unexpected probe header value: activator\n");
    // 28: network probes.
    let got = get(
        qp.main,
        "/",
        &[("k-network-probe", "probe"), ("k-network-hash", "hash")],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers["k-network-hash"], "hash");
    assert!(got.body.is_empty());
    let got = get(qp.main, "/", &[("k-network-probe", "probe")]).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        got.text(),
        "a probe request must contain a non-empty \"K-Network-Hash\" header\n"
    );
    // None of those reached the app...
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // 29: ...but `K-Network-Probe: queue` from a normal client does.
    let got = get(
        qp.main,
        "/",
        &[("k-network-probe", "queue"), ("user-agent", "curl/8")],
    )
    .await;
    assert_eq!(got.text(), "app");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // 24: the app's readiness fails.
    ready.store(false, Ordering::SeqCst);
    let got = get(
        qp.main,
        "/",
        &[
            ("user-agent", "kube-probe/1.29"),
            ("k-network-probe", "queue"),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(got.body.is_empty());
    qp.stop().await;

    // 30: no readiness probe configured → always ready.
    let qp = Qp::start(app.port(), &[("SERVING_READINESS_PROBE", "")]).await;
    let got = get(
        qp.main,
        "/",
        &[
            ("user-agent", "kube-probe/1.29"),
            ("k-network-probe", "queue"),
        ],
    )
    .await;
    assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "queue"));
    qp.stop().await;
}

// Check 46: after SIGTERM, probes fail at once while requests are still served.
#[tokio::test]
async fn probes_fail_at_once_when_draining_while_traffic_flows() {
    let (hits, ready) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(true)),
    );
    let app = counting_app(hits.clone(), ready).await;
    let mut qp = Qp::start(app.port(), &[("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", "1500")]).await;
    let kube = [
        ("user-agent", "kube-probe/1.29"),
        ("k-network-probe", "queue"),
    ];
    assert_eq!(get(qp.main, "/", &kube).await.status, StatusCode::OK);
    qp.terminate();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for headers in [
        &kube[..],
        &[
            ("user-agent", "Knative-Activator-Probe"),
            ("k-network-probe", "queue"),
        ][..],
        &[("k-network-probe", "probe"), ("k-network-hash", "h")][..],
    ] {
        let got = get(qp.main, "/healthz", headers).await;
        assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{headers:?}");
        assert_eq!(got.text(), "shutting down\n");
    }
    let got = get(qp.main, "/", &[]).await;
    assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "app"));
    qp.finished_within(10).await;
}

// Check 48: /wait-for-drain without SIGTERM: probes fail during the second it
// waits, and report healthy again afterwards.
#[tokio::test]
async fn wait_for_drain_without_sigterm_fails_probes_for_a_second_only() {
    let app = counting_app(Arc::default(), Arc::new(AtomicBool::new(true))).await;
    let qp = Qp::start(app.port(), &[("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", "3000")]).await;
    let admin = qp.admin;
    let waiter = tokio::spawn(async move { get(admin, "/wait-for-drain", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kube = [
        ("user-agent", "kube-probe/1.29"),
        ("k-network-probe", "queue"),
    ];
    let got = get(qp.main, "/", &kube).await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(got.text(), "shutting down\n");
    assert_eq!(within(5, waiter).await.unwrap().status, StatusCode::OK);
    let got = get(qp.main, "/", &kube).await;
    assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "queue"));
    qp.stop().await;
}
