//! knative#12414: an app that closes idle keep-alive connections must not turn
//! reused connections into 502s. These apps are raw TCP so they can close at
//! exactly the wrong moment.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one request head; `None` on EOF or when `idle` passes with no byte.
async fn read_head(conn: &mut TcpStream, idle: Option<Duration>) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = conn.read(&mut buf);
        let n = match (idle, head.is_empty()) {
            (Some(idle), true) => tokio::time::timeout(idle, read).await.ok()?.ok()?,
            _ => read.await.ok()?,
        };
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(head)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Starts a raw app; `serve` runs per connection.
async fn raw_app<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn));
        }
    });
    addr
}

// The scenario: the app closes connections idle for 1 s, and the load
// comes in bursts about 1 s apart, so reuse races the app's close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_idle_timeout_of_one_second_under_bursty_load_gives_no_502() {
    let app = raw_app(|mut conn| async move {
        while read_head(&mut conn, Some(Duration::from_secs(1)))
            .await
            .is_some()
        {
            if conn.write_all(OK).await.is_err() {
                return;
            }
        }
    })
    .await;
    let qp = Qp::start(app.port(), &[]).await;

    let mut statuses = Vec::new();
    for burst in 0..6u64 {
        let all: Vec<_> = (0..16)
            .map(|_| tokio::spawn(get(qp.main, "/", &[])))
            .collect();
        for h in all {
            statuses.push(within(10, h).await.unwrap().status);
        }
        // Gaps straddle the app's 1 s idle timeout.
        tokio::time::sleep(Duration::from_millis(960 + burst * 15)).await;
    }
    let bad: Vec<_> = statuses.iter().filter(|s| **s != StatusCode::OK).collect();
    assert!(bad.is_empty(), "non-200 answers: {bad:?}");
    qp.stop().await;
}

/// An app that answers the first request on a connection and closes the
/// connection when the next request arrives, without answering it: the race of
/// knative#12414 every single time.
async fn closes_on_reuse(heads: Arc<AtomicUsize>) -> SocketAddr {
    raw_app(move |mut conn| {
        let heads = heads.clone();
        async move {
            if read_head(&mut conn, None).await.is_none() {
                return;
            }
            heads.fetch_add(1, Ordering::SeqCst);
            let _ = conn.write_all(OK).await;
            if read_head(&mut conn, None).await.is_some() {
                heads.fetch_add(1, Ordering::SeqCst);
            }
            // Dropped: closed without an answer.
        }
    })
    .await
}

#[tokio::test]
async fn idempotent_requests_are_retried_once_on_a_fresh_connection() {
    let heads = Arc::new(AtomicUsize::new(0));
    let app = closes_on_reuse(heads.clone()).await;
    let qp = Qp::start(app.port(), &[]).await;
    for i in 0..20 {
        let got = within(5, get(qp.main, "/", &[])).await;
        assert_eq!(got.status, StatusCode::OK, "request {i}: {}", got.text());
        assert_eq!(got.text(), "ok");
    }
    // A POST without a body but with an idempotency key is replayable too.
    let req = Request::post("/")
        .header("host", "x")
        .header("idempotency-key", "k1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        within(5, send_h1(qp.main, req)).await.status,
        StatusCode::OK
    );
    qp.stop().await;
}

#[tokio::test]
async fn a_post_with_a_body_is_not_replayed() {
    let heads = Arc::new(AtomicUsize::new(0));
    let app = closes_on_reuse(heads.clone()).await;
    let qp = Qp::start(app.port(), &[]).await;
    // Warm the pool with one connection.
    assert_eq!(get(qp.main, "/", &[]).await.status, StatusCode::OK);
    let before = heads.load(Ordering::SeqCst);
    let req = Request::post("/")
        .header("host", "x")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let got = within(5, send_h1(qp.main, req)).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(got.text(), "EOF\n");
    // The app saw the POST exactly once.
    assert_eq!(heads.load(Ordering::SeqCst), before + 1);
    qp.stop().await;
}
