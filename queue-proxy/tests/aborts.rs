//! 1000 requests aborted by their clients mid-flight, some queued in the breaker
//! and some inside the app, leave the autoscaler's concurrency at 0 and every
//! slot free.

mod support;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_aborted_requests_leave_concurrency_at_zero() {
    let in_app = Arc::new(AtomicUsize::new(0));
    let app = {
        let in_app = in_app.clone();
        start_app(move |req: Request<Incoming>| {
            let in_app = in_app.clone();
            async move {
                if req.uri().path() == "/hold" {
                    in_app.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
                Response::new(full("ok"))
            }
        })
        .await
    };
    // CC=100: 100 requests reach the app, the other 900 wait in the queue (1000).
    let qp = Qp::start(app.port(), &[("CONTAINER_CONCURRENCY", "100")]).await;

    let mut clients = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut conn = TcpStream::connect(qp.main).await.unwrap();
        conn.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        clients.push(conn);
    }
    within(10, async {
        while in_app.load(Ordering::SeqCst) < 100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Everyone is in flight: the autoscaler sees ~1000 concurrent requests.
    let busy = within(10, async {
        loop {
            let (_, stat) = scrape(qp.metrics).await;
            if stat.average_concurrent_requests >= 999.0 {
                return stat;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    // Summed over shards, the average may carry float rounding.
    assert!(
        busy.average_concurrent_requests <= 1000.0 + 1e-6,
        "{busy:?}"
    );

    // All 1000 clients go away.
    drop(clients);

    // Within a couple of windows the stats read 0 again...
    let idle = within(10, async {
        loop {
            let (_, stat) = scrape(qp.metrics).await;
            if stat.average_concurrent_requests == 0.0 && stat.process_uptime > 0.0 {
                return stat;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(idle.average_proxied_concurrent_requests, 0.0);
    // ...and every slot is free: 100 new requests run at once without a 503.
    let all: Vec<_> = (0..100)
        .map(|_| tokio::spawn(get(qp.main, "/", &[])))
        .collect();
    for h in all {
        assert_eq!(within(10, h).await.unwrap().status, StatusCode::OK);
    }
    qp.stop().await;
}
