//! Drain and shutdown over real sockets: spec §12 checks 47–51, with the quiet
//! period shortened through QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS, and one run with
//! upstream's real 30 s.

mod support;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const QUIET_MS: u64 = 1000;

fn quiet(ms: u64) -> String {
    ms.to_string()
}

// Check 47: after SIGTERM with no traffic, /wait-for-drain returns after the
// quiet period; a request pushes the end back; the proxy then stops.
#[tokio::test]
async fn wait_for_drain_returns_after_the_quiet_period_pushed_by_requests() {
    let app = start_echo_app().await;
    let q = quiet(QUIET_MS);
    let mut qp = Qp::start(app.port(), &[("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", &q)]).await;
    let signalled = Instant::now();
    qp.terminate();
    let admin = qp.admin;
    let waiter = tokio::spawn(async move {
        let got = get(admin, "/wait-for-drain", &[]).await;
        (got, Instant::now())
    });
    // Requests are still served while draining, and each one restarts the period.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got = get(qp.main, "/", &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    let (got, returned) = within(10, waiter).await.unwrap();
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body.is_empty());
    let took = returned - signalled;
    assert!(
        took >= Duration::from_millis(1550) && took < Duration::from_millis(2500),
        "drain took {took:?}"
    );
    qp.finished_within(10).await;
}

// Check 48: without SIGTERM, /wait-for-drain resets the drain after ≈1 s.
#[tokio::test]
async fn wait_for_drain_without_sigterm_returns_after_one_second() {
    let app = start_echo_app().await;
    // A quiet period well above the 1 s reset, so the reset is what returns.
    let qp = Qp::start(app.port(), &[("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", "3000")]).await;
    let started = Instant::now();
    let got = within(10, get(qp.admin, "/wait-for-drain", &[])).await;
    let took = started.elapsed();
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    // Traffic is unaffected.
    assert_eq!(get(qp.main, "/", &[]).await.status, StatusCode::OK);
    qp.stop().await;
}

// Check 49: concurrent /wait-for-drain callers are released together.
#[tokio::test]
async fn concurrent_wait_for_drain_calls_return_together() {
    let app = start_echo_app().await;
    let q = quiet(QUIET_MS);
    let mut qp = Qp::start(app.port(), &[("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", &q)]).await;
    qp.terminate();
    let mut calls = Vec::new();
    for i in 0..3 {
        let admin = qp.admin;
        calls.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100 * i)).await;
            let got = get(admin, "/wait-for-drain", &[]).await;
            assert_eq!(got.status, StatusCode::OK);
            Instant::now()
        }));
    }
    let mut ends = Vec::new();
    for c in calls {
        ends.push(within(10, c).await.unwrap());
    }
    let spread = *ends.iter().max().unwrap() - *ends.iter().min().unwrap();
    assert!(
        spread < Duration::from_millis(100),
        "released {spread:?} apart"
    );
    qp.finished_within(10).await;
}

// Check 50 (in-process): an in-flight request finishes before the proxy stops,
// and an upgraded connection is waited for, up to the cap.
#[tokio::test]
async fn shutdown_waits_for_in_flight_requests_and_caps_upgraded_connections() {
    let app = start_app(|mut req: Request<Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(800)).await;
            return Response::new(full("finished"));
        }
        switch_to_websocket(&mut req, echo_upgraded)
    })
    .await;
    let mut qp = Qp::start(
        app.port(),
        &[
            ("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", "100"),
            ("QUEUE_PROXY_UPGRADE_DRAIN_TIMEOUT_MS", "1500"),
        ],
    )
    .await;
    let (mut ws, _) = open_websocket(qp.main).await;
    // A slow request in flight when the drain ends.
    let main = qp.main;
    let slow = tokio::spawn(async move { get(main, "/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    qp.terminate();
    let got = within(10, slow).await.unwrap();
    assert_eq!(
        (got.status, got.text().as_str()),
        (StatusCode::OK, "finished")
    );
    // The websocket still works during the wait...
    ws.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    within(5, ws.read_exact(&mut echo)).await.unwrap();
    assert_eq!(&echo, b"ping");
    // ...and the proxy stops once the cap is reached.
    qp.finished_within(10).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(4000),
        "stopped after {took:?}"
    );
}

// Upstream's real default: 30 s of quiet after SIGTERM before /wait-for-drain
// returns. (Real default duration; ~30 s.)
#[tokio::test]
async fn real_default_quiet_period_is_thirty_seconds() {
    let app = start_echo_app().await;
    let mut qp = Qp::start(
        app.port(),
        &[("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", "30000")],
    )
    .await;
    let started = Instant::now();
    qp.terminate();
    let got = within(40, get(qp.admin, "/wait-for-drain", &[])).await;
    assert_eq!(got.status, StatusCode::OK);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(32),
        "{took:?}"
    );
    qp.finished_within(10).await;
}

// Upstream's real default: shutdown waits at most 60 s for an upgraded
// connection that never closes. (Real default duration; ~60 s.)
#[tokio::test]
async fn real_default_upgraded_connection_cap_is_sixty_seconds() {
    let app = start_app(|mut req: Request<Incoming>| async move {
        switch_to_websocket(&mut req, |_io| std::future::pending::<()>())
    })
    .await;
    let mut qp = Qp::start(
        app.port(),
        &[
            ("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", "0"),
            ("QUEUE_PROXY_UPGRADE_DRAIN_TIMEOUT_MS", "60000"),
        ],
    )
    .await;
    let _ws = open_websocket(qp.main).await;
    let started = Instant::now();
    qp.terminate();
    qp.finished_within(70).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(60) && took < Duration::from_secs(62),
        "{took:?}"
    );
}
