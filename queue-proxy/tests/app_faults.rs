//! A broken app behind the real binary: it crashes mid-response, stalls, drops
//! keep-alive connections at random, and restarts. The client always gets an
//! answer or an aborted response (never a hang), replayable requests never see
//! a 502, and afterwards the proxy holds no request and no extra descriptor.

mod support;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use support::binary::Binary;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Reads one request head; `None` once the connection ends.
async fn read_head(conn: &mut TcpStream) -> Option<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(())
}

/// An app written on raw TCP, so it can break HTTP exactly where a test wants.
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

/// Sends `GET path` over HTTP/1.1 and reads the body: the status, and the body
/// or the error that ended it.
async fn get_body(addr: SocketAddr, path: &str) -> (StatusCode, Result<Bytes, String>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await;
    (
        status,
        body.map(|b| b.to_bytes()).map_err(|e| e.to_string()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_crashing_mid_response_aborts_the_client_response() {
    let app = raw_app(|mut conn| async move {
        if read_head(&mut conn).await.is_some() {
            // Half of what it promised, then the process is gone.
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                .await;
            let _ = conn.write_all(&[b'x'; 100]).await;
            socket2::SockRef::from(&conn)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    })
    .await;
    let chunked = raw_app(|mut conn| async move {
        if read_head(&mut conn).await.is_some() {
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                .await;
        }
    })
    .await;
    for app in [app, chunked] {
        let qp = Binary::start(app.port(), &[]).await;
        let baseline = qp.open_fds();
        for _ in 0..5 {
            let (status, body) = within(10, get_body(qp.main, "/")).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body.is_err(), "a truncated body arrived whole: {body:?}");
        }
        qp.assert_idle().await;
        qp.assert_fds_back_to(baseline).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_stalls_forever_is_ended_by_the_revision_timeout() {
    let app = start_app(|req: Request<Incoming>| async move {
        if req.uri().path() == "/stall-body" {
            // The head, one chunk, then nothing ever again.
            let body = futures_stall_after(Bytes::from_static(b"first"));
            return Response::new(body);
        }
        std::future::pending::<()>().await;
        unreachable!()
    })
    .await;
    let qp = Binary::start(app.port(), &[("REVISION_TIMEOUT_SECONDS", "1")]).await;
    let baseline = qp.open_fds();

    let started = Instant::now();
    let (status, body) = within(10, get_body(qp.main, "/stall-head")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body.unwrap(), "request timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );

    // Once the response has started, upstream's timeout handler appends its
    // message and ends the response.
    let started = Instant::now();
    let (status, body) = within(10, get_body(qp.main, "/stall-body")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap(), "firstrequest timeout");
    assert!(started.elapsed() < Duration::from_secs(4));

    qp.assert_idle().await;
    qp.assert_fds_back_to(baseline).await;
}

/// A body that yields `first` and then stalls forever.
fn futures_stall_after(first: Bytes) -> AppBody {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let frames = tokio_stream::iter([Ok::<_, Infallible>(Frame::data(first))]);
    let stall = tokio_stream::pending::<Result<Frame<Bytes>, Infallible>>();
    use tokio_stream::StreamExt;
    BodyExt::boxed(StreamBody::new(frames.chain(stall)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_closing_keep_alive_connections_at_random_causes_no_502() {
    // After each answer the app keeps the connection, closes it at once, or
    // closes it a moment later: whatever the proxy's pool holds may be dead.
    let app = raw_app(|mut conn| async move {
        while read_head(&mut conn).await.is_some() {
            if conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .is_err()
            {
                return;
            }
            match fastrand::u8(0..10) {
                0..=3 => return,
                4..=6 => {
                    let pause = fastrand::u64(0..3);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    return;
                }
                _ => {}
            }
        }
    })
    .await;
    let qp = Binary::start(app.port(), &[]).await;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = qp.main;
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..50 {
                    let got = within(10, get(addr, "/", &[])).await;
                    statuses.push((got.status, got.text()));
                }
                statuses
            })
        })
        .collect();
    let mut failures = Vec::new();
    let mut total = 0;
    for client in clients {
        for (status, text) in client.await.unwrap() {
            total += 1;
            if status != StatusCode::OK {
                failures.push((status, text));
            }
        }
    }
    assert_eq!(total, 400);
    assert!(
        failures.is_empty(),
        "{} of 400 failed: {failures:?}",
        failures.len()
    );
    qp.assert_idle().await;
}

/// An app that can be stopped (listener and every connection gone, as when its
/// process dies) and started again on the same port.
struct RestartingApp {
    addr: SocketAddr,
    running: Option<JoinSet<()>>,
}

impl RestartingApp {
    async fn start_on(addr: SocketAddr) -> RestartingApp {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut running = JoinSet::new();
        running.spawn(async move {
            // Connections live in this task's set: aborting it closes them all.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(async move {
                    let service = service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(Response::new(full("ok")))
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        RestartingApp {
            addr,
            running: Some(running),
        }
    }

    async fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_restart_turns_readiness_503_then_200() {
    let mut app = RestartingApp::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let probe = format!(
        r#"{{"tcpSocket":{{"port":{},"host":"127.0.0.1"}},"periodSeconds":1,"timeoutSeconds":1,"failureThreshold":1}}"#,
        app.addr.port()
    );
    let qp = Binary::start(
        app.addr.port(),
        &[("SERVING_READINESS_PROBE", probe.as_str())],
    )
    .await;
    let kubelet = [
        ("user-agent", "kube-probe/1.30"),
        ("k-network-probe", "queue"),
    ];
    let readiness = || async { within(10, get(qp.main, "/", &kubelet)).await.status };

    assert_eq!(readiness().await, StatusCode::OK);
    assert_eq!(get(qp.main, "/", &[]).await.status, StatusCode::OK);

    app.stop().await;
    within(10, async {
        while readiness().await != StatusCode::SERVICE_UNAVAILABLE {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let mut app = RestartingApp::start_on(app.addr).await;
    within(10, async {
        while readiness().await != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(get(qp.main, "/", &[]).await.status, StatusCode::OK);
    qp.assert_idle().await;
    app.stop().await;
}
