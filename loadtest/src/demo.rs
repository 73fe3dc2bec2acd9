//! The one-command demo: everything on loopback, in one process.
//!
//! 1. The revision has no pod. A burst of requests reaches the activator,
//!    which holds them and pokes the stand-in autoscaler over its websocket.
//! 2. The autoscaler starts the app (after its start-up delay) and a
//!    queue-proxy, waits for the queue-proxy's readiness, and publishes the
//!    pod; the activator releases the held requests (the cold start).
//! 3. Steady traffic: clients through the activator, and one straight at a
//!    queue-proxy (as the mesh would once the activator leaves the path). The
//!    autoscaler scrapes each queue-proxy's `:9090` every second and may add
//!    a pod.
//! 4. A burst straight at one queue-proxy, past its containerConcurrency and
//!    breaker queue: those requests get the breaker's 503.
//! 5. Idle: nothing is sent and the autoscaler scales to zero.
//!
//! [`run`] returns a [`DemoReport`]; its `Display` is what the demo prints.

use activator::config::Config;
use activator::revision::RevisionKey;
use activator::server::ActivatorServer;
use activator::source::static_file::StaticFileSource;
use http::StatusCode;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::autoscaler::{self, Autoscaler, Policy};
use crate::client::{self, Conn};
use crate::pod::{PodSet, PodSpec};
use crate::summary::percentile_ms;

const NAMESPACE: &str = "default";
const REVISION: &str = "hello-00001";
const HOST: &str = "hello.default.example.com";

/// The demo's knobs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub container_concurrency: u32,
    pub app_startup: Duration,
    pub app_work: Duration,
    /// Requests sent at once at scale zero.
    pub cold_requests: usize,
    pub steady: Duration,
    /// Clients looping through the activator in the steady phase.
    pub steady_clients: usize,
    /// Clients looping straight at a queue-proxy in the steady phase.
    pub direct_clients: usize,
    /// Requests sent at once straight at a queue-proxy after the steady phase.
    pub direct_burst: usize,
    pub policy: Policy,
    /// Print phases and each autoscaler tick on stderr.
    pub progress: bool,
}

impl DemoConfig {
    /// What `loadtest demo` runs (about 15 s).
    pub fn standard() -> Self {
        DemoConfig {
            container_concurrency: 2,
            app_startup: Duration::from_millis(500),
            app_work: Duration::from_millis(10),
            cold_requests: 20,
            steady: Duration::from_secs(6),
            steady_clients: 3,
            direct_clients: 1,
            direct_burst: 60,
            policy: Policy {
                target_per_pod: 1.4, // CC 2 at upstream's 70 % target utilisation
                max_pods: 2,
                scale_to_zero_after: Duration::from_secs(3),
                tick: Duration::from_secs(1),
            },
            progress: true,
        }
    }

    /// A short run for tests (about 5 s).
    pub fn quick() -> Self {
        let mut c = Self::standard();
        c.app_startup = Duration::from_millis(200);
        c.steady = Duration::from_secs(2);
        c.policy.scale_to_zero_after = Duration::from_secs(1);
        c.progress = false;
        c
    }

    /// Requests a queue-proxy admits at once: CC in flight plus upstream's
    /// breaker queue of 10 x CC.
    pub fn breaker_room(&self) -> usize {
        11 * self.container_concurrency as usize
    }
}

/// Which part of the demo a request belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    ColdStart,
    SteadyViaActivator,
    SteadyDirect,
    DirectBurst,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::ColdStart => "cold start (activator)",
            Phase::SteadyViaActivator => "steady, via activator",
            Phase::SteadyDirect => "steady, direct to queue-proxy",
            Phase::DirectBurst => "burst past CC, direct",
        })
    }
}

/// What happened, for printing and for tests.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub config: DemoConfig,
    /// How long each held request of the cold start took, sorted.
    pub cold_waits: Vec<Duration>,
    /// When the cold burst was sent, from the demo's start.
    pub cold_sent: Duration,
    /// Responses by phase and status.
    pub statuses: BTreeMap<(Phase, u16), usize>,
    /// Requests that got no response, by phase, and the first such error.
    pub transport_errors: BTreeMap<Phase, usize>,
    pub first_transport_error: Option<String>,
    pub autoscaler: autoscaler::Log,
}

impl DemoReport {
    /// 503s from the queue-proxy's breaker in the burst.
    pub fn breaker_503s(&self) -> usize {
        self.count(Phase::DirectBurst, 503)
    }

    pub fn count(&self, phase: Phase, status: u16) -> usize {
        self.statuses.get(&(phase, status)).copied().unwrap_or(0)
    }

    /// Anything but a 200 (or a 503 in the burst), requests without a
    /// response, and the autoscaler's failed scrapes or pod starts.
    pub fn errors(&self) -> usize {
        let bad: usize = self
            .statuses
            .iter()
            .filter(|((phase, status), _)| {
                !(*status == 200 || (*phase == Phase::DirectBurst && *status == 503))
            })
            .map(|(_, n)| n)
            .sum();
        bad + self.transport_errors.values().sum::<usize>() + self.autoscaler.failures.len()
    }

    /// Whether pods were started from zero while requests were held.
    pub fn cold_started(&self) -> bool {
        !self.cold_waits.is_empty()
            && self
                .autoscaler
                .events
                .first()
                .is_some_and(|e| e.from == 0 && e.to > 0)
    }
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("binding the stand-in autoscaler: {0}")]
    Autoscaler(#[source] std::io::Error),
    #[error("activator config: {0}")]
    ActivatorConfig(String),
    #[error("activator bind: {0}")]
    ActivatorBind(String),
    #[error("the activator was not ready within 10 s")]
    ActivatorNotReady,
    #[error("no pod came up within 30 s of the cold burst")]
    NoPod,
}

/// Runs the demo.
pub async fn run(config: DemoConfig) -> Result<DemoReport, DemoError> {
    let epoch = Instant::now();
    let progress = config.progress;
    let say = |s: String| {
        if progress {
            eprintln!("{s}");
        }
    };
    let key = RevisionKey::new(NAMESPACE, REVISION);
    let spec = PodSpec {
        key: key.clone(),
        container_concurrency: config.container_concurrency,
        app_startup: config.app_startup,
        app_work: config.app_work,
    };

    let stand_in = Autoscaler::bind().await.map_err(DemoError::Autoscaler)?;
    let autoscaler_url = stand_in.url();
    let source = Arc::new(StaticFileSource::from_snapshot(spec.snapshot(vec![])));
    let pods = PodSet::new(spec, source.clone());

    let env: HashMap<String, String> = [
        ("POD_NAME", "activator-demo"),
        ("POD_IP", "127.0.0.1"),
        ("SYSTEM_NAMESPACE", "knative-serving"),
        ("ACTIVATOR_HTTP_PORT", "0"),
        ("ACTIVATOR_H2C_PORT", "0"),
        ("ACTIVATOR_DRAIN_TIMEOUT_MS", "0"),
        ("ACTIVATOR_AUTOSCALER_URL", autoscaler_url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let activator_config =
        Config::from_env(&env, None).map_err(|e| DemoError::ActivatorConfig(e.to_string()))?;
    let server = ActivatorServer::bind(activator_config, source)
        .map_err(|e| DemoError::ActivatorBind(e.to_string()))?;
    let activator = SocketAddr::from(([127, 0, 0, 1], server.http_addr().port()));
    let (stop_activator, activator_stopped) = oneshot::channel::<()>();
    let activator_task = tokio::spawn(server.run(async move {
        let _ = activator_stopped.await;
    }));
    let running = stand_in.spawn(pods, config.policy.clone(), epoch, progress);
    say(format!(
        "activator http://{activator}, stand-in autoscaler {autoscaler_url}, revision {key} (CC={}, no pods)",
        config.container_concurrency
    ));

    // Ready, as kubelet sees it, once its websocket to the autoscaler is up.
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let probe = client::request("activator", &[("user-agent", "kube-probe/1.30")]);
            if matches!(client::get(activator, probe).await, Ok(StatusCode::OK)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    if ready.await.is_err() {
        let _ = stop_activator.send(());
        running.stop().await;
        return Err(DemoError::ActivatorNotReady);
    }

    let mut tally = Tally::default();
    let mut pods = running.pods.clone();

    say(format!(
        "[1/4] cold start: {} requests at scale zero, held by the activator",
        config.cold_requests
    ));
    let cold_sent = epoch.elapsed();
    let held: Vec<_> = (0..config.cold_requests)
        .map(|_| {
            tokio::spawn(async move {
                let started = Instant::now();
                let outcome = client::get(activator, via_activator()).await;
                (outcome, started.elapsed())
            })
        })
        .collect();
    let mut cold_waits = Vec::new();
    for h in held {
        if let Ok((outcome, waited)) = h.await {
            tally.add(Phase::ColdStart, outcome);
            cold_waits.push(waited);
        }
    }
    cold_waits.sort();
    let first_pod = tokio::time::timeout(Duration::from_secs(30), pods.wait_for(|p| !p.is_empty()))
        .await
        .ok()
        .and_then(|r| r.ok().map(|p| p[0]));
    let Some(first_pod) = first_pod else {
        let _ = stop_activator.send(());
        running.stop().await;
        return Err(DemoError::NoPod);
    };

    say(format!(
        "[2/4] steady for {:?}: {} clients through the activator, {} straight at a queue-proxy",
        config.steady, config.steady_clients, config.direct_clients
    ));
    let until = Instant::now() + config.steady;
    let clients: Vec<_> = (0..config.steady_clients)
        .map(|_| (Phase::SteadyViaActivator, activator))
        .chain((0..config.direct_clients).map(|_| (Phase::SteadyDirect, first_pod)))
        .map(|(phase, addr)| {
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let mut got = Vec::new();
                while Instant::now() < until {
                    let req = match phase {
                        Phase::SteadyViaActivator => via_activator(),
                        _ => client::request(HOST, &[]),
                    };
                    got.push(conn.send(req).await);
                }
                (phase, got)
            })
        })
        .collect();
    for c in clients {
        if let Ok((phase, got)) = c.await {
            for outcome in got {
                tally.add(phase, outcome);
            }
        }
    }

    say(format!(
        "[3/4] burst: {} requests at once straight at one queue-proxy (CC={}: {} may run or wait)",
        config.direct_burst,
        config.container_concurrency,
        config.breaker_room()
    ));
    let burst: Vec<_> = (0..config.direct_burst)
        .map(|_| tokio::spawn(client::get(first_pod, client::request(HOST, &[]))))
        .collect();
    for b in burst {
        if let Ok(outcome) = b.await {
            tally.add(Phase::DirectBurst, outcome);
        }
    }

    let idle_limit = config.policy.scale_to_zero_after + 4 * config.policy.tick;
    say(format!(
        "[4/4] idle: nothing sent; the autoscaler scales to zero after {:?}",
        config.policy.scale_to_zero_after
    ));
    let _ = tokio::time::timeout(idle_limit, pods.wait_for(|p| p.is_empty())).await;
    // One more tick, so the report shows a sample at zero.
    tokio::time::sleep(config.policy.tick).await;

    let log = running.stop().await;
    let _ = stop_activator.send(());
    let _ = activator_task.await;
    Ok(DemoReport {
        config,
        cold_waits,
        cold_sent,
        statuses: tally.statuses,
        transport_errors: tally.transport_errors,
        first_transport_error: tally.first_error,
        autoscaler: log,
    })
}

/// A request for the revision, addressed the way the ingress addresses the
/// activator.
fn via_activator() -> http::Request<http_body_util::Full<bytes::Bytes>> {
    client::request(
        HOST,
        &[
            ("knative-serving-namespace", NAMESPACE),
            ("knative-serving-revision", REVISION),
        ],
    )
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<(Phase, u16), usize>,
    transport_errors: BTreeMap<Phase, usize>,
    first_error: Option<String>,
}

impl Tally {
    fn add(&mut self, phase: Phase, outcome: Result<StatusCode, client::ClientError>) {
        match outcome {
            Ok(status) => *self.statuses.entry((phase, status.as_u16())).or_default() += 1,
            Err(e) => {
                *self.transport_errors.entry(phase).or_default() += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "\n== Cold start")?;
        if let Some(first) = self.autoscaler.first_frame {
            writeln!(
                f,
                "  the activator's poke reached the autoscaler {:.1} ms after the burst",
                ms(first.saturating_sub(self.cold_sent))
            )?;
        }
        if let Some(e) = self.autoscaler.events.first() {
            writeln!(
                f,
                "  the first pod was ready {:.0} ms after the burst (app start-up {} ms)",
                ms(e.done.saturating_sub(self.cold_sent)),
                c.app_startup.as_millis()
            )?;
        }
        writeln!(
            f,
            "  {} held requests waited p50 {:.0} ms, p99 {:.0} ms",
            self.cold_waits.len(),
            percentile_ms(&self.cold_waits, 0.5).unwrap_or(0.0),
            percentile_ms(&self.cold_waits, 0.99).unwrap_or(0.0)
        )?;

        writeln!(f, "\n== Scale events (stand-in autoscaler)")?;
        for e in &self.autoscaler.events {
            writeln!(
                f,
                "  t={:>5.1}s  {} -> {} pods ({}), done at t={:.1}s",
                e.decided.as_secs_f64(),
                e.from,
                e.to,
                e.why,
                e.done.as_secs_f64()
            )?;
        }

        writeln!(
            f,
            "\n== What the autoscaler saw each second (activator websocket; queue-proxy :9090 scrapes)"
        )?;
        writeln!(
            f,
            "  {:>6} {:>4} | {:>8} {:>7} | {:>7} {:>7} {:>7} {:>8} | {:>7} {:>7} {:>7}",
            "t (s)",
            "pods",
            "act.conc",
            "act.rps",
            "conc",
            "proxied",
            "direct",
            "conc/pod",
            "rps",
            "proxied",
            "direct"
        )?;
        for s in &self.autoscaler.samples {
            let per_pod = if s.pods > 0 {
                s.concurrency / s.pods as f64
            } else {
                0.0
            };
            writeln!(
                f,
                "  {:>6.1} {:>4} | {:>8.2} {:>7.1} | {:>7.2} {:>7.2} {:>7.2} {:>8.2} | {:>7.1} {:>7.1} {:>7.1}",
                s.at.as_secs_f64(),
                s.pods,
                s.activator_concurrency,
                s.activator_rps,
                s.concurrency,
                s.proxied_concurrency,
                (s.concurrency - s.proxied_concurrency).max(0.0),
                per_pod,
                s.rps,
                s.proxied_rps,
                (s.rps - s.proxied_rps).max(0.0)
            )?;
        }

        writeln!(f, "\n== What the clients got")?;
        for ((phase, status), n) in &self.statuses {
            writeln!(f, "  {:<30} {status}  x{n}", phase.to_string())?;
        }
        for (phase, n) in &self.transport_errors {
            writeln!(f, "  {:<30} no response  x{n}", phase.to_string())?;
        }
        if let Some(e) = &self.first_transport_error {
            writeln!(f, "  first failure: {e}")?;
        }
        writeln!(
            f,
            "\n== Breaker: {} of {} burst requests got 503 (CC={}, room for {} at once)",
            self.breaker_503s(),
            c.direct_burst,
            c.container_concurrency,
            c.breaker_room()
        )?;
        for failure in &self.autoscaler.failures {
            writeln!(f, "  autoscaler failure: {failure}")?;
        }
        writeln!(
            f,
            "\n== Errors (anything but 200, or a 503 in the burst; no response; autoscaler failures): {}",
            self.errors()
        )
    }
}
