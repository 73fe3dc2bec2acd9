//! The stand-in autoscaler: a **test tool** for the demo, not a port of
//! upstream's autoscaler, and kept small on purpose.
//!
//! It takes its inputs the way upstream's does: the activator's
//! `WireStatMessages` on a websocket (the poke for a revision's first request,
//! then a batch every second), and a scrape of every pod's queue-proxy
//! `:9090/metrics` protobuf `Stat` each second. Its rule is simple:
//!
//! - at zero pods, any demand reported by the activator starts one pod;
//! - with pods, it wants `ceil(concurrency / target_per_pod)` pods (at most
//!   `max_pods`), and only ever adds pods while there is traffic;
//! - after `scale_to_zero_after` without any request, it scales to zero.
//!
//! Every tick is kept as a [`Sample`] for the demo's report.

use futures_util::StreamExt;
use http::StatusCode;
use metrics_proto::{Message, Stat, WireStatMessages};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client;
use crate::pod::PodSet;

/// The stand-in's scaling rule.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Concurrency one pod should carry.
    pub target_per_pod: f64,
    pub max_pods: usize,
    pub scale_to_zero_after: Duration,
    /// How often it scrapes and decides (upstream: every second).
    pub tick: Duration,
}

/// What the autoscaler saw in one tick, summed over pods.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Since the demo started.
    pub at: Duration,
    pub pods: usize,
    /// From the activator's websocket stats.
    pub activator_concurrency: f64,
    pub activator_rps: f64,
    /// From the queue-proxies' scraped stats: all requests, and those that
    /// came through the activator.
    pub concurrency: f64,
    pub proxied_concurrency: f64,
    pub rps: f64,
    pub proxied_rps: f64,
}

/// A change of scale: when it was decided, when it was done, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleEvent {
    pub decided: Duration,
    pub done: Duration,
    pub from: usize,
    pub to: usize,
    pub why: &'static str,
}

/// Everything the autoscaler saw and did.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// When the first websocket frame (the activator's poke) arrived.
    pub first_frame: Option<Duration>,
    pub samples: Vec<Sample>,
    pub events: Vec<ScaleEvent>,
    /// Scrapes or pod starts that failed.
    pub failures: Vec<String>,
}

/// A bound stat server, not yet running.
pub struct Autoscaler {
    listener: TcpListener,
}

/// A running autoscaler.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Log>,
    /// The queue-proxies' serving addresses, as the pods come and go.
    pub pods: watch::Receiver<Vec<SocketAddr>>,
}

impl Autoscaler {
    pub async fn bind() -> std::io::Result<Autoscaler> {
        Ok(Autoscaler {
            listener: TcpListener::bind("127.0.0.1:0").await?,
        })
    }

    /// The activator's `ACTIVATOR_AUTOSCALER_URL`.
    pub fn url(&self) -> String {
        let addr = self.listener.local_addr().expect("bound listener");
        format!("ws://{addr}")
    }

    /// Runs until [`Running::stop`]; `epoch` is the demo's time zero, and
    /// `progress` prints each tick on stderr.
    pub fn spawn(self, pods: PodSet, policy: Policy, epoch: Instant, progress: bool) -> Running {
        let (frames_tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(receive_stats(self.listener, frames_tx));
        let (stop, stopped) = oneshot::channel();
        let (addrs_tx, addrs) = watch::channel(Vec::new());
        let scaler = Scaler {
            pods,
            policy,
            epoch,
            progress,
            addrs: addrs_tx,
            log: Log::default(),
        };
        Running {
            stop,
            task: tokio::spawn(scaler.run(frames, stopped)),
            pods: addrs,
        }
    }
}

impl Running {
    /// Stops the autoscaler and its pods, and returns what it saw.
    pub async fn stop(self) -> Log {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// Accepts the activator's websocket and forwards every decoded frame.
async fn receive_stats(listener: TcpListener, frames: mpsc::UnboundedSender<WireStatMessages>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let frames = frames.clone();
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Binary(data) = msg
                    && let Ok(frame) = WireStatMessages::decode(data)
                    && frames.send(frame).is_err()
                {
                    return;
                }
            }
        });
    }
}

struct Scaler {
    pods: PodSet,
    policy: Policy,
    epoch: Instant,
    progress: bool,
    addrs: watch::Sender<Vec<SocketAddr>>,
    log: Log,
}

impl Scaler {
    async fn run(
        mut self,
        mut frames: mpsc::UnboundedReceiver<WireStatMessages>,
        mut stopped: oneshot::Receiver<()>,
    ) -> Log {
        let mut tick = tokio::time::interval(self.policy.tick);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Activator stats received since the last tick.
        let (mut act_concurrency, mut act_requests) = (0.0_f64, 0.0_f64);
        let mut idle_since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some(frame) = frames.recv() => {
                    self.log.first_frame.get_or_insert_with(|| self.epoch.elapsed());
                    for stat in frame.messages.iter().filter_map(|m| m.stat.as_ref()) {
                        act_concurrency = act_concurrency.max(stat.average_concurrent_requests);
                        act_requests += stat.request_count;
                    }
                    if self.pods.is_empty() && (act_concurrency > 0.0 || act_requests > 0.0) {
                        idle_since = None;
                        self.scale(1, "activator poke at zero").await;
                    }
                }
                _ = tick.tick() => {
                    let sample = self.sample(act_concurrency, act_requests).await;
                    (act_concurrency, act_requests) = (0.0, 0.0);
                    if self.progress {
                        eprintln!("{}", progress_line(&sample));
                    }
                    let busy = sample.rps > 0.0
                        || sample.activator_rps > 0.0
                        || sample.concurrency > 0.01
                        || sample.activator_concurrency > 0.01;
                    let wanted = (sample.concurrency.max(sample.activator_concurrency)
                        / self.policy.target_per_pod)
                        .ceil()
                        .clamp(1.0, self.policy.max_pods as f64) as usize;
                    self.log.samples.push(sample);
                    if busy {
                        idle_since = None;
                        if !self.pods.is_empty() && wanted > self.pods.len() {
                            self.scale(wanted, "concurrency above target").await;
                        }
                    } else if !self.pods.is_empty() {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= self.policy.scale_to_zero_after {
                            idle_since = None;
                            self.scale(0, "idle").await;
                        }
                    }
                }
            }
        }
        self.scale(0, "demo over").await;
        self.log
    }

    async fn scale(&mut self, to: usize, why: &'static str) {
        let from = self.pods.len();
        if from == to {
            return;
        }
        let decided = self.epoch.elapsed();
        if self.progress {
            eprintln!("  autoscaler: {from} -> {to} pods ({why})");
        }
        if let Err(e) = self.pods.scale_to(to).await {
            self.fail(format!("scaling {from} -> {to}: {e}"));
        }
        let _ = self
            .addrs
            .send(self.pods.pods().iter().map(|p| p.serving).collect());
        self.log.events.push(ScaleEvent {
            decided,
            done: self.epoch.elapsed(),
            from,
            to: self.pods.len(),
            why,
        });
    }

    async fn sample(&mut self, act_concurrency: f64, act_requests: f64) -> Sample {
        let mut sample = Sample {
            at: self.epoch.elapsed(),
            pods: self.pods.len(),
            activator_concurrency: act_concurrency,
            activator_rps: act_requests / self.policy.tick.as_secs_f64(),
            ..Sample::default()
        };
        let metrics: Vec<SocketAddr> = self.pods.pods().iter().map(|p| p.metrics).collect();
        for addr in metrics {
            match scrape(addr).await {
                Ok(stat) => {
                    sample.concurrency += stat.average_concurrent_requests;
                    sample.proxied_concurrency += stat.average_proxied_concurrent_requests;
                    sample.rps += stat.request_count;
                    sample.proxied_rps += stat.proxied_request_count;
                }
                Err(e) => self.fail(format!("scrape {addr}: {e}")),
            }
        }
        sample
    }

    fn fail(&mut self, what: String) {
        if self.progress {
            eprintln!("  autoscaler: {what}");
        }
        self.log.failures.push(what);
    }
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("status {0}")]
    Status(StatusCode),
    #[error("not a Stat: {0}")]
    Decode(String),
}

/// One scrape as upstream's `httpScrapeClient` does it: GET `/metrics` with
/// `Accept: application/protobuf`, a 200 and a protobuf `Stat`.
pub async fn scrape(metrics: SocketAddr) -> Result<Stat, ScrapeError> {
    let mut req = client::request(
        &metrics.to_string(),
        &[(
            "accept",
            queue_proxy::autoscaler_metrics::PROTOBUF_MIME_TYPE,
        )],
    );
    *req.uri_mut() = http::Uri::from_static("/metrics");
    let (status, body) = client::fetch(metrics, req).await?;
    if status != StatusCode::OK {
        return Err(ScrapeError::Status(status));
    }
    Stat::decode(body).map_err(|e| ScrapeError::Decode(e.to_string()))
}

fn progress_line(s: &Sample) -> String {
    format!(
        "  t={:>5.1}s  pods {}  activator: conc {:>5.2} rps {:>6.1}  queue-proxies: conc {:>5.2} (proxied {:>5.2}) rps {:>6.1} (proxied {:>6.1})",
        s.at.as_secs_f64(),
        s.pods,
        s.activator_concurrency,
        s.activator_rps,
        s.concurrency,
        s.proxied_concurrency,
        s.rps,
        s.proxied_rps
    )
}
