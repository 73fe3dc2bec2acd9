//! The websocket to the autoscaler that stats batches travel on (spec §6.2, §9).
//!
//! Mirrors knative.dev/pkg's durable sending connection (`websocket/connection.go`) as
//! `cmd/activator/main.go` uses it, together with `pkg/activator/stat_reporter.go`, which
//! writes each batch as one binary frame:
//!
//! - dial `ws://…` (plain HTTP/1.1 upgrade, no subprotocol) with a 3 s handshake timeout;
//!   failed dials back off exponentially (100 ms ×1.3, jitter 0.5, 20 attempts), then the
//!   schedule starts over, forever;
//! - once up, ping every 10 s / 3; reads have a 10 s deadline that only a pong extends, so a
//!   peer that stops answering is dropped and redialled;
//! - data frames from the autoscaler are read and discarded;
//! - a batch that arrives while not connected is dropped and logged: no buffering, no retry.
//!
//! Whether the socket is up is published on a [`watch`] channel: the activator is not
//! ready (its health check fails) while it is down.
//!
//! # Why one task
//!
//! Upstream writes every batch from its own goroutine, so batches may overtake each other.
//! Here one task owns the socket and writes batches in the order they were produced, which
//! the autoscaler cannot tell from a lucky upstream schedule. The same task reads, pings and
//! watches the deadline, so no lock guards the socket. A write may not outlast the read
//! deadline: a peer that stops reading is dropped like one that stops answering pings.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use metrics_proto::{Message as _, WireStatMessages};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The retry schedule for dialling (upstream's `wait.Backoff`). Within one round the first
/// attempt is immediate and attempt `n + 1` waits `initial × factor^(n-1)` plus up to
/// `jitter` times that; after `steps` attempts the round starts over.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f64,
    pub jitter: f64,
    /// Attempts per round; 0 counts as 1 (upstream would spin without ever dialling).
    pub steps: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            factor: 1.3,
            jitter: 0.5,
            steps: 20,
        }
    }
}

impl Backoff {
    /// The waits between the attempts of one round (`steps − 1` of them), jittered.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + '_ {
        let mut base = self.initial;
        (1..self.steps).map(move |_| {
            let delay = scale(base, 1.0 + fastrand::f64() * self.jitter);
            base = scale(base, self.factor);
            delay
        })
    }
}

/// `duration × factor`, saturating instead of panicking on absurd settings.
fn scale(duration: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// Timings of the link; the defaults are upstream's. Tests shorten them.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkOptions {
    /// TCP connect plus websocket upgrade (gorilla's `HandshakeTimeout`).
    pub handshake_timeout: Duration,
    pub backoff: Backoff,
    /// How often a ping is sent while connected (upstream: a third of the pong timeout).
    pub ping_interval: Duration,
    /// The read deadline, set on connect and extended by every pong.
    pub pong_timeout: Duration,
}

impl Default for LinkOptions {
    fn default() -> Self {
        let pong_timeout = Duration::from_secs(10);
        Self {
            handshake_timeout: Duration::from_secs(3),
            backoff: Backoff::default(),
            ping_interval: pong_timeout / 3,
            pong_timeout,
        }
    }
}

/// Why a dial failed or a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("websocket handshake failed: {0}")]
    Handshake(#[source] tungstenite::Error),
    #[error("websocket handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("no pong from the autoscaler within {0:?}")]
    PongTimeout(Duration),
    #[error("writing a frame did not complete before the read deadline")]
    WriteTimeout,
    #[error("the autoscaler closed the connection ({0})")]
    Closed(String),
    #[error("reading from the websocket failed: {0}")]
    Read(#[source] tungstenite::Error),
    #[error("writing to the websocket failed: {0}")]
    Write(#[source] tungstenite::Error),
}

/// A running link to the autoscaler; see the module docs. Dropping it (or
/// [`shutdown`](Self::shutdown)) closes the socket and stops redialling.
#[derive(Debug)]
pub struct AutoscalerLink {
    status: watch::Receiver<bool>,
    disconnects: Arc<AtomicU64>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl AutoscalerLink {
    /// Starts dialling `url` (see [`autoscaler_url`](super::autoscaler_url)) and sends every
    /// batch received on `batches` while connected. Must be called within a tokio runtime.
    pub fn spawn(
        url: String,
        batches: mpsc::UnboundedReceiver<WireStatMessages>,
        options: LinkOptions,
    ) -> Self {
        let (status_tx, status) = watch::channel(false);
        let disconnects = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(
            Task {
                url,
                options,
                batches,
                batches_open: true,
                status: status_tx,
                disconnects: Arc::clone(&disconnects),
            }
            .run(stopped),
        );
        Self {
            status,
            disconnects,
            stop,
            task,
        }
    }

    /// Whether the socket is up right now (the readiness gate).
    pub fn is_connected(&self) -> bool {
        *self.status.borrow()
    }

    /// Follows [`is_connected`](Self::is_connected): `true` on every connect, `false` on
    /// every disconnect.
    pub fn status(&self) -> watch::Receiver<bool> {
        self.status.clone()
    }

    /// Established connections lost so far (`kn.activator.stats.conn.errors`).
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    /// The counter behind [`disconnects`](Self::disconnects), for readers that
    /// outlive the link's handle (the metrics scrape).
    pub fn disconnect_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.disconnects)
    }

    /// Closes the socket (with a close frame, best effort) and waits for the link to stop.
    pub async fn shutdown(self) {
        // An error means the task is already gone.
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the autoscaler link task failed");
        }
    }
}

/// The link's state, owned by its task.
struct Task {
    url: String,
    options: LinkOptions,
    batches: mpsc::UnboundedReceiver<WireStatMessages>,
    /// Cleared once every sender is gone; the socket stays up (it gates readiness).
    batches_open: bool,
    status: watch::Sender<bool>,
    disconnects: Arc<AtomicU64>,
}

impl Task {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        while let Some(socket) = self.dial(&mut stop).await {
            tracing::info!(url = %self.url, "connected to the autoscaler");
            self.status.send_replace(true);
            let ended = self.serve(socket, &mut stop).await;
            self.status.send_replace(false);
            match ended {
                Ok(()) => return,
                Err(error) => {
                    self.disconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(url = %self.url, %error,
                        "connection to the autoscaler broke down, reconnecting");
                }
            }
        }
    }

    /// Dials until connected, dropping the batches that arrive meanwhile. `None` once
    /// stopped.
    async fn dial(&mut self, stop: &mut oneshot::Receiver<()>) -> Option<Socket> {
        let connecting = connect_forever(&self.url, &self.options);
        tokio::pin!(connecting);
        loop {
            tokio::select! {
                biased;
                _ = &mut *stop => return None,
                // Before the dial: a batch produced while down is dropped even if the
                // connection completes in the same instant.
                batch = self.batches.recv(), if self.batches_open => match batch {
                    Some(batch) => discard(&batch),
                    None => self.batches_open = false,
                },
                socket = &mut connecting => return Some(socket),
            }
        }
    }

    /// Runs one connection until it fails (`Err`) or the link is stopped (`Ok`).
    async fn serve(
        &mut self,
        mut socket: Socket,
        stop: &mut oneshot::Receiver<()>,
    ) -> Result<(), LinkError> {
        let pong_timeout = self.options.pong_timeout;
        let read_deadline = tokio::time::sleep(pong_timeout);
        tokio::pin!(read_deadline);
        let period = self.options.ping_interval;
        let mut pings = tokio::time::interval_at(Instant::now() + period, period);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Unbiased: no stream of frames or batches can starve the others or the deadline.
        loop {
            tokio::select! {
                _ = &mut *stop => {
                    close(&mut socket, self.options.handshake_timeout).await;
                    return Ok(());
                }
                () = &mut read_deadline => return Err(LinkError::PongTimeout(pong_timeout)),
                frame = socket.next() => match frame {
                    Some(Ok(Message::Pong(_))) => {
                        read_deadline.as_mut().reset(Instant::now() + pong_timeout);
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Err(LinkError::Closed(describe(frame.as_ref())));
                    }
                    // Data frames carry nothing for us; tungstenite answers pings itself.
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(LinkError::Read(error)),
                    None => return Err(LinkError::Closed("connection ended".to_owned())),
                },
                _ = pings.tick() => {
                    write(&mut socket, Message::Ping(Bytes::new()), read_deadline.deadline()).await?;
                }
                batch = self.batches.recv(), if self.batches_open => match batch {
                    Some(batch) => {
                        let frame = Message::Binary(Bytes::from(batch.encode_to_vec()));
                        write(&mut socket, frame, read_deadline.deadline()).await?;
                    }
                    None => self.batches_open = false,
                },
            }
        }
    }
}

/// Dials with back-off until a connection is established, round after round.
async fn connect_forever(url: &str, options: &LinkOptions) -> Socket {
    loop {
        let mut delays = options.backoff.delays();
        loop {
            tracing::info!(url, "connecting to the autoscaler");
            match connect(url, options.handshake_timeout).await {
                Ok(socket) => return socket,
                Err(error) => tracing::error!(url, %error, "could not connect to the autoscaler"),
            }
            match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => break,
            }
        }
        tracing::error!(
            url,
            attempts = options.backoff.steps.max(1),
            "giving up this round of connecting to the autoscaler; starting over"
        );
    }
}

async fn connect(url: &str, handshake_timeout: Duration) -> Result<Socket, LinkError> {
    // Go's dialer disables Nagle too, so small frames leave at once.
    let handshake = tokio_tungstenite::connect_async_with_config(url, None, true);
    match tokio::time::timeout(handshake_timeout, handshake).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(error)) => Err(LinkError::Handshake(error)),
        Err(_elapsed) => Err(LinkError::HandshakeTimeout(handshake_timeout)),
    }
}

async fn write(socket: &mut Socket, frame: Message, deadline: Instant) -> Result<(), LinkError> {
    match tokio::time::timeout_at(deadline, socket.send(frame)).await {
        Ok(result) => result.map_err(LinkError::Write),
        Err(_elapsed) => Err(LinkError::WriteTimeout),
    }
}

/// Sends a normal close frame, giving up after `limit`; the socket is dropped either way.
async fn close(socket: &mut Socket, limit: Duration) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    if let Ok(Err(error)) = tokio::time::timeout(limit, socket.close(Some(frame))).await {
        tracing::debug!(%error, "closing the autoscaler websocket failed");
    }
}

fn discard(batch: &WireStatMessages) {
    tracing::error!(
        stat_message_count = batch.messages.len(),
        "autoscaler is not reachable from the activator; stats were not sent"
    );
}

fn describe(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(frame) => format!("{} {}", u16::from(frame.code), frame.reason),
        None => "no close frame".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_upstreams() {
        let options = LinkOptions::default();
        assert_eq!(options.handshake_timeout, Duration::from_secs(3));
        assert_eq!(options.pong_timeout, Duration::from_secs(10));
        assert_eq!(options.ping_interval, Duration::from_nanos(3_333_333_333));
        assert_eq!(
            options.backoff,
            Backoff {
                initial: Duration::from_millis(100),
                factor: 1.3,
                jitter: 0.5,
                steps: 20,
            }
        );
    }

    #[test]
    fn delays_grow_by_the_factor_within_the_jitter() {
        let backoff = Backoff::default();
        let delays: Vec<Duration> = backoff.delays().collect();
        assert_eq!(delays.len(), 19);
        let mut base = 0.1;
        for delay in delays {
            let seconds = delay.as_secs_f64();
            assert!(
                seconds >= base * (1.0 - 1e-9) && seconds <= base * 1.5 * (1.0 + 1e-9),
                "{seconds} outside [{base}, {}]",
                base * 1.5
            );
            base *= 1.3;
        }
    }

    #[test]
    fn without_jitter_the_schedule_is_exact_and_a_zero_step_round_still_dials_once() {
        let backoff = Backoff {
            initial: Duration::from_millis(10),
            factor: 2.0,
            jitter: 0.0,
            steps: 4,
        };
        let delays: Vec<Duration> = backoff.delays().collect();
        assert_eq!(
            delays,
            [10, 20, 40].map(Duration::from_millis).to_vec(),
            "three waits between four attempts"
        );
        let none = Backoff {
            steps: 0,
            ..backoff
        };
        assert_eq!(none.delays().count(), 0);
    }

    #[test]
    fn absurd_factors_saturate() {
        assert_eq!(scale(Duration::from_secs(1), f64::INFINITY), Duration::MAX);
    }
}
