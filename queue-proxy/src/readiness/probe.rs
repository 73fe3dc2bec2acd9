//! One configured probe: its action, prepared once, and its consecutive-success
//! counter. Upstream's `wrappedProbe` and its `probeContainerImpl` dispatch.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::ReadinessOptions;
use super::error::{HttpSetupError, ProbeError};
use super::http::HttpTarget;
use super::spec::{Handler, ProbeSpec};
use super::{grpc, mode, tcp};

/// What an attempt does, resolved from the [`Handler`] up front.
#[derive(Debug)]
enum Action {
    Http(Result<Box<HttpTarget>, HttpSetupError>),
    Tcp { host: String, port: u16 },
    Grpc { port: u16, service: String },
    Exec,
    None,
}

/// A probe and the state it keeps across rounds.
#[derive(Debug)]
pub(super) struct Prober {
    spec: ProbeSpec,
    action: Action,
    /// Consecutive successful aggressive attempts, across rounds.
    successes: AtomicU32,
}

impl Prober {
    pub(super) fn new(spec: ProbeSpec) -> Self {
        let action = match &spec.handler {
            Handler::HttpGet(http) => Action::Http(HttpTarget::new(http).map(Box::new)),
            Handler::TcpSocket(tcp) => Action::Tcp {
                host: tcp.host.clone(),
                port: tcp.port,
            },
            Handler::Grpc(grpc) => Action::Grpc {
                port: grpc.port,
                service: grpc.service.clone(),
            },
            Handler::Exec(_) => Action::Exec,
            Handler::None => Action::None,
        };
        Self {
            spec,
            action,
            successes: AtomicU32::new(0),
        }
    }

    /// This probe's part of a round, in the probe's mode.
    pub(super) async fn run(&self, options: &ReadinessOptions) -> Result<(), ProbeError> {
        match &self.action {
            Action::Exec => return Err(ProbeError::ExecNotSupported),
            Action::None => return Err(ProbeError::NoHandler),
            // A request that can never be built fails the round at once rather
            // than being retried for the whole aggressive window.
            Action::Http(Err(e)) => return Err(ProbeError::HttpSetup(e.clone())),
            _ => {}
        }
        if self.spec.is_aggressive() {
            let threshold = u32::try_from(self.spec.success_threshold).unwrap_or(0);
            mode::aggressive(options, &self.successes, threshold, |timeout| {
                self.attempt(timeout, options.http2_autodetect)
            })
            .await
        } else {
            let timeout = mode::standard_timeout(self.spec.timeout_seconds);
            self.attempt(timeout, options.http2_autodetect).await
        }
    }

    async fn attempt(&self, timeout: Duration, autodetect_h2: bool) -> Result<(), ProbeError> {
        match &self.action {
            Action::Http(Ok(target)) => target.probe(timeout, autodetect_h2).await,
            Action::Http(Err(e)) => Err(ProbeError::HttpSetup(e.clone())),
            Action::Tcp { host, port } => tcp::probe(host, *port, timeout).await,
            Action::Grpc { port, service } => grpc::probe(*port, service, timeout).await,
            Action::Exec => Err(ProbeError::ExecNotSupported),
            Action::None => Err(ProbeError::NoHandler),
        }
    }
}
