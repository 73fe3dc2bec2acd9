//! The drain against the real binary: under steady load (about 200 requests/s
//! from four keep-alive clients) SIGTERM turns probes to 503 at once, every
//! request still gets a 2xx, and the process exits 0 one quiet period after the
//! last request.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::binary::Binary;
use support::*;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One keep-alive client sending a request every 20 ms until `stop`; returns the
/// statuses it got and when it sent its last request.
async fn steady_client(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> (Vec<StatusCode>, Instant) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut statuses = Vec::new();
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        sender.ready().await.unwrap();
        last = Instant::now();
        let req = Request::get("/")
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        statuses.push(resp.status());
        resp.into_body().collect().await.unwrap();
    }
    (statuses, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_without_errors_and_exits_zero() {
    let app = start_echo_app().await;
    let mut qp = Binary::start(app.port(), &[("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", "2000")]).await;
    let addr = qp.main;
    let kube = [
        ("user-agent", "kube-probe/1.29"),
        ("k-network-probe", "queue"),
    ];
    assert_eq!(get(addr, "/", &kube).await.status, StatusCode::OK);

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| tokio::spawn(steady_client(addr, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let signalled = Instant::now();
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(qp.pid().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    // Probes fail at once.
    within(2, async {
        loop {
            let got = get(addr, "/", &kube).await;
            if got.status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(got.text(), "shutting down\n");
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let probe_failed_after = signalled.elapsed();
    // Traffic keeps flowing for another second, then stops.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut statuses = Vec::new();
    let mut last_request = signalled;
    for c in clients {
        let (s, last) = within(10, c).await.unwrap();
        statuses.extend(s);
        last_request = last_request.max(last);
    }
    let exit = qp.exited_within(15).await;
    let exited_after_last = last_request.elapsed();
    assert!(exit.success(), "exit status {exit:?}");
    let errors = statuses.iter().filter(|s| !s.is_success()).count();
    assert_eq!(errors, 0, "{errors} of {} requests failed", statuses.len());
    assert!(statuses.len() >= 200, "only {} requests", statuses.len());
    assert!(
        probe_failed_after < Duration::from_millis(200),
        "{probe_failed_after:?}"
    );
    assert!(
        exited_after_last >= Duration::from_millis(1900)
            && exited_after_last < Duration::from_secs(5),
        "exited {exited_after_last:?} after the last request"
    );
    eprintln!(
        "drain figures: {} requests, 0 errors; probe 503 after {:?}; exit 0 {:?} after the last request",
        statuses.len(),
        probe_failed_after,
        exited_after_last
    );
}
