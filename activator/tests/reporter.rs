//! Stat reporting to the autoscaler (spec §6, §9): the concurrency reporter on its own
//! under a paused clock, and together with the websocket link against a loopback
//! autoscaler that decodes every frame.
//!
//! §10 checks covered: 1 and 2 (the link side of the readiness gate), 21, 22, 23, 24, 25
//! and 45.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use activator::reporter::{
    AutoscalerLink, Backoff, ConcurrencyReporter, LinkOptions, REPORT_INTERVAL,
};
use activator::revision::RevisionKey;
use futures_util::{SinkExt, StreamExt};
use metrics_proto::{Message as _, Stat, WireStatMessage, WireStatMessages};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const POD: &str = "activator-7d9f-abcde";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn key(name: &str) -> RevisionKey {
    RevisionKey::new("real-namespace", name)
}

fn message(key: &RevisionKey, concurrency: f64, count: f64) -> WireStatMessage {
    WireStatMessage {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        stat: Some(Stat {
            pod_name: POD.to_owned(),
            average_concurrent_requests: concurrency,
            request_count: count,
            ..Stat::default()
        }),
    }
}

fn batch(messages: Vec<WireStatMessage>) -> WireStatMessages {
    WireStatMessages { messages }
}

fn reporter() -> (
    Arc<ConcurrencyReporter>,
    mpsc::UnboundedReceiver<WireStatMessages>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(ConcurrencyReporter::new(POD.to_owned(), tx)), rx)
}

/// Everything queued on the channel right now.
fn drain(rx: &mut mpsc::UnboundedReceiver<WireStatMessages>) -> Vec<WireStatMessages> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

// ---------------------------------------------------------------------------------------
// The protobuf encoding, field by field.

/// `(field number, wire type, payload)` of every top-level field in `bytes`. Length-
/// delimited payloads are their contents; fixed64 ones their 8 bytes.
fn fields(mut bytes: &[u8]) -> Vec<(u64, u8, &[u8])> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first().expect("truncated varint");
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
        }
        panic!("varint too long");
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let tag = varint(&mut bytes);
        let wire = (tag & 7) as u8;
        let len = match wire {
            0 => {
                let start = bytes;
                varint(&mut bytes);
                out.push((tag >> 3, wire, &start[..start.len() - bytes.len()]));
                continue;
            }
            1 => 8,
            2 => varint(&mut bytes) as usize,
            5 => 4,
            other => panic!("unexpected wire type {other}"),
        };
        let (payload, rest) = bytes.split_at(len);
        out.push((tag >> 3, wire, payload));
        bytes = rest;
    }
    out
}

/// Checks a frame field by field: only `messages`, each with namespace, name and a present
/// `stat` holding nothing but pod name, concurrency and count (fields 3, 5, 6 and 7 are
/// never set by the activator), zero values omitted.
fn assert_activator_encoding(raw: &[u8]) {
    for (field, wire, message) in fields(raw) {
        assert_eq!(
            (field, wire),
            (1, 2),
            "WireStatMessages has only `messages`"
        );
        let inner = fields(message);
        let numbers: Vec<u64> = inner.iter().map(|f| f.0).collect();
        assert_eq!(numbers, [1, 2, 3], "namespace, name and stat, in order");
        assert!(inner.iter().all(|f| f.1 == 2));
        let stat = fields(inner[2].2);
        assert_eq!(stat[0].0, 1, "the stat starts with the pod name");
        assert_eq!(stat[0].2, POD.as_bytes());
        for &(field, wire, payload) in &stat[1..] {
            assert!(
                matches!(field, 2 | 4),
                "stat field {field} must never be set by the activator"
            );
            assert_eq!(wire, 1, "doubles are fixed64");
            assert_ne!(f64::from_le_bytes(payload.try_into().unwrap()), 0.0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The concurrency reporter (spec §6.1), paused clock, batches read off the channel.

// §10 check 21
#[tokio::test(start_paused = true)]
async fn the_first_request_pokes_at_once_with_one_and_one() {
    let (reporter, mut rx) = reporter();
    let rev = key("real-name");

    let first = reporter.track(&rev);
    // Sent synchronously by `track`, long before any tick.
    assert_eq!(drain(&mut rx), [batch(vec![message(&rev, 1.0, 1.0)])]);

    // Further requests, in flight or not, do not poke again.
    let second = reporter.track(&rev);
    drop(reporter.track(&rev));
    drop((first, second));
    assert!(drain(&mut rx).is_empty());

    // Another revision gets its own poke.
    let other = key("other-name");
    drop(reporter.track(&other));
    assert_eq!(drain(&mut rx), [batch(vec![message(&other, 1.0, 1.0)])]);
}

// §10 check 21
#[test]
fn racing_first_requests_poke_once() {
    let (reporter, mut rx) = reporter();
    let rev = key("real-name");
    let guards: Vec<_> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| reporter.track(&rev)))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(drain(&mut rx), [batch(vec![message(&rev, 1.0, 1.0)])]);
    drop(guards);
}

// §10 check 22
#[tokio::test(start_paused = true)]
async fn three_requests_at_t0_report_two_and_two_after_the_poke() {
    let (reporter, mut rx) = reporter();
    let rev = key("real-name");
    let _run = tokio::spawn(Arc::clone(&reporter).run(REPORT_INTERVAL));
    tokio::task::yield_now().await;
    let start = Instant::now();

    let guards = [
        reporter.track(&rev),
        reporter.track(&rev),
        reporter.track(&rev),
    ];
    assert_eq!(
        rx.recv().await.unwrap(),
        batch(vec![message(&rev, 1.0, 1.0)])
    );

    let report = rx.recv().await.unwrap();
    assert_eq!(Instant::now() - start, REPORT_INTERVAL);
    assert_eq!(report, batch(vec![message(&rev, 2.0, 2.0)]));
    assert_eq!(reporter.last_concurrency(&rev), Some(2.0));
    drop(guards);
}

// §10 check 23
#[tokio::test(start_paused = true)]
async fn overlapping_requests_average_half_after_the_poke() {
    let (reporter, mut rx) = reporter();
    let rev = key("real-name");
    let long = reporter.track(&rev);
    let short = reporter.track(&rev);
    tokio::time::sleep(ms(1)).await;
    drop(short);
    tokio::time::sleep(ms(1)).await;
    drop(long);

    let report = reporter.report(Instant::now()).unwrap();
    assert_eq!(
        drain(&mut rx),
        [batch(vec![message(&rev, 1.0, 1.0)])],
        "only the poke was sent; `report` returns its batch"
    );
    assert_eq!(report, batch(vec![message(&rev, 0.5, 1.0)]));
}

// §10 check 24
#[tokio::test(start_paused = true)]
async fn an_idle_revision_reports_zero_once_and_its_next_request_pokes_again() {
    let (reporter, mut rx) = reporter();
    let rev = key("real-name");
    let _run = tokio::spawn(Arc::clone(&reporter).run(REPORT_INTERVAL));
    tokio::task::yield_now().await;

    let request = reporter.track(&rev);
    tokio::time::sleep(ms(100)).await;
    drop(request);
    assert_eq!(
        rx.recv().await.unwrap(),
        batch(vec![message(&rev, 1.0, 1.0)])
    );

    // Tick 1: 0.1 average, less the poke's 1, floored at 0; one request, less the poke.
    assert_eq!(
        rx.recv().await.unwrap(),
        batch(vec![message(&rev, 0.0, 0.0)])
    );
    // Tick 2: a whole idle window. Reported once more as zero, then forgotten.
    assert_eq!(
        rx.recv().await.unwrap(),
        batch(vec![message(&rev, 0.0, 0.0)])
    );
    tokio::time::sleep(REPORT_INTERVAL * 3).await;
    assert!(drain(&mut rx).is_empty(), "nothing left to report");
    assert_eq!(reporter.last_concurrency(&rev), None);

    // Forgotten: the next request pokes again and is discounted again.
    let again = reporter.track(&rev);
    assert_eq!(drain(&mut rx), [batch(vec![message(&rev, 1.0, 1.0)])]);
    let report = rx.recv().await.unwrap();
    assert_eq!(report.messages.len(), 1);
    let stat = report.messages[0].stat.as_ref().unwrap();
    assert_eq!(stat.request_count, 0.0);
    assert!(stat.average_concurrent_requests < 1.0);
    drop(again);
}

// §10 check 25
#[tokio::test(start_paused = true)]
async fn three_revisions_are_poked_one_by_one_and_reported_in_one_batch() {
    let (reporter, mut rx) = reporter();
    let revs = [key("rev-c"), key("rev-a"), key("rev-b")];
    for rev in &revs {
        drop(reporter.track(rev));
    }
    let pokes: Vec<_> = revs
        .iter()
        .map(|rev| batch(vec![message(rev, 1.0, 1.0)]))
        .collect();
    assert_eq!(drain(&mut rx), pokes);

    tokio::time::sleep(REPORT_INTERVAL).await;
    let report = reporter.report(Instant::now()).unwrap();
    // One batch, every revision discounted to (0, 0); sorted by key.
    let mut sorted = revs.clone();
    sorted.sort();
    assert_eq!(
        report,
        batch(sorted.iter().map(|rev| message(rev, 0.0, 0.0)).collect())
    );
}

#[tokio::test(start_paused = true)]
async fn requests_in_later_windows_are_not_discounted() {
    let (reporter, _rx) = reporter();
    let rev = key("real-name");
    let held = reporter.track(&rev);
    tokio::time::sleep(REPORT_INTERVAL).await;
    reporter.report(Instant::now()).unwrap();

    // Second window: the held request all along, two more for half of it each.
    let (a, b) = (reporter.track(&rev), reporter.track(&rev));
    tokio::time::sleep(REPORT_INTERVAL / 2).await;
    drop((a, b));
    tokio::time::sleep(REPORT_INTERVAL / 2).await;
    let report = reporter.report(Instant::now()).unwrap();
    assert_eq!(report, batch(vec![message(&rev, 2.0, 2.0)]));
    assert_eq!(reporter.last_concurrency(&rev), Some(2.0));
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_keeps_its_revision_through_an_empty_window() {
    let (reporter, mut rx) = reporter();
    let rev = key("real-name");
    let held = reporter.track(&rev);
    tokio::time::sleep(REPORT_INTERVAL).await;
    let now = Instant::now();
    reporter.report(now).unwrap();
    // A window of no length averages 0 although a request is in flight.
    let empty = reporter.report(now).unwrap();
    assert_eq!(empty, batch(vec![message(&rev, 0.0, 0.0)]));
    drain(&mut rx);

    // Not forgotten: no new poke, and the held request still counts.
    drop(reporter.track(&rev));
    assert!(drain(&mut rx).is_empty());
    tokio::time::sleep(REPORT_INTERVAL).await;
    let report = reporter.report(Instant::now()).unwrap();
    assert_eq!(report, batch(vec![message(&rev, 1.0, 1.0)]));
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_sent_without_revisions() {
    let (reporter, mut rx) = reporter();
    assert_eq!(reporter.report(Instant::now()), None);
    let run = tokio::spawn(Arc::clone(&reporter).run(REPORT_INTERVAL));
    tokio::time::sleep(REPORT_INTERVAL * 5).await;
    assert!(drain(&mut rx).is_empty());
    run.abort();
}

#[tokio::test(start_paused = true)]
async fn last_concurrency_is_the_last_reports() {
    let (reporter, _rx) = reporter();
    let (busy, idle) = (key("busy"), key("idle"));
    assert_eq!(reporter.last_concurrency(&busy), None);
    let held = [reporter.track(&busy), reporter.track(&busy)];
    drop(reporter.track(&idle));
    tokio::time::sleep(REPORT_INTERVAL).await;
    reporter.report(Instant::now());
    assert_eq!(reporter.last_concurrency(&busy), Some(1.0));
    assert_eq!(reporter.last_concurrency(&idle), Some(0.0));
    tokio::time::sleep(REPORT_INTERVAL).await;
    reporter.report(Instant::now());
    assert_eq!(reporter.last_concurrency(&busy), Some(2.0));
    assert_eq!(
        reporter.last_concurrency(&idle),
        None,
        "forgotten by the previous report"
    );
    drop(held);
}

/// Every request is accounted for exactly once, poke included, while reports race the
/// requests and keep forgetting idle revisions.
#[test]
fn no_request_is_lost_while_idle_revisions_are_forgotten() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 20_000;
    let (reporter, mut rx) = reporter();
    let revs = [key("a"), key("b"), key("c")];
    let done = AtomicUsize::new(0);
    let mut reported = 0.0;
    let mut reports = 0;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (reporter, revs, done) = (&reporter, &revs, &done);
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    let guard = reporter.track(&revs[(t + i) % revs.len()]);
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                    drop(guard);
                }
                done.fetch_add(1, Ordering::Release);
            });
        }
        while done.load(Ordering::Acquire) < THREADS {
            if let Some(report) = reporter.report(Instant::now()) {
                reports += 1;
                reported += count(&report);
            }
        }
    });
    // Drain: each revision needs one idle window to be forgotten.
    while let Some(report) = reporter.report(Instant::now()) {
        reported += count(&report);
    }
    let pokes = drain(&mut rx);
    let poked: f64 = pokes.iter().map(count).sum();
    assert_eq!(poked + reported, (THREADS * PER_THREAD) as f64);
    assert!(reports > 0);

    fn count(batch: &WireStatMessages) -> f64 {
        batch
            .messages
            .iter()
            .map(|m| m.stat.as_ref().unwrap().request_count)
            .sum()
    }
}

// §10 check 45 (and the §6.3 example)
#[test]
fn the_poke_encodes_to_the_specs_36_bytes() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reporter = Arc::new(ConcurrencyReporter::new("act".to_owned(), tx));
    drop(reporter.track(&RevisionKey::new("ns", "rev")));
    let poke = rx.try_recv().unwrap().encode_to_vec();
    let want = [
        0x0a, 0x22, 0x0a, 0x02, 0x6e, 0x73, 0x12, 0x03, 0x72, 0x65, 0x76, 0x1a, 0x17, 0x0a, 0x03,
        0x61, 0x63, 0x74, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, 0x21, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f,
    ];
    assert_eq!(poke, want);
}

#[test]
fn the_public_types_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ConcurrencyReporter>();
    send_sync::<activator::reporter::InFlight>();
    send_sync::<AutoscalerLink>();
}

// ---------------------------------------------------------------------------------------
// A loopback autoscaler stat server (spec §6.4, the parts the activator can observe).

/// One binary frame as received.
#[derive(Debug)]
struct Frame {
    /// 1 for the first accepted connection, and so on.
    connection: usize,
    raw: Vec<u8>,
    decoded: WireStatMessages,
}

/// What a connection's upgrade request looked like.
#[derive(Debug, Clone)]
struct Upgrade {
    uri: String,
    subprotocol: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Whether new TCP connections are accepted (otherwise they wait in the backlog, so
    /// dials hang in the handshake).
    accepting: bool,
    /// Whether connections are read (which answers pings). When not, the server stops
    /// reading and sends a text frame every 50 ms instead.
    answering: bool,
}

#[derive(Debug, Clone, Copy)]
enum Kick {
    /// A close frame 1012 `Restarting`, as the autoscaler sends on shutdown.
    Restarting,
    /// The TCP connection just goes away.
    Abort,
}

struct Autoscaler {
    addr: SocketAddr,
    frames: mpsc::UnboundedReceiver<Frame>,
    upgrades: mpsc::UnboundedReceiver<Upgrade>,
    /// Connections upgraded so far.
    connections: watch::Receiver<usize>,
    /// Close frames received, by code.
    closes: mpsc::UnboundedReceiver<u16>,
    mode: watch::Sender<Mode>,
    kick: broadcast::Sender<Kick>,
}

impl Autoscaler {
    async fn start() -> Autoscaler {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (upgrades_tx, upgrades) = mpsc::unbounded_channel();
        let (closes_tx, closes) = mpsc::unbounded_channel();
        let (connections_tx, connections) = watch::channel(0);
        let (mode, mut mode_rx) = watch::channel(Mode {
            accepting: true,
            answering: true,
        });
        let (kick, _) = broadcast::channel(16);
        let kick_tx = kick.clone();
        tokio::spawn(async move {
            loop {
                if !mode_rx.borrow_and_update().accepting {
                    if mode_rx.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                let tcp = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap().0,
                    changed = mode_rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let connection = Connection {
                    frames: frames_tx.clone(),
                    upgrades: upgrades_tx.clone(),
                    closes: closes_tx.clone(),
                    connections: connections_tx.clone(),
                    mode: mode_rx.clone(),
                    kick: kick_tx.subscribe(),
                };
                tokio::spawn(connection.serve(tcp));
            }
        });
        Autoscaler {
            addr,
            frames,
            upgrades,
            connections,
            closes,
            mode,
            kick,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn set(&self, change: impl FnOnce(&mut Mode)) {
        self.mode.send_modify(change);
    }

    async fn frame(&mut self) -> Frame {
        within(ms(2000), self.frames.recv()).await.unwrap()
    }

    fn no_frames(&mut self) -> bool {
        self.frames.try_recv().is_err()
    }
}

struct Connection {
    frames: mpsc::UnboundedSender<Frame>,
    upgrades: mpsc::UnboundedSender<Upgrade>,
    closes: mpsc::UnboundedSender<u16>,
    connections: watch::Sender<usize>,
    mode: watch::Receiver<Mode>,
    kick: broadcast::Receiver<Kick>,
}

impl Connection {
    async fn serve(mut self, tcp: TcpStream) {
        let upgrades = self.upgrades.clone();
        #[expect(
            clippy::result_large_err,
            reason = "the signature is tungstenite's handshake callback"
        )]
        let record = move |request: &Request, response: Response| {
            let _ = upgrades.send(Upgrade {
                uri: request.uri().to_string(),
                subprotocol: request
                    .headers()
                    .get("sec-websocket-protocol")
                    .map(|v| v.to_str().unwrap().to_owned()),
            });
            Ok(response)
        };
        // Dials abandoned while the server was not accepting fail here.
        let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, record).await else {
            return;
        };
        let mut id = 0;
        self.connections.send_modify(|n| {
            *n += 1;
            id = *n;
        });
        loop {
            let answering = self.mode.borrow_and_update().answering;
            tokio::select! {
                kick = self.kick.recv() => {
                    if let Ok(Kick::Restarting) = kick {
                        let frame = CloseFrame { code: CloseCode::Restart, reason: "Restarting".into() };
                        let _ = ws.close(Some(frame)).await;
                    }
                    return;
                }
                _ = self.mode.changed() => {}
                message = ws.next(), if answering => match message {
                    Some(Ok(Message::Binary(raw))) => {
                        let decoded = WireStatMessages::decode(raw.clone()).unwrap();
                        let _ = self.frames.send(Frame { connection: id, raw: raw.to_vec(), decoded });
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let _ = self.closes.send(frame.map_or(0, |f| u16::from(f.code)));
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
                () = tokio::time::sleep(ms(50)), if !answering => {
                    if chatter(&mut ws).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A data frame the activator must read and ignore.
async fn chatter(
    ws: &mut WebSocketStream<TcpStream>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.send(Message::text("ignored")).await
}

async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("not done within {limit:?}"))
}

async fn wait_status(status: &mut watch::Receiver<bool>, want: bool, limit: Duration) {
    within(limit, status.wait_for(|s| *s == want))
        .await
        .expect("link gone");
}

/// Short enough for tests; the shapes are upstream's.
fn fast() -> LinkOptions {
    LinkOptions {
        handshake_timeout: ms(500),
        backoff: Backoff {
            initial: ms(10),
            factor: 1.3,
            jitter: 0.5,
            steps: 5,
        },
        ping_interval: ms(100),
        pong_timeout: ms(1000),
    }
}

// ---------------------------------------------------------------------------------------
// The link (spec §6.2, §6.3, §9).

// §10 checks 1, 21 and 45
#[tokio::test]
async fn a_first_request_reaches_the_autoscaler_at_once_as_one_binary_frame() {
    let mut autoscaler = Autoscaler::start().await;
    let (tx, rx) = mpsc::unbounded_channel();
    let link = AutoscalerLink::spawn(autoscaler.url(), rx, fast());
    wait_status(&mut link.status(), true, ms(2000)).await;
    assert!(link.is_connected());

    let upgrade = autoscaler.upgrades.recv().await.unwrap();
    assert_eq!(upgrade.uri, "/", "empty path ⇒ request-URI `/`");
    assert_eq!(upgrade.subprotocol, None);

    let reporter = Arc::new(ConcurrencyReporter::new(POD.to_owned(), tx));
    // Ticks far away: whatever arrives now is the poke.
    let _run = tokio::spawn(Arc::clone(&reporter).run(Duration::from_secs(3600)));
    let rev = key("real-name");
    let guard = reporter.track(&rev);
    let frame = within(ms(500), autoscaler.frame()).await;
    assert_eq!(frame.decoded, batch(vec![message(&rev, 1.0, 1.0)]));
    assert_activator_encoding(&frame.raw);
    drop(guard);
    link.shutdown().await;
}

// §10 checks 25 and 45
#[tokio::test]
async fn every_batch_is_one_frame_holding_all_revisions() {
    let mut autoscaler = Autoscaler::start().await;
    let (tx, rx) = mpsc::unbounded_channel();
    let link = AutoscalerLink::spawn(autoscaler.url(), rx, fast());
    wait_status(&mut link.status(), true, ms(2000)).await;

    let reporter = Arc::new(ConcurrencyReporter::new(POD.to_owned(), tx));
    let revs = [key("rev-a"), key("rev-b"), key("rev-c")];
    let _held: Vec<_> = revs.iter().map(|rev| reporter.track(rev)).collect();
    let _run = tokio::spawn(Arc::clone(&reporter).run(ms(200)));

    for rev in &revs {
        let frame = autoscaler.frame().await;
        assert_eq!(frame.decoded, batch(vec![message(rev, 1.0, 1.0)]));
        assert_activator_encoding(&frame.raw);
    }
    // Ticks: one frame per batch, each with every revision (held requests: concurrency 1).
    for tick in 0..3 {
        let frame = autoscaler.frame().await;
        assert_activator_encoding(&frame.raw);
        let names: Vec<&str> = frame
            .decoded
            .messages
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["rev-a", "rev-b", "rev-c"], "tick {tick}");
        for m in &frame.decoded.messages {
            let stat = m.stat.as_ref().unwrap();
            let concurrency = stat.average_concurrent_requests;
            if tick == 0 {
                // Discounted by the poke.
                assert!(concurrency < 0.1, "{concurrency}");
            } else {
                assert!((concurrency - 1.0).abs() < 1e-9, "{concurrency}");
            }
            assert_eq!(stat.request_count, 0.0);
        }
    }
    link.shutdown().await;
}

// §10 check 2
#[tokio::test]
async fn the_link_is_down_until_the_handshake_completes() {
    let autoscaler = Autoscaler::start().await;
    autoscaler.set(|m| m.accepting = false);
    let (_tx, rx) = mpsc::unbounded_channel();
    let link = AutoscalerLink::spawn(autoscaler.url(), rx, fast());
    let mut status = link.status();

    // Dials reach the backlog but never get an answer: handshake timeouts pass.
    tokio::time::sleep(fast().handshake_timeout * 2).await;
    assert!(!link.is_connected());
    assert!(!status.has_changed().unwrap());

    autoscaler.set(|m| m.accepting = true);
    wait_status(&mut status, true, ms(3000)).await;
    assert_eq!(link.disconnects(), 0, "failed dials are not disconnects");
    link.shutdown().await;
}

#[tokio::test]
async fn the_link_redials_after_the_server_drops_it() {
    let mut autoscaler = Autoscaler::start().await;
    let (tx, rx) = mpsc::unbounded_channel();
    let link = AutoscalerLink::spawn(autoscaler.url(), rx, fast());
    let mut status = link.status();
    wait_status(&mut status, true, ms(2000)).await;

    let rev = key("real-name");
    for (round, kick) in [Kick::Restarting, Kick::Abort].into_iter().enumerate() {
        let connection = round + 1;
        tx.send(batch(vec![message(&rev, 1.0, connection as f64)]))
            .unwrap();
        assert_eq!(autoscaler.frame().await.connection, connection);

        autoscaler.kick.send(kick).unwrap();
        wait_status(&mut status, false, ms(2000)).await;
        wait_status(&mut status, true, ms(2000)).await;
        assert_eq!(link.disconnects(), connection as u64, "{kick:?}");
        assert_eq!(*autoscaler.connections.borrow(), connection + 1);

        // Batches flow again, on the new connection.
        tx.send(batch(vec![message(&rev, 2.0, connection as f64)]))
            .unwrap();
        let frame = autoscaler.frame().await;
        assert_eq!(frame.connection, connection + 1);
        assert_eq!(
            frame.decoded,
            batch(vec![message(&rev, 2.0, connection as f64)])
        );
    }
    link.shutdown().await;
}

#[tokio::test]
async fn pongs_keep_the_link_up_and_their_absence_drops_it() {
    let mut autoscaler = Autoscaler::start().await;
    let (tx, rx) = mpsc::unbounded_channel();
    let options = fast();
    let link = AutoscalerLink::spawn(autoscaler.url(), rx, options.clone());
    let mut status = link.status();
    wait_status(&mut status, true, ms(2000)).await;

    // Answered pings extend the deadline: up for several pong timeouts on one connection.
    tokio::time::sleep(options.pong_timeout * 3).await;
    assert!(link.is_connected());
    assert!(!status.has_changed().unwrap());
    assert_eq!(*autoscaler.connections.borrow(), 1);

    // Pings go unanswered; data frames keep coming but do not count as pongs.
    let silenced = Instant::now();
    autoscaler.set(|m| m.answering = false);
    wait_status(&mut status, false, options.pong_timeout * 4).await;
    let after = silenced.elapsed();
    // The last pong came at most a ping interval before the silence.
    assert!(
        after + options.ping_interval + ms(50) >= options.pong_timeout,
        "dropped after only {after:?}"
    );
    assert_eq!(link.disconnects(), 1);

    // Redialled at once; with pongs answered again it stays.
    autoscaler.set(|m| m.answering = true);
    wait_status(&mut status, true, ms(2000)).await;
    assert!(*autoscaler.connections.borrow() >= 2);
    let rev = key("real-name");
    tx.send(batch(vec![message(&rev, 1.0, 1.0)])).unwrap();
    assert!(autoscaler.frame().await.connection >= 2);
    link.shutdown().await;
}

#[tokio::test]
async fn batches_while_down_are_dropped_not_queued() {
    let mut autoscaler = Autoscaler::start().await;
    let (tx, rx) = mpsc::unbounded_channel();
    let link = AutoscalerLink::spawn(autoscaler.url(), rx, fast());
    let mut status = link.status();
    wait_status(&mut status, true, ms(2000)).await;

    autoscaler.set(|m| m.accepting = false);
    autoscaler.kick.send(Kick::Abort).unwrap();
    wait_status(&mut status, false, ms(2000)).await;

    let rev = key("real-name");
    for count in 1..=3 {
        tx.send(batch(vec![message(&rev, 9.0, f64::from(count))]))
            .unwrap();
    }
    // Give the link the time to see them while it is down.
    tokio::time::sleep(ms(100)).await;

    autoscaler.set(|m| m.accepting = true);
    wait_status(&mut status, true, ms(3000)).await;
    let after = batch(vec![message(&rev, 1.0, 1.0)]);
    tx.send(after.clone()).unwrap();
    assert_eq!(autoscaler.frame().await.decoded, after);
    tokio::time::sleep(ms(200)).await;
    assert!(autoscaler.no_frames());
    link.shutdown().await;
}

#[tokio::test]
async fn batches_keep_their_order() {
    let mut autoscaler = Autoscaler::start().await;
    let (tx, rx) = mpsc::unbounded_channel();
    let link = AutoscalerLink::spawn(autoscaler.url(), rx, fast());
    wait_status(&mut link.status(), true, ms(2000)).await;

    let rev = key("real-name");
    for count in 1..=200 {
        tx.send(batch(vec![message(&rev, 1.0, f64::from(count))]))
            .unwrap();
    }
    for count in 1..=200 {
        let frame = autoscaler.frame().await;
        assert_eq!(
            frame.decoded.messages[0]
                .stat
                .as_ref()
                .unwrap()
                .request_count,
            f64::from(count)
        );
    }
    link.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_socket_and_stops_dialling() {
    let mut autoscaler = Autoscaler::start().await;
    let (tx, rx) = mpsc::unbounded_channel();
    let link = AutoscalerLink::spawn(autoscaler.url(), rx, fast());
    let mut status = link.status();
    wait_status(&mut status, true, ms(2000)).await;

    within(ms(2000), link.shutdown()).await;
    assert_eq!(within(ms(2000), autoscaler.closes.recv()).await, Some(1000));
    assert!(!*status.borrow_and_update());
    tokio::time::sleep(ms(300)).await;
    assert_eq!(*autoscaler.connections.borrow(), 1, "no redial");
    assert!(
        tx.send(batch(Vec::new())).is_err(),
        "the batch channel is closed"
    );
}

#[tokio::test]
async fn the_link_outlives_its_senders() {
    let autoscaler = Autoscaler::start().await;
    let (tx, rx) = mpsc::unbounded_channel();
    let link = AutoscalerLink::spawn(autoscaler.url(), rx, fast());
    drop(tx);
    let mut status = link.status();
    wait_status(&mut status, true, ms(2000)).await;
    // Still the readiness gate: pings keep it up past the pong timeout.
    tokio::time::sleep(fast().pong_timeout * 2).await;
    assert!(link.is_connected());
    assert_eq!(*autoscaler.connections.borrow(), 1);
    link.shutdown().await;
}
