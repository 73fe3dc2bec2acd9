//! Hostile clients against the real binary. Every test ends the same way
//! ([`Binary::assert_recovered`]): the proxy still proxies and answers probes,
//! the autoscaler stats read zero concurrency, and the process has no more file
//! descriptors open than before the attack.
//!
//! The app answers `Connection: close`, so pooled app connections never count
//! as open descriptors; `/hold` never answers, `/ws` upgrades and echoes,
//! `/ws-once` upgrades, reads one message and hangs up.

mod support;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;
use support::binary::Binary;
use support::h2frames::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What the app saw.
#[derive(Default)]
struct Seen {
    paths: Mutex<Vec<String>>,
    /// Request bodies read to their end.
    complete_bodies: AtomicUsize,
    /// Request bodies that failed while being read.
    broken_bodies: AtomicUsize,
    /// `/hold` requests that arrived.
    held: AtomicUsize,
    /// `/hold` requests still open at the app (the proxy has not let go).
    holding: AtomicIsize,
    /// Upgraded connections still open on the app's side.
    upgraded_open: AtomicIsize,
}

impl Seen {
    fn saw(&self, path: &str) -> usize {
        self.paths.lock().iter().filter(|p| *p == path).count()
    }

    /// Waits until every upgraded connection has closed at the app.
    async fn no_upgrade_open(&self) {
        within(10, async {
            while self.upgraded_open.load(Ordering::SeqCst) != 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Waits until the proxy has closed every `/hold` request it sent the app.
    async fn nothing_held(&self) {
        within(10, async {
            while self.holding.load(Ordering::SeqCst) != 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
}

/// Counts a request as open at the app until its handler is dropped.
struct Holding(Arc<Seen>);

impl Holding {
    fn new(seen: Arc<Seen>) -> Holding {
        seen.held.fetch_add(1, Ordering::SeqCst);
        seen.holding.fetch_add(1, Ordering::SeqCst);
        Holding(seen)
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.holding.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn start_hostile_app() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = {
        let seen = seen.clone();
        start_app(move |mut req: Request<Incoming>| {
            let seen = seen.clone();
            async move {
                let path = req.uri().path().to_owned();
                seen.paths.lock().push(path.clone());
                match path.as_str() {
                    "/hold" => {
                        let _holding = Holding::new(seen.clone());
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                    "/ws" => {
                        let seen = seen.clone();
                        switch_to_websocket(&mut req, move |io| async move {
                            seen.upgraded_open.fetch_add(1, Ordering::SeqCst);
                            echo_upgraded(io).await;
                            seen.upgraded_open.fetch_sub(1, Ordering::SeqCst);
                        })
                    }
                    // Reads one 4-byte message, then the app's end disappears.
                    "/ws-once" => switch_to_websocket(&mut req, |mut io| async move {
                        let mut buf = [0u8; 4];
                        let _ = io.read_exact(&mut buf).await;
                    }),
                    _ => {
                        match req.into_body().collect().await {
                            Ok(_) => seen.complete_bodies.fetch_add(1, Ordering::SeqCst),
                            Err(_) => seen.broken_bodies.fetch_add(1, Ordering::SeqCst),
                        };
                        Response::builder()
                            .header("connection", "close")
                            .body(full("ok"))
                            .unwrap()
                    }
                }
            }
        })
        .await
    };
    (app, seen)
}

/// Writes `bytes` (the proxy may stop reading and close first) and reads the
/// answer until the proxy closes the connection.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let conn = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = conn.into_split();
    let bytes = bytes.to_vec();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        write
    });
    let mut answer = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 8192];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    within(10, read_all).await;
    drop(writer.await);
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 answer: {answer:?}"))
}

/// Resets the connection on drop instead of closing it (SO_LINGER 0).
fn reset_on_drop(conn: &TcpStream) {
    socket2::SockRef::from(conn)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_one_mib_get_431() {
    let (app, seen) = start_hostile_app().await;
    let qp = Binary::start(app.port(), &[]).await;
    let baseline = qp.baseline().await;

    // One huge header, and many ordinary ones adding up past the limit.
    let one = format!(
        "GET /big HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat((1 << 20) + 8192)
    );
    let mut many = String::from("GET /big HTTP/1.1\r\nHost: x\r\n");
    while many.len() < (1 << 20) + 8192 {
        many.push_str(&format!("X-H{}: {}\r\n", many.len(), "b".repeat(12 * 1024)));
    }
    many.push_str("\r\n");
    for request in [one, many] {
        let answer = exchange(qp.main, request.as_bytes()).await;
        assert_eq!(status_of(&answer), 431, "{answer}");
    }
    assert_eq!(seen.saw("/big"), 0);
    qp.assert_recovered(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_just_under_one_mib_are_served() {
    // 1 MiB of headers in 90 lines of 11.25 KiB passes, whichever way the
    // bytes happen to be split across reads.
    let (app, seen) = start_hostile_app().await;
    let qp = Binary::start(app.port(), &[]).await;
    let mut request = String::from("GET /many HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..90 {
        request.push_str(&format!("X-H{i:02}: {}\r\n", "c".repeat(11 * 1024 + 256)));
    }
    request.push_str("\r\n");
    let answer = exchange(qp.main, request.as_bytes()).await;
    assert_eq!(
        status_of(&answer),
        200,
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert_eq!(seen.saw("/many"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_header_bytes_get_400() {
    let (app, seen) = start_hostile_app().await;
    let qp = Binary::start(app.port(), &[]).await;
    let baseline = qp.baseline().await;
    let cases: &[&[u8]] = &[
        b"GET /bad HTTP/1.1\r\nHost: x\r\nBad\x01Name: v\r\n\r\n",
        b"GET /bad HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /bad HTTP/1.1\r\nHost: x\r\nX-Space : v\r\n\r\n",
        b"GET /bad HTTP/1.1\r\nHost: x\r\n: no-name\r\n\r\n",
        b"GET /bad HTTP/1.1\r\nHost: x\r\nNo-Colon\r\n\r\n",
        b"GET /bad\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /bad HTTP/1.1\r\nHost: x\r\nX-Del: a\x7fb\r\n\r\n",
        b"G\xc3\x89T /bad HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /bad HTTP/9.9\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a TLS hello on the plain port",
    ];
    for case in cases {
        let answer = exchange(qp.main, case).await;
        // A few hyper answers with 400, the rest it closes without a word,
        // as Go does for garbage that is not HTTP at all.
        assert!(
            answer.is_empty() || status_of(&answer) == 400,
            "{:?} -> {answer:?}",
            case.escape_ascii().to_string()
        );
    }
    assert_eq!(seen.saw("/bad"), 0, "{:?}", seen.paths.lock());
    qp.assert_recovered(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunked_encoding_never_reaches_the_app_whole() {
    let (app, seen) = start_hostile_app().await;
    let qp = Binary::start(app.port(), &[]).await;
    let baseline = qp.baseline().await;
    let head = "POST /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    let bodies: &[&str] = &[
        "zz\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
    ];
    for body in bodies {
        let answer = exchange(qp.main, format!("{head}{body}").as_bytes()).await;
        // The head was valid, so the request is on its way to the app when the
        // body breaks: hyper answers 400 if it can, else upstream's 502 for a
        // body that failed mid-proxy; never a success.
        if !answer.is_empty() {
            let status = status_of(&answer);
            assert!(status == 400 || status == 502, "{body:?} -> {answer}");
        }
    }
    assert_eq!(
        seen.complete_bodies.load(Ordering::SeqCst),
        1,
        "only the baseline's"
    );
    qp.assert_recovered(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_plus_transfer_encoding_smuggles_nothing() {
    let (app, seen) = start_hostile_app().await;
    let qp = Binary::start(app.port(), &[]).await;
    let baseline = qp.baseline().await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases = [
        // CL.TE: a front end trusting Content-Length would see one request.
        format!(
            "POST /front HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
            5 + smuggled.len()
        ),
        // TE.CL: a back end trusting Content-Length would see two.
        format!(
            "POST /front HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
            smuggled.len()
        ),
        format!(
            "POST /front HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /front HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /front HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /front HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n{smuggled}"
        ),
    ];
    for case in &cases {
        let answer = exchange(qp.main, case.as_bytes()).await;
        assert!(
            !answer.contains(
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nokHTTP"
            ),
            "two answers on one connection: {answer}"
        );
        if !answer.is_empty() {
            let status = status_of(&answer);
            assert!(
                status == 200 || status == 400 || status == 501,
                "{case:?} -> {answer}"
            );
        }
    }
    assert_eq!(seen.saw("/smuggled"), 0, "{:?}", seen.paths.lock());
    qp.assert_recovered(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_on_headers_is_closed_after_the_header_read_timeout() {
    let (app, _seen) = start_hostile_app().await;
    let qp = Binary::start(
        app.port(),
        &[("QUEUE_PROXY_HEADER_READ_TIMEOUT_MS", "1000")],
    )
    .await;
    let baseline = qp.baseline().await;

    /// Sends `first`, then one byte of `trickle` every 100 ms; returns when the
    /// proxy closed the connection.
    async fn closed_after(addr: SocketAddr, first: &'static [u8], trickle: bool) -> Duration {
        let started = Instant::now();
        let conn = TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = conn.into_split();
        write.write_all(first).await.unwrap();
        let writer = tokio::spawn(async move {
            if trickle {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if write.write_all(b"a").await.is_err() {
                        return;
                    }
                }
            }
            // Holds the write half open without a word.
            std::future::pending::<()>().await;
        });
        let mut buf = [0u8; 256];
        let closed = within(10, async {
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return started.elapsed(),
                    Ok(_) => {}
                }
            }
        })
        .await;
        writer.abort();
        closed
    }

    let slow = [
        (
            "a head trickling in",
            &b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "[..],
            true,
        ),
        (
            "a head that stops",
            &b"GET / HTTP/1.1\r\nHost: x\r\n"[..],
            false,
        ),
        ("a silent connection", &b""[..], false),
        (
            "a partial HTTP/2 preface",
            &b"PRI * HTTP/2.0\r\n"[..],
            false,
        ),
    ];
    let all: Vec<_> = slow
        .iter()
        .map(|&(what, first, trickle)| (what, tokio::spawn(closed_after(qp.main, first, trickle))))
        .collect();
    for (what, closed) in all {
        let closed = closed.await.unwrap();
        assert!(
            closed >= Duration::from_millis(900) && closed < Duration::from_secs(4),
            "{what}: closed after {closed:?}"
        );
    }
    qp.assert_recovered(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_aborted_connections_frees_everything() {
    let (app, seen) = start_hostile_app().await;
    let qp = Binary::start(app.port(), &[("CONTAINER_CONCURRENCY", "10")]).await;
    let baseline = qp.baseline().await;

    let mut held = Vec::new();
    for i in 0..300 {
        let mut conn = TcpStream::connect(qp.main).await.unwrap();
        match i % 4 {
            // Connect and leave at once.
            0 => drop(conn),
            // Half a head, then a reset.
            1 => {
                conn.write_all(b"GET /hold HTTP/1.1\r\nHo").await.unwrap();
                reset_on_drop(&conn);
                drop(conn);
            }
            // Half a body, then a reset.
            2 => {
                conn.write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
                    .await
                    .unwrap();
                reset_on_drop(&conn);
                drop(conn);
            }
            // In flight at the app (10) or queued in the breaker, kept for now.
            _ => {
                conn.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .unwrap();
                held.push(conn);
            }
        }
    }
    within(10, async {
        while seen.held.load(Ordering::SeqCst) < 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Half of the held requests close politely, half reset.
    for (i, conn) in held.into_iter().enumerate() {
        if i % 2 == 0 {
            reset_on_drop(&conn);
        }
        drop(conn);
    }
    seen.nothing_held().await;
    qp.assert_recovered(baseline).await;
}

/// HPACK for `POST /hold` to `x`.
fn post_hold_headers() -> Vec<u8> {
    literal_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/hold"),
        (":authority", "x"),
    ])
}

/// Opens `streams` h2c streams of `POST /hold` with half a body each.
async fn open_h2_streams(addr: SocketAddr, streams: u32) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for i in 0..streams {
        let id = 2 * i + 1;
        out.extend(frame(HEADERS, END_HEADERS, id, &post_hold_headers()));
        out.extend(frame(DATA, 0, id, b"half a body"));
    }
    conn.write_all(&out).await.unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_resets_and_goaway_mid_stream_free_everything() {
    let (app, seen) = start_hostile_app().await;
    let qp = Binary::start(app.port(), &[]).await;
    let baseline = qp.baseline().await;

    // Ten streams in flight, each reset by the client.
    let mut conn = open_h2_streams(qp.main, 10).await;
    within(10, async {
        while seen.held.load(Ordering::SeqCst) < 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut resets = Vec::new();
    for i in 0..10 {
        resets.extend(frame(RST_STREAM, 0, 2 * i + 1, &CANCEL.to_be_bytes()));
    }
    conn.write_all(&resets).await.unwrap();

    // Ten more on a second connection, which then says GOAWAY and goes.
    let mut other = open_h2_streams(qp.main, 10).await;
    within(10, async {
        while seen.held.load(Ordering::SeqCst) < 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut goaway = 0u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0u32.to_be_bytes());
    other
        .write_all(&frame(GOAWAY, 0, 0, &goaway))
        .await
        .unwrap();
    drop(other);

    // The first connection stays open, idle, with no stream left: the proxy
    // must have let go of every request anyway.
    let busy_fds = qp.open_fds();
    qp.assert_serves().await;
    qp.assert_idle().await;
    seen.nothing_held().await;
    assert!(busy_fds > 0);
    drop(conn);
    qp.assert_recovered(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_peer_that_vanishes_frees_both_sides() {
    let (app, seen) = start_hostile_app().await;
    let qp = Binary::start(app.port(), &[]).await;
    let baseline = qp.baseline().await;

    // The client vanishes (a reset, as a crashed peer's kernel sends).
    for _ in 0..5 {
        let (mut ws, _) = open_websocket(qp.main).await;
        ws.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        within(5, ws.read_exact(&mut echo)).await.unwrap();
        assert_eq!(&echo, b"ping");
        reset_on_drop(&ws);
        drop(ws);
    }
    seen.no_upgrade_open().await;

    // The client vanishes without a word (FIN, never read again).
    let (ws, _) = open_websocket(qp.main).await;
    drop(ws);
    seen.no_upgrade_open().await;
    qp.assert_recovered(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_side_websocket_that_vanishes_closes_the_client() {
    let (app, seen) = start_hostile_app().await;
    let qp = Binary::start(app.port(), &[]).await;
    let baseline = qp.baseline().await;
    for _ in 0..5 {
        let (mut ws, _) = open_websocket_at(qp.main, "/ws-once").await;
        ws.write_all(b"bye!").await.unwrap();
        let mut buf = [0u8; 16];
        let read = within(10, ws.read(&mut buf)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert_eq!(seen.upgraded_open.load(Ordering::SeqCst), 0);
    qp.assert_recovered(baseline).await;
}
