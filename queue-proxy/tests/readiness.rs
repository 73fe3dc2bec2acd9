//! `queue_proxy::readiness` against real apps on loopback: spec §6.1–6.2 and
//! conformance checks 30–40. The apps are small hyper servers written here
//! (HTTP/1.1, h2c, both, and a hand-made gRPC health service).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use queue_proxy::readiness::{Readiness, ReadinessOptions, parse};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};

type Body = BoxBody<Bytes, Infallible>;

fn status(code: u16) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"probe")).boxed());
    *response.status_mut() = StatusCode::from_u16(code).unwrap();
    response
}

/// What the app saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    target: String,
    version: Version,
    headers: HeaderMap,
    at: Instant,
}

/// Which protocols an app speaks.
#[derive(Debug, Clone, Copy)]
enum Speaks {
    Http1,
    H2c,
    Both,
}

/// An app on 127.0.0.1 that records every request and connection.
struct App {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    /// Connections whose serving ended (the client closed them).
    closed: Arc<AtomicUsize>,
}

impl App {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Starts an app answering with `handler(request, index of the request)`.
async fn start_app<F, Fut>(speaks: Speaks, handler: F) -> App
where
    F: Fn(Request<Incoming>, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let app = App {
        port,
        seen: Arc::clone(&seen),
        connections: Arc::clone(&connections),
        closed: Arc::clone(&closed),
    };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            connections.fetch_add(1, Ordering::SeqCst);
            let (handler, seen) = (handler.clone(), Arc::clone(&seen));
            let service = service_fn(move |request: Request<Incoming>| {
                let index = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(Seen {
                        method: request.method().clone(),
                        target: request
                            .uri()
                            .path_and_query()
                            .map_or_else(String::new, |p| p.as_str().to_owned()),
                        version: request.version(),
                        headers: request.headers().clone(),
                        at: Instant::now(),
                    });
                    seen.len() - 1
                };
                let response = handler(request, index);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let io = TokioIo::new(stream);
            let closed = Arc::clone(&closed);
            tokio::spawn(async move {
                let _ = match speaks {
                    Speaks::Http1 => hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                        .map_err(|e| e.to_string()),
                    Speaks::H2c => hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                        .map_err(|e| e.to_string()),
                    Speaks::Both => {
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await
                            .map_err(|e| e.to_string())
                    }
                };
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    app
}

/// An HTTP/1.1 app that always answers `code`.
async fn answering(code: u16) -> App {
    start_app(Speaks::Http1, move |_, _| async move { status(code) }).await
}

/// A port on 127.0.0.1 with nothing listening.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn readiness(json: &str) -> Readiness {
    readiness_with(json, ReadinessOptions::default())
}

fn readiness_with(json: &str, options: ReadinessOptions) -> Readiness {
    Readiness::new(parse(json, false).unwrap(), options)
}

/// A standard (single-attempt) HTTP probe on `port`.
fn standard_http(port: u16) -> String {
    format!(
        r#"{{"httpGet":{{"port":{port},"host":"127.0.0.1","scheme":"HTTP"}},"periodSeconds":1,"timeoutSeconds":1}}"#
    )
}

/// Waits until `f()` holds, for at most 2 s.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

fn gaps(seen: &[Seen]) -> Vec<Duration> {
    seen.windows(2).map(|w| w[1].at - w[0].at).collect()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

// Check 30.
#[tokio::test]
async fn no_probe_means_always_ready() {
    for (json, multi) in [("", false), ("", true), ("[]", true)] {
        let probes = parse(json, multi).unwrap();
        assert!(probes.is_empty());
        let readiness = Readiness::new(probes, ReadinessOptions::default());
        for _ in 0..3 {
            assert!(readiness.check().await);
        }
    }
}

// Check 31.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_share_one_probe_and_later_checks_probe_again() {
    let app = start_app(Speaks::Http1, |_, _| async {
        sleep(Duration::from_millis(200)).await;
        status(200)
    })
    .await;
    let readiness = Arc::new(readiness(&standard_http(app.port)));

    let (a, b) = tokio::join!(readiness.check(), async {
        sleep(Duration::from_millis(50)).await;
        readiness.check().await
    });
    assert!(a && b);
    assert_eq!(app.requests(), 1, "two concurrent checks, one probe");

    assert!(readiness.check().await);
    assert_eq!(app.requests(), 2, "no caching: a later check probes again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_goes_away_does_not_cancel_the_round() {
    let app = start_app(Speaks::Http1, |_, _| async {
        sleep(Duration::from_millis(300)).await;
        status(200)
    })
    .await;
    let readiness = Arc::new(readiness(&standard_http(app.port)));
    let first = {
        let readiness = Arc::clone(&readiness);
        tokio::spawn(async move { readiness.check().await })
    };
    eventually("the probe", || app.requests() == 1).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    // The round is still running; this check joins it.
    assert!(readiness.check().await);
    assert_eq!(app.requests(), 1);
    assert_eq!(app.connections.load(Ordering::SeqCst), 1);
}

/// Counts connections accepted on `listener` until it is dropped by the caller
/// through the returned handle's abort.
fn count_accepts(listener: TcpListener) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    let task = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (count, task)
}

// Check 32, first half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggressive_tcp_needs_consecutive_successes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (accepted, _task) = count_accepts(listener);
    let readiness = readiness(&format!(
        r#"{{"tcpSocket":{{"port":{port},"host":"127.0.0.1"}},"successThreshold":3}}"#
    ));
    let start = Instant::now();
    assert!(readiness.check().await);
    // Attempts at 0, 50 and 100 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    sleep(Duration::from_millis(200)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 3);

    // The count persists: the next round passes on its first connect.
    let start = Instant::now();
    assert!(readiness.check().await);
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
    sleep(Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

// Check 32, second half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggressive_tcp_failure_resets_the_count() {
    let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = first.local_addr().unwrap().port();
    let readiness = readiness(&format!(
        r#"{{"tcpSocket":{{"port":{port},"host":"127.0.0.1"}},"successThreshold":3}}"#
    ));
    let round = tokio::spawn(async move { readiness.check().await });

    // One success, then the listener goes away and a few attempts fail.
    first.accept().await.unwrap();
    drop(first);
    sleep(Duration::from_millis(300)).await;
    assert!(!round.is_finished(), "passed before the reset");

    let second = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (accepted, _task) = count_accepts(second);
    assert!(round.await.unwrap());
    sleep(Duration::from_millis(200)).await;
    // Three more consecutive connects were needed, and no more were made.
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

// Check 33.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggressive_http_threshold_counts_consecutive_answers() {
    let app = start_app(Speaks::Http1, |_, index| async move {
        status(if index == 1 { 400 } else { 200 })
    })
    .await;
    let readiness = readiness(&format!(
        r#"{{"httpGet":{{"port":{},"host":"127.0.0.1","scheme":"HTTP","httpHeaders":[{{"name":"Test-key","value":"Test-value"}}]}},"successThreshold":3}}"#,
        app.port
    ));
    assert!(readiness.check().await);
    // ok, 400 (resets), ok, ok, ok.
    assert_eq!(app.requests(), 5);
    assert!(
        app.seen()
            .iter()
            .all(|s| s.headers["test-key"] == "Test-value")
    );
}

fn short_options() -> ReadinessOptions {
    ReadinessOptions {
        aggressive_give_up: Duration::from_secs(1),
        ..ReadinessOptions::default()
    }
}

// Check 34, with a shortened give-up: an app that answers "not ready" at once is
// asked every 50 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggressive_probe_gives_up_and_attempts_every_interval() {
    let app = answering(503).await;
    let readiness = readiness_with(
        &format!(r#"{{"httpGet":{{"port":{},"scheme":"HTTP"}}}}"#, app.port),
        short_options(),
    );
    let start = Instant::now();
    assert!(!readiness.check().await);
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let seen = app.seen();
    // 0, 50, ..., 950 ms: 20 attempts, fewer if the machine is slow.
    assert!((14..=20).contains(&seen.len()), "{} attempts", seen.len());
    let gap = median(gaps(&seen));
    assert!(
        gap >= Duration::from_millis(40) && gap <= Duration::from_millis(70),
        "median gap {gap:?}"
    );
    assert_eq!(
        app.connections.load(Ordering::SeqCst),
        seen.len(),
        "no keep-alive"
    );
}

// Check 34, with a shortened give-up: an app that never answers makes each
// attempt time out at 100 ms, and the next one starts right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggressive_attempts_time_out_at_100ms() {
    let app = start_app(Speaks::Http1, |_, _| async {
        sleep(Duration::from_secs(10)).await;
        status(200)
    })
    .await;
    let readiness = readiness_with(
        &format!(r#"{{"httpGet":{{"port":{},"scheme":"HTTP"}}}}"#, app.port),
        short_options(),
    );
    let start = Instant::now();
    assert!(!readiness.check().await);
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let seen = app.seen();
    assert!((7..=10).contains(&seen.len()), "{} attempts", seen.len());
    for gap in gaps(&seen) {
        assert!(gap >= Duration::from_millis(90), "gap {gap:?}");
    }
    let gap = median(gaps(&seen));
    assert!(gap <= Duration::from_millis(150), "median gap {gap:?}");
}

// Check 34 at upstream's real give-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggressive_probe_gives_up_after_ten_seconds() {
    // real default duration
    let port = closed_port().await;
    let readiness = readiness(&format!(
        r#"{{"tcpSocket":{{"port":{port},"host":"127.0.0.1"}},"successThreshold":1}}"#
    ));
    let start = Instant::now();
    assert!(!readiness.check().await);
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(10), "{took:?}");
    assert!(took < Duration::from_secs(11), "{took:?}");
}

// Check 35.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_probe_times_out_after_timeout_seconds() {
    let app = start_app(Speaks::Http1, |_, _| async {
        sleep(Duration::from_secs(10)).await;
        status(200)
    })
    .await;
    let readiness = readiness(&standard_http(app.port));
    let start = Instant::now();
    assert!(!readiness.check().await);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(app.requests(), 1, "a standard probe makes one attempt");
}

// Check 36: the request itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probe_request_looks_like_upstreams() {
    let app = answering(200).await;
    let readiness = readiness(&format!(
        r#"{{"httpGet":{{"path":"health?foo=bar","port":"{}","host":"127.0.0.1","scheme":"HTTP",
            "httpHeaders":[{{"name":"K-Kubelet-Probe","value":"queue"}},{{"name":"X-Custom","value":"a"}},
            {{"name":"User-Agent","value":"mine"}}]}},"periodSeconds":1,"timeoutSeconds":1}}"#,
        app.port
    ));
    assert!(readiness.check().await);
    assert!(readiness.check().await);
    let seen = app.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.method, Method::GET);
        assert_eq!(request.target, "/health?foo=bar");
        assert_eq!(request.version, Version::HTTP_11);
        let ua = request.headers["user-agent"].to_str().unwrap();
        assert!(ua.starts_with("kube-probe/"), "{ua}");
        assert_eq!(ua, "kube-probe//");
        assert_eq!(request.headers.get_all("user-agent").iter().count(), 1);
        assert_eq!(request.headers["k-kubelet-probe"], "queue");
        assert_eq!(request.headers["x-custom"], "a");
        assert_eq!(
            request.headers["host"],
            format!("127.0.0.1:{}", app.port).as_str()
        );
        assert_eq!(request.headers["connection"], "close");
    }
    assert_eq!(
        app.connections.load(Ordering::SeqCst),
        2,
        "a new connection per probe"
    );
}

// Check 36: which statuses are ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_status_200_to_399_is_ready() {
    for (code, ready) in [
        (200, true),
        (204, true),
        (301, true),
        (399, true),
        (400, false),
        (404, false),
        (500, false),
        (503, false),
    ] {
        let app = answering(code).await;
        assert_eq!(
            readiness(&standard_http(app.port)).check().await,
            ready,
            "{code}"
        );
    }
    let closed = closed_port().await;
    assert!(!readiness(&standard_http(closed)).check().await);
}

// Check 37.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_empty_handlers_are_never_ready() {
    for json in [
        r#"{"exec":{"command":["echo","hello"]},"periodSeconds":1,"timeoutSeconds":1}"#,
        r#"{"exec":{"command":["true"]}}"#,
        r#"{"periodSeconds":1,"timeoutSeconds":1,"successThreshold":1}"#,
        "{}",
    ] {
        let readiness = readiness(json);
        let start = Instant::now();
        assert!(!readiness.check().await, "{json}");
        assert!(!readiness.check().await, "{json}");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{json} was polled"
        );
    }
}

// Check 38.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_container_probes_all_must_pass() {
    let slow_ok = || {
        start_app(Speaks::Http1, |_, _| async {
            sleep(Duration::from_millis(300)).await;
            status(200)
        })
    };
    let (a, b) = (slow_ok().await, slow_ok().await);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_port = listener.local_addr().unwrap().port();
    let (_accepted, _task) = count_accepts(listener);
    let json = format!(
        r#"[{},{},{{"tcpSocket":{{"port":{tcp_port},"host":"127.0.0.1"}}}}]"#,
        standard_http(a.port),
        standard_http(b.port)
    );
    let all = Readiness::new(parse(&json, true).unwrap(), ReadinessOptions::default());
    let start = Instant::now();
    assert!(all.check().await);
    // In parallel: two 300 ms probes take about 300 ms together.
    assert!(
        start.elapsed() < Duration::from_millis(550),
        "{:?}",
        start.elapsed()
    );

    let failing = answering(503).await;
    let json = format!(
        r#"[{},{}]"#,
        standard_http(a.port),
        standard_http(failing.port)
    );
    let one_fails = Readiness::new(parse(&json, true).unwrap(), ReadinessOptions::default());
    assert!(!one_fails.check().await);
    // The failing probe did not cut the others short.
    assert_eq!(a.requests(), 2);

    let single = Readiness::new(
        parse(&format!("[{}]", standard_http(failing.port)), true).unwrap(),
        ReadinessOptions::default(),
    );
    assert!(!single.check().await);
}

/// Health answers of the hand-made gRPC server, by requested service name.
#[derive(Debug, Clone, Copy)]
enum Health {
    /// A response message with this `ServingStatus`, then `grpc-status: 0`.
    Status(u8),
    /// A trailers-only answer with this `grpc-status`.
    TrailersOnly(u16),
    /// No message, `grpc-status` in the trailers.
    Trailer(u16),
}

fn health_for(service: &str) -> Health {
    match service {
        "" | "serving" => Health::Status(1),
        "not-serving" => Health::Status(2),
        "unknown" => Health::Status(0),
        "unimplemented" => Health::TrailersOnly(12),
        "unavailable-trailer" => Health::Trailer(14),
        other => panic!("unexpected service {other:?}"),
    }
}

/// The service name in a framed `HealthCheckRequest`.
fn requested_service(body: &[u8]) -> String {
    assert_eq!(body[0], 0, "not compressed");
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let message = &body[5..];
    assert_eq!(message.len(), len);
    if message.is_empty() {
        return String::new();
    }
    assert_eq!(message[0], 0x0a, "field 1, length-delimited");
    let n = usize::from(message[1]);
    String::from_utf8(message[2..2 + n].to_vec()).unwrap()
}

async fn start_grpc_health_app() -> App {
    start_app(Speaks::H2c, |request: Request<Incoming>, _| async move {
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri().path(), "/grpc.health.v1.Health/Check");
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let mut response = match health_for(&requested_service(&body)) {
            Health::Status(serving) => {
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                let frame = Bytes::from(vec![0, 0, 0, 0, 2, 0x08, serving]);
                Response::new(
                    Full::new(frame)
                        .with_trailers(async move { Some(Ok(trailers)) })
                        .boxed(),
                )
            }
            Health::TrailersOnly(code) => {
                let mut response = Response::new(Empty::new().boxed());
                let headers = response.headers_mut();
                headers.insert("grpc-status", HeaderValue::from(code));
                headers.insert(
                    "grpc-message",
                    HeaderValue::from_static("unknown%20service grpc.health.v1.Health"),
                );
                response
            }
            Health::Trailer(code) => {
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from(code));
                Response::new(
                    Empty::new()
                        .with_trailers(async move { Some(Ok(trailers)) })
                        .boxed(),
                )
            }
        };
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        response
    })
    .await
}

fn grpc_probe(port: u16, service: &str) -> String {
    format!(
        r#"{{"grpc":{{"port":{port},"service":"{service}"}},"periodSeconds":1,"timeoutSeconds":1}}"#
    )
}

// Check 39.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_probe_is_ready_only_when_serving() {
    let app = start_grpc_health_app().await;
    for (service, ready) in [
        ("", true),
        ("serving", true),
        ("not-serving", false),
        ("unknown", false),
        ("unimplemented", false),
        ("unavailable-trailer", false),
    ] {
        assert_eq!(
            readiness(&grpc_probe(app.port, service)).check().await,
            ready,
            "{service:?}"
        );
    }
    let request = &app.seen()[0];
    assert_eq!(request.version, Version::HTTP_2);
    assert_eq!(request.headers["content-type"], "application/grpc");
    assert_eq!(request.headers["te"], "trailers");
    assert_eq!(request.headers["user-agent"], "kube-probe//");

    // Without a service field, aggressive: the whole server is asked.
    let aggressive = readiness(&format!(r#"{{"grpc":{{"port":{}}}}}"#, app.port));
    assert!(aggressive.check().await);

    // An app without the health service (an h2c app answering 404 to it).
    let plain = start_app(Speaks::H2c, |_, _| async { status(404) }).await;
    assert!(!readiness(&grpc_probe(plain.port, "")).check().await);

    // Nothing listening.
    let closed = closed_port().await;
    assert!(!readiness(&grpc_probe(closed, "")).check().await);

    // An app that does not speak HTTP/2 at all.
    let http1 = answering(200).await;
    assert!(!readiness(&grpc_probe(http1.port, "")).check().await);
}

fn autodetect() -> ReadinessOptions {
    ReadinessOptions {
        http2_autodetect: true,
        ..ReadinessOptions::default()
    }
}

fn custom_header_probe(port: u16) -> String {
    format!(
        r#"{{"httpGet":{{"port":{port},"host":"127.0.0.1","scheme":"HTTP","path":"/ready",
            "httpHeaders":[{{"name":"K-Kubelet-Probe","value":"queue"}}]}},"periodSeconds":1,"timeoutSeconds":1}}"#
    )
}

fn summary(seen: &[Seen]) -> Vec<(Version, bool)> {
    seen.iter()
        .map(|s| (s.version, s.headers.contains_key("k-kubelet-probe")))
        .collect()
}

// Check 40.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_autodetection() {
    // h2c-only and ready: an h2c GET without the headers, then one with them.
    let h2 = start_app(Speaks::H2c, |_, _| async { status(200) }).await;
    assert!(
        readiness_with(&custom_header_probe(h2.port), autodetect())
            .check()
            .await
    );
    assert_eq!(
        summary(&h2.seen()),
        [(Version::HTTP_2, false), (Version::HTTP_2, true)]
    );
    assert!(h2.seen().iter().all(|s| s.target == "/ready"));
    assert!(
        h2.seen()
            .iter()
            .all(|s| s.headers["user-agent"] == "kube-probe//")
    );

    // HTTP/1-only and ready: the h2c attempt fails, HTTP/1.1 without the headers decides.
    let h1 = answering(200).await;
    assert!(
        readiness_with(&custom_header_probe(h1.port), autodetect())
            .check()
            .await
    );
    assert_eq!(summary(&h1.seen()), [(Version::HTTP_11, false)]);

    // Not ready over h2c, ready over HTTP/1.1.
    let split = start_app(Speaks::Both, |request, _| async move {
        status(if request.version() == Version::HTTP_2 {
            503
        } else {
            200
        })
    })
    .await;
    assert!(
        readiness_with(&custom_header_probe(split.port), autodetect())
            .check()
            .await
    );
    assert_eq!(
        summary(&split.seen()),
        [(Version::HTTP_2, false), (Version::HTTP_11, false)]
    );

    // Not ready on either.
    let down = start_app(Speaks::Both, |_, _| async { status(500) }).await;
    assert!(
        !readiness_with(&custom_header_probe(down.port), autodetect())
            .check()
            .await
    );
    assert_eq!(
        summary(&down.seen()),
        [(Version::HTTP_2, false), (Version::HTTP_11, false)]
    );

    // Ready over h2c without the headers, not with them: the second request decides.
    let picky = start_app(Speaks::H2c, |request, _| async move {
        status(if request.headers().contains_key("k-kubelet-probe") {
            503
        } else {
            200
        })
    })
    .await;
    assert!(
        !readiness_with(&custom_header_probe(picky.port), autodetect())
            .check()
            .await
    );

    // Without auto-detection an h2c-only app is never asked over h2c.
    let h2_only = start_app(Speaks::H2c, |_, _| async { status(200) }).await;
    assert!(!readiness(&custom_header_probe(h2_only.port)).check().await);
    assert!(h2_only.seen().is_empty());
}

// Auto-detection in aggressive mode: the threshold counts whole attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_autodetection_aggressive() {
    let h2 = start_app(Speaks::H2c, |_, _| async { status(200) }).await;
    let readiness = readiness_with(
        &format!(
            r#"{{"httpGet":{{"port":{},"scheme":"HTTP"}},"successThreshold":2}}"#,
            h2.port
        ),
        autodetect(),
    );
    assert!(readiness.check().await);
    assert_eq!(h2.requests(), 4);
}

// Timed-out attempts leave no connection behind, over h2c or HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_attempts_close_their_connections() {
    let hung = start_app(Speaks::Both, |_, _| async {
        sleep(Duration::from_secs(30)).await;
        status(200)
    })
    .await;
    let readiness = readiness_with(&custom_header_probe(hung.port), autodetect());
    let start = Instant::now();
    assert!(!readiness.check().await);
    // The h2c attempt and the HTTP/1.1 fallback each had the full timeout.
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1950), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(
        summary(&hung.seen()),
        [(Version::HTTP_2, false), (Version::HTTP_11, false)]
    );
    eventually("both connections closed", || {
        hung.closed.load(Ordering::SeqCst) == 2
    })
    .await;
}
