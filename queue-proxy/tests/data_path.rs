//! The data path over real sockets: spec §12 checks 1–3, 5–10 and 12–21, plus
//! streaming, trailers and client disconnects.

mod support;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An app that counts requests in flight, waits on `gate`, then answers "done".
async fn held_app(gate: Gate, in_app: Arc<AtomicUsize>) -> std::net::SocketAddr {
    start_app(move |_req: Request<Incoming>| {
        let (gate, in_app) = (gate.clone(), in_app.clone());
        async move {
            in_app.fetch_add(1, Ordering::SeqCst);
            gate.pass().await;
            in_app.fetch_sub(1, Ordering::SeqCst);
            Response::new(full("done"))
        }
    })
    .await
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(10, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let _ = what;
}

// Check 1: CC=1, 11 requests held, the 12th is refused at once; the others finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_refuses_the_twelfth_request_at_cc_1() {
    let (gate, in_app) = (Gate::new(), Arc::new(AtomicUsize::new(0)));
    let app = held_app(gate.clone(), in_app.clone()).await;
    let qp = Qp::start(app.port(), &[("CONTAINER_CONCURRENCY", "1")]).await;

    let mut held = Vec::new();
    for _ in 0..11 {
        held.push(tokio::spawn(get(qp.main, "/", &[])));
    }
    wait_until("one in the app", || in_app.load(Ordering::SeqCst) == 1).await;
    // Let the other ten reach the breaker's queue.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let refused = within(5, get(qp.main, "/", &[])).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.text(), "pending request queue full\n");
    assert_eq!(refused.headers["content-type"], "text/plain; charset=utf-8");

    gate.open(11);
    for h in held {
        let got = within(10, h).await.unwrap();
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.text(), "done");
    }
    qp.stop().await;
}

// Check 2: CC=1, a second request waits and is proxied once the first completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_request_waits_for_the_slot_at_cc_1() {
    let (gate, in_app) = (Gate::new(), Arc::new(AtomicUsize::new(0)));
    let app = held_app(gate.clone(), in_app.clone()).await;
    let qp = Qp::start(app.port(), &[("CONTAINER_CONCURRENCY", "1")]).await;

    let first = tokio::spawn(get(qp.main, "/", &[]));
    wait_until("first in app", || in_app.load(Ordering::SeqCst) == 1).await;
    let second = tokio::spawn(get(qp.main, "/", &[]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(in_app.load(Ordering::SeqCst), 1, "the second must wait");
    assert!(!second.is_finished());

    gate.open(1);
    assert_eq!(within(5, first).await.unwrap().status, StatusCode::OK);
    wait_until("second in app", || in_app.load(Ordering::SeqCst) == 1).await;
    gate.open(1);
    assert_eq!(within(5, second).await.unwrap().status, StatusCode::OK);
    qp.stop().await;
}

// Check 3: CC=0, 100 concurrent slow requests all reach the app at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_limit_at_cc_0() {
    let (gate, in_app) = (Gate::new(), Arc::new(AtomicUsize::new(0)));
    let app = held_app(gate.clone(), in_app.clone()).await;
    let qp = Qp::start(app.port(), &[("CONTAINER_CONCURRENCY", "0")]).await;

    let all: Vec<_> = (0..100)
        .map(|_| tokio::spawn(get(qp.main, "/", &[])))
        .collect();
    wait_until("100 in app", || in_app.load(Ordering::SeqCst) == 100).await;
    gate.open(100);
    for h in all {
        assert_eq!(within(10, h).await.unwrap().status, StatusCode::OK);
    }
    qp.stop().await;
}

// Check 5: K-Kubelet-Probe requests bypass a busy breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_probe_header_bypasses_the_breaker() {
    let (gate, in_app) = (Gate::new(), Arc::new(AtomicUsize::new(0)));
    let app = held_app(gate.clone(), in_app.clone()).await;
    let qp = Qp::start(app.port(), &[("CONTAINER_CONCURRENCY", "1")]).await;

    let busy = tokio::spawn(get(qp.main, "/", &[]));
    wait_until("slot busy", || in_app.load(Ordering::SeqCst) == 1).await;
    let probes: Vec<_> = (0..3)
        .map(|_| tokio::spawn(get(qp.main, "/", &[("k-kubelet-probe", "x")])))
        .collect();
    wait_until("all four in app", || in_app.load(Ordering::SeqCst) == 4).await;
    gate.open(4);
    assert_eq!(within(5, busy).await.unwrap().status, StatusCode::OK);
    for p in probes {
        assert_eq!(within(5, p).await.unwrap().status, StatusCode::OK);
    }
    qp.stop().await;
}

// Checks 6, 7, 13: revision headers stripped, K-Original-Host becomes Host,
// the peer is appended to X-Forwarded-For; K-Proxy-Request is forwarded.
#[tokio::test]
async fn header_rules_toward_the_app() {
    let app = start_echo_app().await;
    let qp = Qp::start(app.port(), &[]).await;

    let got = get(
        qp.main,
        "/a/b?c=d",
        &[
            ("knative-serving-revision", "rev"),
            ("knative-serving-namespace", "ns"),
            ("k-original-host", "a-better-host.com"),
            ("x-forwarded-for", "1.2.3.4"),
            ("k-proxy-request", "activator"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "gone"),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let text = got.text();
    assert!(text.contains("path=/a/b?c=d\n"), "{text}");
    assert!(text.contains("version=HTTP/1.1\n"), "{text}");
    assert!(!text.contains("knative-serving-revision"), "{text}");
    assert!(!text.contains("knative-serving-namespace"), "{text}");
    assert!(!text.contains("k-original-host"), "{text}");
    assert!(!text.contains("x-hop"), "{text}");
    assert_eq!(
        echoed_header(&got, "host").as_deref(),
        Some("a-better-host.com")
    );
    assert_eq!(
        echoed_header(&got, "x-forwarded-for").as_deref(),
        Some("1.2.3.4, 127.0.0.1")
    );
    assert_eq!(
        echoed_header(&got, "k-proxy-request").as_deref(),
        Some("activator")
    );
    // Nothing is added on the way: no Via, no User-Agent, no Accept-Encoding.
    assert!(echoed_header(&got, "via").is_none());
    assert!(echoed_header(&got, "user-agent").is_none());
    assert!(echoed_header(&got, "accept-encoding").is_none());
    // And nothing is added to the response.
    assert!(!got.headers.contains_key("via"));
    assert!(!got.headers.contains_key("server"));

    // Without K-Original-Host the client's Host is kept.
    let got = get(qp.main, "/", &[("host", "nimporte.pas")]).await;
    assert_eq!(
        echoed_header(&got, "host").as_deref(),
        Some("test.example.com")
    );
    qp.stop().await;
}

// Check 9: the app's port is closed.
#[tokio::test]
async fn closed_app_port_is_a_502_naming_the_dial_error() {
    let port = closed_port().await;
    let qp = Qp::start(port, &[]).await;
    let got = within(5, get(qp.main, "/", &[])).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    let text = got.text();
    assert!(
        text.starts_with(&format!("dial tcp 127.0.0.1:{port}:")),
        "{text}"
    );
    assert!(text.ends_with('\n'), "{text:?}");
    assert_eq!(
        text,
        format!("dial tcp 127.0.0.1:{port}: connect: connection refused\n")
    );
    qp.stop().await;
}

// Check 10: HTTP/2 in goes out as h2c; HTTP/1.1 in goes out as HTTP/1.1.
#[tokio::test]
async fn protocol_is_kept_toward_the_app() {
    let app = start_echo_app().await;
    let qp = Qp::start(app.port(), &[]).await;

    let req = Request::get(format!("http://h2.example.com:{}/x?y=1", qp.main.port()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let got = send_h2(qp.main, req).await;
    assert_eq!(got.status, StatusCode::OK);
    let text = got.text();
    assert!(text.contains("version=HTTP/2.0\n"), "{text}");
    assert!(text.contains("path=/x?y=1\n"), "{text}");

    let got = get(qp.main, "/", &[]).await;
    assert!(got.text().contains("version=HTTP/1.1\n"));
    qp.stop().await;
}

// Check 12: a websocket upgrade; bytes flow both ways after the 101.
#[tokio::test]
async fn websocket_upgrade_is_tunnelled_both_ways() {
    let app = start_app(|mut req: Request<Incoming>| async move {
        if !req.headers().contains_key("upgrade") {
            return Response::new(full("plain"));
        }
        let mut resp = switch_to_websocket(&mut req, |mut io| async move {
            io.write_all(b"welcome").await.unwrap();
            echo_upgraded(io).await;
        });
        resp.headers_mut().insert(
            "sec-websocket-accept",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".parse().unwrap(),
        );
        resp
    })
    .await;
    let qp = Qp::start(app.port(), &[("CONTAINER_CONCURRENCY", "1")]).await;

    let (mut conn, head) = open_websocket(qp.main).await;
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");

    let mut buf = [0u8; 7];
    within(5, conn.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"welcome");
    conn.write_all(b"ping-1").await.unwrap();
    let mut buf = [0u8; 6];
    within(5, conn.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"ping-1");

    // The tunnel holds the only slot (CC=1) until it closes.
    let queued = tokio::spawn(get(qp.main, "/", &[]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!queued.is_finished(), "the tunnel must hold the slot");
    drop(conn);
    let got = within(5, queued).await.unwrap();
    assert_eq!(got.text(), "plain");
    qp.stop().await;
}

/// Reads an HTTP/1.1 response head byte by byte (so no body bytes are consumed).
async fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        within(5, conn.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

// Check 14: a gRPC unary call over h2c; grpc-status trailers reach the client.
#[tokio::test]
async fn grpc_trailers_reach_the_client() {
    let app = start_app(|req: Request<Incoming>| async move {
        assert_eq!(req.version(), http::Version::HTTP_2);
        let _ = req.into_body().collect().await.unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("grpc-message", "ok".parse().unwrap());
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi"))),
            Ok(Frame::trailers(trailers)),
        ];
        Response::builder()
            .header("content-type", "application/grpc")
            .body(StreamBody::new(tokio_stream::iter(frames)).boxed())
            .unwrap()
    })
    .await;
    let qp = Qp::start(app.port(), &[]).await;
    let req = Request::post(format!("http://grpc.local:{}/pkg.Svc/Call", qp.main.port()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let got = send_h2(qp.main, req).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(&got.body[..], b"\0\0\0\0\x02hi");
    let trailers = got.trailers.expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    qp.stop().await;
}

// Checks 15–21: the Forwarded header the app sees.
#[tokio::test]
async fn forwarded_shim_cases() {
    let app = start_echo_app().await;
    let qp = Qp::start(app.port(), &[]).await;
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Headers<'_>, Option<&str>)] = &[
        (
            &[
                ("x-forwarded-for", "127.0.0.1, ::1"),
                ("x-forwarded-host", "h"),
                ("x-forwarded-proto", "p"),
            ],
            Some(r#"for=127.0.0.1;host=h;proto=p, for="[::1]""#),
        ),
        (&[("x-forwarded-for", "127.0.0.1")], Some("for=127.0.0.1")),
        (
            &[("x-forwarded-for", "127.0.0.1, ::1")],
            Some(r#"for=127.0.0.1, for="[::1]""#),
        ),
        (
            &[
                ("x-forwarded-for", "127.0.0.1, ::1"),
                ("x-forwarded-proto", "p"),
            ],
            Some(r#"for=127.0.0.1;proto=p, for="[::1]""#),
        ),
        (
            &[
                ("x-forwarded-for", "127.0.0.1, ::1"),
                ("x-forwarded-host", "h"),
            ],
            Some(r#"for=127.0.0.1;host=h, for="[::1]""#),
        ),
        (&[("x-forwarded-host", "h")], Some("host=h")),
        (&[("x-forwarded-proto", "p")], Some("proto=p")),
        (
            &[("x-forwarded-host", "h"), ("x-forwarded-proto", "p")],
            Some("host=h;proto=p"),
        ),
        (&[("x-forwarded-for", ",,,")], Some("for=, for=, for=")),
        (
            &[
                ("forwarded", "for=a, for=b"),
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-host", "h"),
            ],
            Some("for=a, for=b"),
        ),
        (&[], None),
    ];
    for (headers, want) in cases {
        let got = get(qp.main, "/", headers).await;
        assert_eq!(
            echoed_header(&got, "forwarded").as_deref(),
            *want,
            "headers {headers:?}"
        );
    }
    qp.stop().await;
}

// Streaming: the first chunk reaches the client before the app has finished.
#[tokio::test]
async fn response_chunks_stream_through_unbuffered() {
    let (release_tx, release_rx) = tokio::sync::mpsc::channel::<()>(1);
    let release_rx = Arc::new(tokio::sync::Mutex::new(release_rx));
    let app = start_app(move |_req: Request<Incoming>| {
        let release_rx = release_rx.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                tx.send(Ok(Frame::data(Bytes::from_static(b"first;"))))
                    .await
                    .unwrap();
                // The app finishes only after the client has seen the first chunk.
                release_rx.lock().await.recv().await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"second"))))
                    .await
                    .unwrap();
            });
            Response::new(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed())
        }
    })
    .await;
    let qp = Qp::start(app.port(), &[]).await;

    let stream = TcpStream::connect(qp.main).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get("/")
                .header("host", "x")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = within(5, body.frame())
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    release_tx.send(()).await.unwrap();
    let rest = within(5, body.collect()).await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second");
    qp.stop().await;
}

// Request bodies stream to the app too, and request trailers are forwarded (h2).
#[tokio::test]
async fn request_body_and_trailers_reach_the_app() {
    let app = start_trailer_app().await;
    let qp = Qp::start(app.port(), &[]).await;

    let big = Bytes::from(vec![b'x'; 1 << 20]);
    let got = send_h1(
        qp.main,
        Request::post("/upload")
            .header("host", "x")
            .body(Full::new(big))
            .unwrap(),
    )
    .await;
    assert_eq!(got.text(), "len=1048576 trailer=");

    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"hello"))),
        Ok(Frame::trailers(trailers)),
    ];
    let stream = TcpStream::connect(qp.main).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://x:{}/t", qp.main.port()))
        .body(StreamBody::new(tokio_stream::iter(frames)))
        .unwrap();
    let got = collect(sender.send_request(req).await.unwrap()).await;
    assert_eq!(got.text(), "len=5 trailer=abc");
    qp.stop().await;
}

// A client that goes away frees its breaker slot, whether it was waiting or in the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_frees_its_slot() {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = {
        let hits = hits.clone();
        start_app(move |req: Request<Incoming>| {
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                if req.uri().path() == "/hang" {
                    std::future::pending::<()>().await;
                }
                Response::new(full("ok"))
            }
        })
        .await
    };
    let qp = Qp::start(app.port(), &[("CONTAINER_CONCURRENCY", "1")]).await;

    // A raw client sends a request the app never answers, then hangs up.
    let mut hung = TcpStream::connect(qp.main).await.unwrap();
    hung.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    wait_until("hang in app", || hits.load(Ordering::SeqCst) == 1).await;
    // A second raw client queues behind it, then hangs up too.
    let mut queued = TcpStream::connect(qp.main).await.unwrap();
    queued
        .write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(queued);
    drop(hung);

    // The slot is free again: a normal request is served.
    let got = within(5, get(qp.main, "/", &[])).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.text(), "ok");
    qp.stop().await;
}

// Keep-alive: sequential requests reuse one app connection (HTTP/1.1, both with
// Content-Length and chunked bodies), and HTTP/2 requests share one h2c connection.
#[tokio::test]
async fn app_connections_are_reused() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let body = if req.uri().path() == "/chunked" {
                            let frames = vec![
                                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"ch"))),
                                Ok(Frame::data(Bytes::from_static(b"unk"))),
                            ];
                            StreamBody::new(tokio_stream::iter(frames)).boxed()
                        } else {
                            full("fixed")
                        };
                        Ok::<_, Infallible>(Response::new(body))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
    }
    let qp = Qp::start(app.port(), &[]).await;
    for path in ["/", "/chunked", "/", "/chunked", "/"] {
        let got = get(qp.main, path, &[]).await;
        assert_eq!(got.status, StatusCode::OK);
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "HTTP/1.1 keep-alive reuse"
    );
    for _ in 0..3 {
        let req = Request::get(format!("http://x:{}/", qp.main.port()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send_h2(qp.main, req).await.text(), "fixed");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "one shared h2c connection"
    );
    qp.stop().await;
}

// `Expect: 100-continue`: the client gets its 100 once the proxy starts sending
// the body on, then the app's answer.
#[tokio::test]
async fn expect_continue_gets_a_100_then_the_answer() {
    let app = start_echo_app().await;
    let qp = Qp::start(app.port(), &[]).await;
    let mut conn = TcpStream::connect(qp.main).await.unwrap();
    conn.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
    conn.write_all(b"hello").await.unwrap();
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    qp.stop().await;
}

// A client that goes away cancels its request to the app.
#[tokio::test]
async fn a_departing_client_cancels_the_app_request() {
    struct OnDrop(Arc<AtomicUsize>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (started, cancelled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let app = {
        let (started, cancelled) = (started.clone(), cancelled.clone());
        start_app(move |_req: Request<Incoming>| {
            let (started, cancelled) = (started.clone(), cancelled.clone());
            async move {
                let _guard = OnDrop(cancelled);
                started.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
                Response::new(full("never"))
            }
        })
        .await
    };
    let qp = Qp::start(app.port(), &[]).await;
    let mut conn = TcpStream::connect(qp.main).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    wait_until("request in app", || started.load(Ordering::SeqCst) == 1).await;
    drop(conn);
    wait_until("app request cancelled", || {
        cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    qp.stop().await;
}

// The main port is dual-stack: IPv6 loopback reaches it too (where the host has IPv6).
#[tokio::test]
async fn main_port_answers_on_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let app = start_echo_app().await;
    let qp = Qp::start(app.port(), &[]).await;
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, qp.main.port()));
    let got = get(v6, "/", &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        echoed_header(&got, "x-forwarded-for").as_deref(),
        Some("::1")
    );
    qp.stop().await;
}

// HTTP/1.1 chunked request trailers reach the app (Go's transport forwards them).
#[tokio::test]
async fn http1_request_trailers_reach_the_app() {
    let app = start_trailer_app().await;
    let qp = Qp::start(app.port(), &[]).await;
    let mut conn = TcpStream::connect(qp.main).await.unwrap();
    conn.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
          5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut rest = vec![0u8; 64];
    let n = within(5, conn.read(&mut rest)).await.unwrap();
    let text = String::from_utf8_lossy(&rest[..n]);
    assert!(text.contains("len=5 trailer=abc"), "{text}");
    qp.stop().await;
}

// Idle app connections are closed once they pass the pool's idle timeout, even
// when no further request comes to check them out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_app_connections_close_after_the_idle_timeout() {
    let live = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    {
        let live = live.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let live = live.clone();
                live.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, Infallible>(Response::new(full("ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                    live.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }
    let qp = Qp::start(app.port(), &[]).await;
    let burst: Vec<_> = (0..8)
        .map(|_| tokio::spawn(get(qp.main, "/", &[])))
        .collect();
    for b in burst {
        assert_eq!(within(5, b).await.unwrap().status, StatusCode::OK);
    }
    assert!(
        live.load(Ordering::SeqCst) >= 2,
        "the burst opened several connections"
    );
    // 1.5 s idle timeout, reaped on the next tick of the same period.
    wait_until("idle connections closed", || {
        live.load(Ordering::SeqCst) == 0
    })
    .await;
    qp.stop().await;
}
