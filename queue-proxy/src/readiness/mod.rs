//! Probing the app: is it ready? (`SERVING_READINESS_PROBE`)
//!
//! The queue-proxy answers its own readiness probe (and the activator's health
//! checks) by probing the app it fronts. This module mirrors upstream's
//! `pkg/queue/readiness/probe.go` (rounds, modes, the single-flight barrier),
//! `pkg/queue/readiness/probe_encoding.go` (decoding) and
//! `pkg/queue/health/probe.go` (the TCP, HTTP and gRPC attempts):
//!
//! - [`parse`] decodes the variable into [`ProbeSpec`]s (one object, or an array
//!   with multi-container probes; empty means always ready).
//! - [`Readiness::check`] runs one *round*: every probe in parallel, ready iff all
//!   pass. Each probe's failure reason goes to the log (stderr) as a warning.
//! - Each probe runs in its mode (`mode.rs`): *standard* (`periodSeconds > 0`, one
//!   attempt with `timeoutSeconds`) or *aggressive* (`periodSeconds == 0`, an
//!   attempt every 50 ms bounded by 100 ms, until `successThreshold` consecutive
//!   successes, giving up after 10 s with one log line
//!   `aggressive probe error (failed N times): …`).
//! - The attempts: `tcp.rs` (connect), `http.rs` (GET, with optional HTTP/2
//!   auto-detection), `grpc.rs` (`grpc.health.v1.Health/Check`). `exec` and a
//!   probe without an action always fail.
//!
//! Two pieces of state shape the behaviour, both as upstream:
//!
//! - **Single flight** (`flight.rs`): concurrent health checks share the running
//!   round instead of each probing the app, so a burst of checks costs the app one
//!   probe (and, in aggressive mode, one 10 s poll instead of one per caller). No
//!   result is cached: a check after a round finished starts a new one. The round
//!   runs in its own task, so a caller that goes away does not cancel it for the
//!   others.
//! - **Persistent success counter** (`mode.rs`): an aggressive probe counts
//!   consecutive successes across rounds and only a failure resets it. Once the
//!   app has proven itself `successThreshold` times in a row, each later check
//!   passes on its first good attempt, while one failure makes it earn the
//!   threshold again.
//!
//! Deliberate differences from upstream: `https` HTTP probes fail with a clear
//! reason (no TLS client here), HTTP redirects are not followed (a 3xx answer is
//! ready, as the status range says), a named or out-of-range port is a decoding
//! error instead of an attempt-time failure, an HTTP probe whose request can
//! never be built fails its round at once instead of being retried for 10 s, and
//! `timeoutSeconds: 0` on a standard probe means 1 s (upstream: no timeout).

mod error;
mod flight;
mod grpc;
mod http;
mod mode;
mod probe;
mod spec;
mod tcp;

pub use error::{DialError, GrpcError, HttpRequestError, HttpSetupError, ProbeError};
pub use spec::{
    ExecAction, GrpcAction, Handler, HttpGetAction, HttpHeader, ProbeConfigError, ProbeSpec,
    TcpSocketAction, parse,
};

use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

use flight::SingleFlight;
use probe::Prober;

/// How probes behave; [`Default`] is upstream's. The durations exist so tests can
/// shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadinessOptions {
    /// `ENABLE_HTTP2_AUTO_DETECTION`: try h2c before HTTP/1.1 for HTTP probes.
    pub http2_autodetect: bool,
    /// Aggressive mode: time between attempt starts (upstream: 50 ms).
    pub aggressive_interval: Duration,
    /// Aggressive mode: the timeout of one attempt (upstream: 100 ms).
    pub aggressive_attempt_timeout: Duration,
    /// Aggressive mode: when a round gives up on a probe (upstream: 10 s).
    pub aggressive_give_up: Duration,
}

impl Default for ReadinessOptions {
    fn default() -> Self {
        Self {
            http2_autodetect: false,
            aggressive_interval: Duration::from_millis(50),
            aggressive_attempt_timeout: Duration::from_millis(100),
            aggressive_give_up: Duration::from_secs(10),
        }
    }
}

/// The app's readiness, as the configured probes see it. Cheap to clone; clones
/// share rounds and success counters.
#[derive(Debug, Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    probes: Vec<Prober>,
    options: ReadinessOptions,
    flight: SingleFlight,
}

impl Readiness {
    /// Probes `probes` (as [`parse`] returns them) with `options`. No probes means
    /// always ready.
    pub fn new(probes: Vec<ProbeSpec>, options: ReadinessOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                probes: probes.into_iter().map(Prober::new).collect(),
                options,
                flight: SingleFlight::default(),
            }),
        }
    }

    /// Whether the app is ready: joins the running round or starts one. Must be
    /// called within a tokio runtime.
    pub async fn check(&self) -> bool {
        if self.inner.probes.is_empty() {
            return true;
        }
        let inner = Arc::clone(&self.inner);
        self.inner.flight.run(move || round(inner)).await
    }
}

/// Every probe at once; ready iff all pass. Like upstream's errgroup, a failing
/// probe does not cut the others short.
async fn round(inner: Arc<Inner>) -> bool {
    if inner.probes.len() == 1 {
        return run_logged(&inner, 0).await;
    }
    let mut probes = JoinSet::new();
    for index in 0..inner.probes.len() {
        let inner = Arc::clone(&inner);
        probes.spawn(async move { run_logged(&inner, index).await });
    }
    let mut ready = true;
    while let Some(passed) = probes.join_next().await {
        ready &= passed.unwrap_or(false);
    }
    ready
}

async fn run_logged(inner: &Inner, index: usize) -> bool {
    match inner.probes[index].run(&inner.options).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(probe = index, "{e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}

    #[tokio::test(start_paused = true)]
    async fn no_probes_is_ready_and_exec_or_nothing_is_not() {
        let none = Readiness::new(Vec::new(), ReadinessOptions::default());
        assert_send_sync(&none);
        let check = none.check();
        // Health handlers run on a multi-threaded runtime.
        assert_send(&check);
        assert!(check.await);

        let start = tokio::time::Instant::now();
        for json in [r#"{"exec":{"command":["true"]}}"#, "{}"] {
            let readiness =
                Readiness::new(parse(json, false).unwrap(), ReadinessOptions::default());
            assert!(!readiness.check().await, "{json}");
        }
        // Neither is polled: they fail at once even in aggressive mode.
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn https_fails_at_once() {
        let probes = parse(r#"{"httpGet":{"port":8443,"scheme":"HTTPS"}}"#, false).unwrap();
        let readiness = Readiness::new(probes, ReadinessOptions::default());
        let start = tokio::time::Instant::now();
        assert!(!readiness.check().await);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[test]
    fn defaults_are_upstreams() {
        let o = ReadinessOptions::default();
        assert!(!o.http2_autodetect);
        assert_eq!(o.aggressive_interval, Duration::from_millis(50));
        assert_eq!(o.aggressive_attempt_timeout, Duration::from_millis(100));
        assert_eq!(o.aggressive_give_up, Duration::from_secs(10));
    }
}
