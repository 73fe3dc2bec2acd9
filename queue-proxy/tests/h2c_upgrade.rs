//! `Upgrade: h2c` on the main port (RFC 7540 §3.2) against a real queue-proxy:
//! the client side of the upgraded connection is spoken frame by frame, since no
//! HTTP/2 client library adopts stream 1 after an upgrade either.

mod support;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::net::SocketAddr;
use support::h2frames::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What curl sends: MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE 1 GiB,
/// ENABLE_PUSH 0.
const CURL_SETTINGS: &str = "AAMAAABkAARAAAAAAAIAAAAA";

/// hyper's HTTP/2 server's connection window target, and the initial window.
const SERVER_CONN_WINDOW: u32 = 1024 * 1024;
const INITIAL_WINDOW: u32 = 65_535;

/// An app that says which protocol, path and body it got: `proto=HTTP/1.1
/// path=/x?y=1 body=<len>`, then a newline and the body if there was one.
async fn describing_app() -> SocketAddr {
    start_app(|req: Request<Incoming>| async move {
        let proto = format!("{:?}", req.version());
        let path = req
            .uri()
            .path_and_query()
            .map_or("", |p| p.as_str())
            .to_owned();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut text = format!("proto={proto} path={path} body={}", body.len());
        if !body.is_empty() {
            text.push('\n');
            text.push_str(&String::from_utf8_lossy(&body));
        }
        Response::new(full(text))
    })
    .await
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A response on one stream, as frames delivered it.
#[derive(Debug, Default)]
struct StreamResponse {
    header_block: Vec<u8>,
    body: Vec<u8>,
}

/// The client side of an upgraded connection.
struct RawH2 {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Sum of the connection-level WINDOW_UPDATE increments received.
    conn_window_updates: u64,
}

impl RawH2 {
    /// Sends `head` (an HTTP/1.1 request head without the final blank line) and
    /// `body`, and returns the connection with the response head it got.
    async fn send_h1(addr: SocketAddr, head: &str, body: &[u8]) -> (RawH2, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut req = format!("{head}\r\n\r\n").into_bytes();
        req.extend_from_slice(body);
        stream.write_all(&req).await.unwrap();
        let mut conn = RawH2 {
            stream,
            buf: Vec::new(),
            conn_window_updates: 0,
        };
        let head = conn.read_h1_head().await;
        (conn, head)
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed; have {:?}", self.buf);
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn read_h1_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return String::from_utf8(head).unwrap();
            }
            self.fill().await;
        }
    }

    async fn write_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let frame = frame(kind, flags, stream, payload);
        self.stream.write_all(&frame).await.unwrap();
    }

    /// The client's half of the HTTP/2 start: preface and empty SETTINGS.
    async fn start_h2(&mut self) {
        self.stream.write_all(PREFACE).await.unwrap();
        self.write_frame(SETTINGS, 0, 0, &[]).await;
    }

    async fn read_frame(&mut self) -> Frame {
        while self.buf.len() < 9 {
            self.fill().await;
        }
        let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
        while self.buf.len() < 9 + len {
            self.fill().await;
        }
        let raw: Vec<u8> = self.buf.drain(..9 + len).collect();
        Frame {
            kind: raw[3],
            flags: raw[4],
            stream: u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7fff_ffff,
            payload: raw[9..].to_vec(),
        }
    }

    /// Reads frames, answering SETTINGS and counting window updates, until
    /// `until` says the frame just read is the last one wanted.
    async fn read_until(&mut self, mut until: impl FnMut(&Frame) -> bool) {
        loop {
            let frame = self.read_frame().await;
            match frame.kind {
                GOAWAY => panic!("GOAWAY: {:?}", frame.payload),
                RST_STREAM => panic!("RST_STREAM on {}: {:?}", frame.stream, frame.payload),
                SETTINGS if frame.flags & ACK == 0 => {
                    self.write_frame(SETTINGS, ACK, 0, &[]).await;
                }
                WINDOW_UPDATE if frame.stream == 0 => {
                    let raw: [u8; 4] = frame.payload[..4].try_into().unwrap();
                    self.conn_window_updates += u64::from(u32::from_be_bytes(raw) & 0x7fff_ffff);
                }
                _ => {}
            }
            if until(&frame) {
                return;
            }
        }
    }

    /// Reads the response on `stream` until its END_STREAM.
    async fn response(&mut self, stream: u32) -> StreamResponse {
        let mut resp = StreamResponse::default();
        self.read_until(|frame| {
            if frame.stream != stream {
                return false;
            }
            match frame.kind {
                HEADERS => resp.header_block.extend_from_slice(&frame.payload),
                DATA => resp.body.extend_from_slice(&frame.payload),
                _ => {}
            }
            frame.flags & END_STREAM != 0 && (frame.kind == HEADERS || frame.kind == DATA)
        })
        .await;
        resp
    }

    /// A PING round trip: everything the server queued before it has arrived.
    async fn sync(&mut self) {
        self.write_frame(PING, 0, 0, b"syncsync").await;
        self.read_until(|f| f.kind == PING && f.flags & ACK != 0)
            .await;
    }
}

/// `:status: 200` from the static table, which hyper's encoder always uses.
const STATUS_200: u8 = 0x88;

fn upgrade_head(method: &str, path: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: test.example.com\r\n\
         Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
         HTTP2-Settings: {CURL_SETTINGS}{extra}"
    )
}

fn assert_switching(head: &str) {
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(lower.contains("\r\nupgrade: h2c\r\n"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_upgrade_serves_stream_1_then_more_streams() {
    let app = describing_app().await;
    let qp = Qp::start(app.port(), &[]).await;

    let (mut conn, head) = within(
        10,
        RawH2::send_h1(qp.main, &upgrade_head("GET", "/x?y=1", ""), b""),
    )
    .await;
    assert_switching(&head);
    conn.start_h2().await;

    let first = within(10, conn.response(1)).await;
    assert_eq!(first.header_block.first(), Some(&STATUS_200), "{first:?}");
    // Stream 1 reached the app as the HTTP/1.1 request it was sent as.
    assert_eq!(
        String::from_utf8(first.body).unwrap(),
        "proto=HTTP/1.1 path=/x?y=1 body=0"
    );

    // The connection is HTTP/2 from here on: stream 3 is an ordinary h2 request.
    let block = literal_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/z"),
        (":authority", "test.example.com"),
    ]);
    conn.write_frame(HEADERS, END_HEADERS | END_STREAM, 3, &block)
        .await;
    let third = within(10, conn.response(3)).await;
    assert_eq!(third.header_block.first(), Some(&STATUS_200), "{third:?}");
    assert_eq!(
        String::from_utf8(third.body).unwrap(),
        "proto=HTTP/2.0 path=/z body=0"
    );

    // No body was replayed, so the window is what the server advertises.
    within(10, conn.sync()).await;
    assert_eq!(
        u64::from(INITIAL_WINDOW) + conn.conn_window_updates,
        u64::from(SERVER_CONN_WINDOW)
    );

    drop(conn);
    qp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_upgrade_delivers_the_body_and_keeps_flow_control_in_step() {
    let app = describing_app().await;
    let qp = Qp::start(app.port(), &[]).await;

    // Over two DATA frames' worth, to exercise the splitting.
    let body: String = (0..40_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let head = upgrade_head("POST", "/p", &format!("\r\nContent-Length: {}", body.len()));
    let (mut conn, resp_head) = within(10, RawH2::send_h1(qp.main, &head, body.as_bytes())).await;
    assert_switching(&resp_head);
    conn.start_h2().await;

    let first = within(10, conn.response(1)).await;
    assert_eq!(first.header_block.first(), Some(&STATUS_200), "{first:?}");
    let expected = format!("proto=HTTP/1.1 path=/p body={}\n{body}", body.len());
    assert!(
        String::from_utf8(first.body).unwrap() == expected,
        "body mangled"
    );

    // The server counted the replayed body against its connection window; the
    // client never sent it as HTTP/2, so its view is short by as much.
    within(10, conn.sync()).await;
    assert_eq!(
        u64::from(INITIAL_WINDOW) + conn.conn_window_updates,
        u64::from(SERVER_CONN_WINDOW) - body.len() as u64
    );

    // And a small POST over HTTP/2 on the same connection.
    let block = literal_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/q"),
        (":authority", "test.example.com"),
    ]);
    conn.write_frame(HEADERS, END_HEADERS, 3, &block).await;
    conn.write_frame(DATA, END_STREAM, 3, b"hello").await;
    let third = within(10, conn.response(3)).await;
    assert_eq!(
        String::from_utf8(third.body).unwrap(),
        "proto=HTTP/2.0 path=/q body=5\nhello"
    );

    drop(conn);
    qp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_is_replayed_too() {
    let app = describing_app().await;
    let qp = Qp::start(app.port(), &[]).await;

    let head = upgrade_head("PUT", "/c", "\r\nTransfer-Encoding: chunked");
    let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let (mut conn, resp_head) = within(10, RawH2::send_h1(qp.main, &head, body)).await;
    assert_switching(&resp_head);
    conn.start_h2().await;
    let first = within(10, conn.response(1)).await;
    assert_eq!(
        String::from_utf8(first.body).unwrap(),
        "proto=HTTP/1.1 path=/c body=11\nhello world"
    );
    drop(conn);
    qp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_without_http2_settings_is_plain_http1() {
    let app = describing_app().await;
    let qp = Qp::start(app.port(), &[]).await;

    let req = Request::get("/x?y=1")
        .header("host", "test.example.com")
        .header("connection", "Upgrade")
        .header("upgrade", "h2c")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let got = within(10, send_h1(qp.main, req)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.text(), "proto=HTTP/1.1 path=/x?y=1 body=0");
    qp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http2_settings_is_a_400() {
    let app = describing_app().await;
    let qp = Qp::start(app.port(), &[]).await;

    let req = Request::get("/")
        .header("host", "test.example.com")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AA==")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let got = within(10, send_h1(qp.main, req)).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.text(), "invalid HTTP2-Settings header: not base64url\n");
    qp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_declared_body_is_served_over_http1_without_upgrading() {
    let app = describing_app().await;
    let qp = Qp::start(app.port(), &[]).await;

    let body = "b".repeat(70_000);
    let req = Request::post("/big")
        .header("host", "test.example.com")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", CURL_SETTINGS)
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let got = within(10, send_h1(qp.main, req)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.text(),
        format!("proto=HTTP/1.1 path=/big body=70000\n{body}")
    );
    qp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_chunked_body_is_a_413() {
    let app = describing_app().await;
    let qp = Qp::start(app.port(), &[]).await;

    let head = upgrade_head("POST", "/big", "\r\nTransfer-Encoding: chunked");
    let mut body = Vec::new();
    for _ in 0..2 {
        body.extend_from_slice(format!("{:x}\r\n", 40_000).as_bytes());
        body.extend_from_slice(&[b'c'; 40_000]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (_conn, resp_head) = within(10, RawH2::send_h1(qp.main, &head, &body)).await;
    assert!(
        resp_head.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{resp_head}"
    );
    qp.stop().await;
}

/// curl's own `Upgrade: h2c`, if this curl speaks HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http2_upgrades() {
    let features = std::process::Command::new("curl").arg("-V").output();
    let has_http2 = features.is_ok_and(|out| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("Features:") && l.split_whitespace().any(|f| f == "HTTP2"))
    });
    if !has_http2 {
        eprintln!("skipping curl_http2_upgrades: curl is missing or lacks HTTP/2");
        return;
    }
    let app = describing_app().await;
    let qp = Qp::start(app.port(), &[]).await;

    let url = format!("http://{}/x?y=1", qp.main);
    let out = within(
        20,
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args([
                    "--http2",
                    "-s",
                    "-S",
                    "-o",
                    "-",
                    "-w",
                    "%{http_version}",
                    "--max-time",
                    "10",
                ])
                .arg(url)
                .output()
                .unwrap()
        }),
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "proto=HTTP/1.1 path=/x?y=1 body=02"
    );
    qp.stop().await;
}
