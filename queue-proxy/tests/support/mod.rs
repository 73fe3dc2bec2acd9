//! Test support: a scriptable app behind a real queue-proxy started in-process on
//! ephemeral ports, and small clients that speak HTTP/1.1 and h2c over loopback.
#![allow(dead_code)]

pub mod binary;
pub mod h2frames;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub mod collector;

pub type AppBody = BoxBody<Bytes, Infallible>;

/// A complete body for an app response.
pub fn full(data: impl Into<Bytes>) -> AppBody {
    Full::new(data.into()).boxed()
}

/// Starts an app on 127.0.0.1:0 speaking HTTP/1.1 and h2c (prior knowledge),
/// with upgrades, answering with `handler`.
pub async fn start_app<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<AppBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                // Heads as large as Go apps take (hyper's default stops at ~400 KiB).
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().max_buf_size(2 << 20);
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An app that answers every request with a description of what it received:
/// `method`, `path`, `version` and every header as `name: value` lines.
pub async fn start_echo_app() -> SocketAddr {
    start_app(|req: Request<Incoming>| async move {
        let mut text = format!(
            "method={}\npath={}\nversion={:?}\n",
            req.method(),
            req.uri().path_and_query().map_or("", |p| p.as_str()),
            req.version()
        );
        for (name, value) in req.headers() {
            text.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("?")));
        }
        let body = req.into_body().collect().await.unwrap().to_bytes();
        text.push_str(&format!("body={}\n", String::from_utf8_lossy(&body)));
        Response::new(full(text))
    })
    .await
}

/// A port on 127.0.0.1 with nothing listening.
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A queue-proxy running in-process.
pub struct Qp {
    pub main: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    /// The TLS port, when `QUEUE_PROXY_CERTS_DIR` holds a certificate pair.
    pub tls: Option<SocketAddr>,
    /// The Prometheus request-metrics port, when `requestMetrics.protocol` is
    /// `prometheus`.
    pub user_metrics: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Qp {
    /// Starts a queue-proxy in front of `user_port` with upstream's default env,
    /// ephemeral ports, and `overrides` applied.
    pub async fn start(user_port: u16, overrides: &[(&str, &str)]) -> Qp {
        let mut env: HashMap<String, String> = queue_proxy::config::test_env(user_port);
        env.insert("QUEUE_SERVING_PORT".into(), "0".into());
        env.insert("QUEUE_PROXY_ADMIN_PORT".into(), "0".into());
        env.insert("QUEUE_PROXY_METRICS_PORT".into(), "0".into());
        env.insert("QUEUE_PROXY_USER_METRICS_PORT".into(), "0".into());
        env.insert("QUEUE_SERVING_TLS_PORT".into(), "0".into());
        env.insert("SERVING_POD".into(), "test-pod-1".into());
        // Stopping a test proxy should not wait out upstream's 30 s quiet period;
        // the drain tests set their own.
        env.insert("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS".into(), "0".into());
        for (k, v) in overrides {
            env.insert((*k).into(), (*v).into());
        }
        let config = queue_proxy::config::Config::from_env(&env).expect("valid test env");
        let sidecar = queue_proxy::Sidecar::bind(config).expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        let qp = Qp {
            main: local(sidecar.main_addr()),
            admin: local(sidecar.admin_addr()),
            metrics: local(sidecar.metrics_addr()),
            tls: sidecar.tls_addr().map(local),
            user_metrics: sidecar.user_metrics_addr().map(local),
            stop: Some(stop),
            task: None,
        };
        let task = tokio::spawn(sidecar.run(async move {
            let _ = stopped.await;
        }));
        Qp {
            task: Some(task),
            ..qp
        }
    }

    /// Sends the shutdown signal (as SIGTERM would) without waiting.
    pub fn terminate(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits up to `secs` for the proxy to finish after [`Qp::terminate`].
    pub async fn finished_within(mut self, secs: u64) {
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(secs), task)
                .await
                .expect("queue-proxy finishes")
                .unwrap();
        }
    }

    /// Signals shutdown and waits until every server has finished.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("queue-proxy stops")
                .unwrap();
        }
    }
}

/// The loopback address of a listener bound on the wildcard address.
fn local(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

/// A response with its body read in full.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request over a new HTTP/1.1 connection and reads the whole response.
pub async fn send_h1(addr: SocketAddr, req: Request<Full<Bytes>>) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    collect(sender.send_request(req).await.unwrap()).await
}

/// Sends one request over a new h2c (prior knowledge) connection.
pub async fn send_h2(addr: SocketAddr, req: Request<Full<Bytes>>) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    collect(sender.send_request(req).await.unwrap()).await
}

pub async fn collect(resp: Response<Incoming>) -> Got {
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

/// `GET path` with `headers`, over HTTP/1.1 to `addr`.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = Request::get(path).header("host", "test.example.com");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send_h1(addr, req.body(Full::new(Bytes::new())).unwrap()).await
}

/// The app's echo of header `name` (first occurrence), if it saw one.
pub fn echoed_header(got: &Got, name: &str) -> Option<String> {
    let prefix = format!("{}: ", name.to_ascii_lowercase());
    got.text()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

/// Fetches and decodes the autoscaler stat from the metrics port.
pub async fn scrape(metrics: SocketAddr) -> (Got, metrics_proto::Stat) {
    use metrics_proto::Message;
    let got = get(metrics, "/metrics", &[("accept", "application/protobuf")]).await;
    let stat = metrics_proto::Stat::decode(got.body.clone()).expect("protobuf stat");
    (got, stat)
}

/// Runs `f` with a deadline so a hang fails the test instead of blocking CI.
pub async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}

/// A gate the app waits on: requests block until the test opens it.
#[derive(Clone)]
pub struct Gate(Arc<tokio::sync::Semaphore>);

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(tokio::sync::Semaphore::new(0)))
    }
    pub async fn pass(&self) {
        self.0.acquire().await.unwrap().forget();
    }
    pub fn open(&self, n: usize) {
        self.0.add_permits(n);
    }
}

/// The app side of a websocket upgrade: answers 101 and hands the upgraded
/// connection to `on_upgraded` in a task of its own.
pub fn switch_to_websocket<F, Fut>(req: &mut Request<Incoming>, on_upgraded: F) -> Response<AppBody>
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            on_upgraded(TokioIo::new(upgraded)).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(full(""))
        .unwrap()
}

/// Echoes whatever arrives on an upgraded connection until it closes.
pub async fn echo_upgraded(mut io: TokioIo<hyper::upgrade::Upgraded>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 64];
    while let Ok(n) = io.read(&mut buf).await {
        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Opens a websocket through the proxy at `addr` and reads the 101 head.
pub async fn open_websocket(addr: SocketAddr) -> (TcpStream, String) {
    open_websocket_at(addr, "/ws").await
}

/// [`open_websocket`] on `path`.
pub async fn open_websocket_at(addr: SocketAddr, path: &str) -> (TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        within(5, conn.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (conn, head)
}

/// An app that answers `len=<body bytes> trailer=<x-checksum trailer>`.
pub async fn start_trailer_app() -> SocketAddr {
    start_app(|req: Request<Incoming>| async move {
        let collected = req.into_body().collect().await.unwrap();
        let trailer = collected
            .trailers()
            .and_then(|t| t.get("x-checksum"))
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = collected.to_bytes();
        Response::new(full(format!("len={} trailer={trailer}", body.len())))
    })
    .await
}
