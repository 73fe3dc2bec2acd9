//! Whole HTTP/1.1 requests fed to a real queue-proxy over loopback.
//!
//! One queue-proxy ([`queue_proxy::Sidecar`] on ephemeral ports, CC = 10) runs for
//! the life of the process in front of an in-process app that reads each
//! request's body and answers `len=<bytes>`. Each input is written as is to a new
//! connection to the main port, followed by a request that asks to close (see
//! [`exchange`]); the target reads until the proxy closes the connection.
//!
//! Checks:
//! - the proxy closes the connection within [`HANG`] once the client has shut
//!   its side (a bounded input cannot keep it busy: the app answers at once);
//! - whatever it answers is HTTP/1.x, and no answer is a 5xx: the app is healthy
//!   and fast, so a 5xx would mean the proxy broke or forwarded something the app
//!   cannot parse;
//! - nothing panicked in any task of the proxy (a panic hook counts them; under
//!   libFuzzer its own hook aborts first).
//!
//! [`assert_idle`] then checks, once per run, that the autoscaler stats read zero
//! concurrency again: every slot taken by a fuzzed request was given back.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

pub const TARGET: crate::Target = crate::Target {
    name: "http_request",
    run,
    dictionary: &[
        b"GET / HTTP/1.1\r\n",
        b"POST /p HTTP/1.1\r\n",
        b"HTTP/1.0",
        b"Host: x\r\n",
        b"\r\n",
        b"\r\n\r\n",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked\r\n",
        b"0\r\n\r\n",
        b"5\r\nhello\r\n",
        b";ext=1",
        b"Connection: close\r\n",
        b"Connection: keep-alive\r\n",
        b"Connection: Upgrade\r\nUpgrade: websocket\r\n",
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        b"Expect: 100-continue\r\n",
        b"K-Network-Probe: queue\r\n",
        b"K-Network-Hash: x\r\n",
        b"User-Agent: kube-probe/1.30\r\n",
        b"User-Agent: Knative-Activator-Probe\r\n",
        b"K-Proxy-Request: activator\r\n",
        b"X-Forwarded-For: 1.2.3.4, ::1\r\n",
        b"Forwarded: for=x\r\n",
        b"Knative-Serving-Tag: t\r\n",
        b"Knative-Serving-Default-Route: true\r\n",
        b"Te: trailers\r\n",
        b"Trailer: x-t\r\n",
        b"Keep-Alive: timeout=1\r\n",
        b"Proxy-Connection: x\r\n",
        b"/healthz",
        b"OPTIONS * HTTP/1.1\r\n",
        b"CONNECT a:80 HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"http://a/",
        b"%zz",
        b"\x00",
        b"\xff",
    ],
};

/// How long one connection may stay open after the input has been sent.
pub const HANG: Duration = Duration::from_secs(10);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Largest input sent (libFuzzer's default `-max_len` is far below it).
const MAX_INPUT: usize = 256 * 1024;

struct Harness {
    main: SocketAddr,
    metrics: SocketAddr,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("fuzzed-queue-proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let app = start_app().await;
                    let sidecar = bind_proxy(app.port());
                    let _ = tx.send(Harness {
                        main: loopback(sidecar.main_addr()),
                        metrics: loopback(sidecar.metrics_addr()),
                    });
                    sidecar.run(std::future::pending()).await;
                });
            })
            .expect("proxy thread");
        rx.recv().expect("the queue-proxy starts")
    })
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

fn bind_proxy(app_port: u16) -> queue_proxy::Sidecar {
    let mut env = queue_proxy::config::test_env(app_port);
    for port in [
        "QUEUE_SERVING_PORT",
        "QUEUE_PROXY_ADMIN_PORT",
        "QUEUE_PROXY_METRICS_PORT",
        "QUEUE_PROXY_USER_METRICS_PORT",
        "QUEUE_SERVING_TLS_PORT",
    ] {
        env.insert(port.into(), "0".into());
    }
    env.insert("CONTAINER_CONCURRENCY".into(), "10".into());
    env.insert("QUEUE_PROXY_CERTS_DIR".into(), "/nonexistent".into());
    let config = queue_proxy::config::Config::from_env(&env).expect("valid env");
    queue_proxy::Sidecar::bind(config).expect("bind")
}

/// The app: reads the whole body, answers `len=<bytes>`.
async fn start_app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let addr = listener.local_addr().expect("app address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(|req: Request<Incoming>| async move {
                let len = match req.into_body().collect().await {
                    Ok(body) => body.to_bytes().len().to_string(),
                    Err(_) => "aborted".to_owned(),
                };
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("len={len}")))))
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

pub fn run(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let harness = harness();
    let answer = exchange(harness.main, data);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the queue-proxy panicked");
    // With HTTP/2's preface the proxy speaks h2 frames back, not HTTP/1 heads.
    if !data.starts_with(H2_PREFACE) {
        check_answer(&answer);
    }
}

/// Sends `data` and a last request that asks the proxy to close, then reads
/// until it does. An input the proxy still waits on (an unfinished head or
/// body) gets its write side shut after [`IDLE`] without an answer; a client
/// that goes away like that cancels what was in flight, so only then is the
/// rest of the answer allowed to go missing.
fn exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(addr).expect("connect to the queue-proxy");
    let _ = conn.set_nodelay(true);
    conn.set_write_timeout(Some(HANG)).expect("timeout");
    // The proxy may answer and close before it has read everything: fine.
    let _ = conn
        .write_all(data)
        .and_then(|()| conn.write_all(LAST_REQUEST));
    conn.set_read_timeout(Some(IDLE)).expect("timeout");
    let mut shut_at = None;
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return answer,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return answer,
            // libFuzzer's timers interrupt blocking reads.
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let Some(shut_at) = shut_at else {
                    let _ = conn.shutdown(Shutdown::Write);
                    shut_at = Some(Instant::now());
                    conn.set_read_timeout(Some(HANG)).expect("timeout");
                    continue;
                };
                panic!(
                    "the queue-proxy kept the connection open {:?} after the client left; got {:?}",
                    shut_at.elapsed(),
                    String::from_utf8_lossy(&answer)
                )
            }
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
}

/// Appended to every input, so a proxy that understood all of it closes at once.
const LAST_REQUEST: &[u8] = b"GET /last HTTP/1.1\r\nHost: last\r\nConnection: close\r\n\r\n";

/// How long a silent proxy is given before the client shuts its write side.
const IDLE: Duration = Duration::from_millis(25);

/// Every response head in `answer` is HTTP/1.x and none is a 5xx, except the
/// 502 that answers a malformed request *body*: the proxy learns of it while
/// streaming the body to the app, and upstream's error handler answers that
/// with 502 too (Go's transport returns the body read error to `ReverseProxy`).
fn check_answer(answer: &[u8]) {
    if answer.is_empty() {
        return;
    }
    assert!(
        answer.starts_with(b"HTTP/1."),
        "not an HTTP/1 answer: {:?}",
        String::from_utf8_lossy(answer)
    );
    // The app's bodies are `len=N`, the proxy's are short texts: a status line can
    // only start the answer or follow a line end.
    let heads: Vec<usize> = (0..answer.len())
        .filter(|&i| (i == 0 || answer[i - 1] == b'\n') && answer[i..].starts_with(b"HTTP/1."))
        .collect();
    for (n, &start) in heads.iter().enumerate() {
        let end = heads.get(n + 1).copied().unwrap_or(answer.len());
        let response = &answer[start..end];
        let status = response.get(9..12).unwrap_or_default();
        let client_body_error = status == b"502"
            && response
                .windows(CLIENT_BODY_ERROR.len())
                .any(|w| w == CLIENT_BODY_ERROR);
        assert!(
            !status.starts_with(b"5") || client_body_error,
            "the queue-proxy answered a 5xx: {:?}",
            String::from_utf8_lossy(answer)
        );
    }
}

/// hyper's text for a request body that failed while being streamed to the app.
const CLIENT_BODY_ERROR: &[u8] = b"error from user's Body stream";

/// Waits until the autoscaler stats read zero concurrency: every request the
/// fuzzer sent has given its slot back. Panics after `limit`.
pub fn assert_idle(limit: Duration) {
    use metrics_proto::Message;
    let harness = harness();
    let started = Instant::now();
    loop {
        let answer = exchange(
            harness.metrics,
            b"GET /metrics HTTP/1.1\r\nHost: m\r\nAccept: application/protobuf\r\nConnection: close\r\n\r\n",
        );
        let body = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|end| &answer[end + 4..])
            .expect("a metrics response");
        let stat = metrics_proto::Stat::decode(body).expect("a protobuf Stat");
        if stat.average_concurrent_requests == 0.0 && stat.process_uptime > 0.0 {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "concurrency did not return to 0: {stat:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
