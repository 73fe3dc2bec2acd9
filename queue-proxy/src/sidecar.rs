//! The assembled queue-proxy: binds its listeners, wires breaker, stats, proxy
//! and endpoints together, and serves until told to stop, then shuts down in
//! upstream's phases (§7 of the spec):
//!
//! 1. the first SIGTERM starts the drain: probes fail at once, requests are
//!    still served, and each one restarts the quiet period (30 s);
//! 2. the quiet period passes;
//! 3. every server stops accepting, closes idle connections and waits, with no
//!    time limit, for in-flight requests and HTTP/2 streams;
//! 4. upgraded connections, which no server sees, are waited for at most 60 s.
//!
//! Binding is a step of its own so tests (and the binary's error path) learn the
//! bound addresses, or the bind error, before anything is served.
//!
//! When the certificates directory holds a pair ([`crate::tls`]), the main handler
//! is also served over TLS on `QUEUE_SERVING_TLS_PORT`; that server stops with
//! the others, and the certificate watcher with them.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::admin::Admin;
use crate::autoscaler_metrics::AutoscalerMetrics;
use crate::breaker::Breaker;
use crate::config::Config;
use crate::drain::{Drainer, InFlightTracker};
use crate::handler::QueueProxy;
use crate::observability::ObservabilityConfig;
use crate::probes::ProbeAnswers;
use crate::proxy::Proxy;
use crate::proxy::client::AppClient;
use crate::readiness::{self, ProbeSpec, Readiness, ReadinessOptions};
use crate::request_log::{RequestLogger, RevisionInfo};
use crate::request_metrics::{self, MetricsEndpoint, RequestMetrics};
use crate::server::{Protocols, ServeError, Shutdown, bind_dual_stack, serve, serve_with};
use crate::stats::{REPORTING_PERIOD, RequestStats, StatReporter, run_reporter};
use crate::telemetry::otlp::Endpoint;
use crate::telemetry::{self, MetricsPusher, ResourceInfo, Tracing, TracingPlan};
use crate::timeout::RequestTimeouts;
use crate::tls::TlsSetup;
use crate::tls::certs::RELOAD_INTERVAL;

/// The request logger, when `enableRequestLog` is on and the template parses
/// (a template that does not is reported and logging stays off, as upstream's).
fn request_logger(
    config: &Config,
    observability: &ObservabilityConfig,
) -> Option<Arc<RequestLogger>> {
    if !observability.enable_request_log {
        return None;
    }
    let revision = RevisionInfo {
        name: config.serving_revision.clone(),
        namespace: config.serving_namespace.clone(),
        service: config.serving_service.clone(),
        configuration: config.serving_configuration.clone(),
        pod_name: config.serving_pod.clone(),
        pod_ip: config.serving_pod_ip.clone(),
    };
    let logger = RequestLogger::new_or_disabled(
        &observability.request_log_template,
        revision,
        observability.enable_probe_request_log,
    );
    logger.is_enabled().then(|| Arc::new(logger))
}

/// Who the telemetry is about.
fn resource_info(config: &Config) -> ResourceInfo {
    ResourceInfo {
        container: "queue-proxy".to_owned(),
        namespace: config.serving_namespace.clone(),
        pod: config.serving_pod.clone(),
        service: config.serving_service.clone(),
        configuration: config.serving_configuration.clone(),
        revision: config.serving_revision.clone(),
    }
}

/// Waits for the last metrics push and exports the spans still batched.
async fn flush_telemetry(
    pushing: Option<tokio::task::JoinHandle<()>>,
    tracing: Option<Arc<Tracing>>,
) {
    if let Some(pushing) = pushing {
        let _ = pushing.await;
    }
    if let Some(tracing) = tracing {
        // Blocks until the batch thread's export, which runs on this runtime, is done.
        let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
    }
}

/// Idle app connections kept when CC = 0 (Go transport's `MaxIdleConns` upstream).
const UNLIMITED_MAX_IDLE: usize = 1000;

/// A queue-proxy whose listeners are bound.
pub struct Sidecar {
    config: Config,
    probes: Vec<ProbeSpec>,
    observability: ObservabilityConfig,
    main: TcpListener,
    admin: TcpListener,
    metrics: TcpListener,
    /// The Prometheus request-metrics port, when that exporter is configured.
    user_metrics: Option<TcpListener>,
    /// The collector request metrics are pushed to, when OTLP is configured.
    metrics_push: Option<Endpoint>,
    tracing: Option<TracingPlan>,
    tls: Option<(TcpListener, TlsSetup)>,
    cert_reload_interval: Duration,
}

impl Sidecar {
    /// Checks what `config` leaves to be parsed (the readiness probe, and the TLS
    /// settings when certificates exist), loads the certificate, then binds the
    /// main, admin and metrics ports, and the TLS port if there is a certificate.
    pub fn bind(config: Config) -> Result<Sidecar, ServeError> {
        let probes = readiness::parse(
            &config.serving_readiness_probe,
            config.enable_multi_container_probes,
        )?;
        let observability = ObservabilityConfig::parse(&config.observability_config)?;
        tracing::debug!(
            tracing = %observability.tracing.protocol,
            sampling_rate = observability.tracing.sampling_rate,
            request_metrics = %observability.request_metrics.protocol,
            request_log = observability.enable_request_log,
            "observability settings"
        );
        let tls = TlsSetup::from_config(&config)?;
        let tracing = TracingPlan::from_config(&observability.tracing, telemetry::process_env)
            .map_err(telemetry::TelemetryError::from)?;
        let metrics_push = telemetry::metrics_push_endpoint(
            &observability.request_metrics,
            telemetry::process_env,
        )?;
        let main = bind_dual_stack(config.queue_serving_port)?;
        let admin = bind_dual_stack(config.admin_port)?;
        let metrics = bind_dual_stack(config.metrics_port)?;
        let user_metrics = if request_metrics::enabled(&observability.request_metrics) {
            Some(request_metrics::bind(
                &observability.request_metrics.endpoint,
                config.user_metrics_port,
            )?)
        } else {
            None
        };
        let tls = match tls {
            Some(setup) => Some((bind_dual_stack(setup.port)?, setup)),
            None => None,
        };
        Ok(Sidecar {
            probes,
            observability,
            main,
            admin,
            metrics,
            user_metrics,
            metrics_push,
            tracing,
            tls,
            cert_reload_interval: RELOAD_INTERVAL,
            config,
        })
    }

    /// How often the certificate files are re-read (upstream: every minute).
    pub fn set_cert_reload_interval(&mut self, interval: Duration) {
        self.cert_reload_interval = interval;
    }

    /// The main port's address.
    pub fn main_addr(&self) -> SocketAddr {
        self.main
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The admin port's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The autoscaler metrics port's address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The Prometheus request-metrics port's address, when that exporter is on.
    pub fn user_metrics_addr(&self) -> Option<SocketAddr> {
        self.user_metrics.as_ref().map(|listener| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
        })
    }

    /// The TLS port's address, when certificates were found.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(|(listener, _)| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
        })
    }

    /// Serves until `shutdown` completes, then drains and stops in upstream's
    /// phases. Returns once everything is stopped.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Sidecar {
            config,
            probes,
            observability,
            main,
            admin,
            metrics,
            user_metrics,
            metrics_push,
            tracing,
            tls,
            cert_reload_interval,
        } = self;
        let resource =
            resource_info(&config).resource(telemetry::process_env("OTEL_SERVICE_NAME").as_deref());
        let tracing = tracing.map(|plan| {
            Arc::new(plan.start(
                resource.clone(),
                telemetry::metrics_export::QUEUE_SCOPE,
                tokio::runtime::Handle::current(),
            ))
        });
        let started = Instant::now();
        let stats = Arc::new(RequestStats::new(started));
        let reporter = Arc::new(StatReporter::new(
            config.serving_pod.clone(),
            REPORTING_PERIOD,
            started,
        ));
        let reporting = tokio::spawn(run_reporter(
            stats.clone(),
            reporter.clone(),
            REPORTING_PERIOD,
        ));

        let cc = config.container_concurrency;
        let max_idle = usize::try_from(cc)
            .ok()
            .filter(|cc| *cc >= 1)
            .unwrap_or(UNLIMITED_MAX_IDLE);
        let app = SocketAddr::from((Ipv4Addr::LOCALHOST, config.user_port));
        let drainer = Arc::new(Drainer::new(config.drain_quiet_period));
        let tracker = InFlightTracker::default();
        let breaker = Breaker::for_container_concurrency(cc);
        let request_metrics = (user_metrics.is_some() || metrics_push.is_some())
            .then(|| Arc::new(RequestMetrics::new(breaker.is_some())));
        let readiness = Readiness::new(
            probes,
            ReadinessOptions {
                http2_autodetect: config.enable_http2_auto_detection,
                ..ReadinessOptions::default()
            },
        );
        let queue = Arc::new(QueueProxy {
            probes: ProbeAnswers::new(drainer.clone(), Arc::new(readiness)),
            request_log: request_logger(&config, &observability),
            request_metrics: request_metrics.clone(),
            tracing: tracing.clone(),
            stats,
            breaker,
            proxy: Proxy::new(AppClient::new(app, max_idle)),
            drainer: drainer.clone(),
            tracker: tracker.clone(),
            timeouts: RequestTimeouts::from_seconds(
                config.revision_timeout_seconds,
                config.revision_response_start_timeout_seconds,
                config.revision_idle_timeout_seconds,
            ),
        });
        let (terminating_tx, terminating) = watch::channel(false);

        let (trigger, stop) = Shutdown::new();
        let mut servers = vec![
            tokio::spawn(serve(
                main,
                queue.clone(),
                Protocols::Http1AndH2c,
                config.header_read_timeout,
                stop.clone(),
            )),
            tokio::spawn(serve(
                admin,
                Arc::new(Admin::new(drainer.clone(), terminating)),
                Protocols::Http1Only,
                config.header_read_timeout,
                stop.clone(),
            )),
            tokio::spawn(serve(
                metrics,
                Arc::new(AutoscalerMetrics::new(reporter)),
                Protocols::Http1Only,
                config.header_read_timeout,
                stop.clone(),
            )),
        ];
        let pushing = match (metrics_push, &request_metrics) {
            (Some(endpoint), Some(metrics)) => {
                let interval = Duration::from_nanos(
                    u64::try_from(observability.request_metrics.export_interval).unwrap_or(0),
                );
                let pusher = MetricsPusher::new(endpoint, interval, metrics.clone(), &resource);
                Some(tokio::spawn(pusher.run(stop.clone().fired())))
            }
            _ => None,
        };
        if let (Some(listener), Some(metrics)) = (user_metrics, request_metrics) {
            servers.push(tokio::spawn(serve(
                listener,
                Arc::new(MetricsEndpoint(metrics)),
                Protocols::Http1Only,
                config.header_read_timeout,
                stop.clone(),
            )));
        }
        if let Some((listener, setup)) = tls {
            tokio::spawn(setup.watcher.watch(cert_reload_interval, stop.clone()));
            servers.push(tokio::spawn(serve_with(
                listener,
                setup.acceptor,
                queue.clone(),
                Protocols::Http1AndH2c,
                config.header_read_timeout,
                stop,
            )));
        }
        // The servers hold the handler now; it goes (with the app connection
        // pool) when they stop.
        drop(queue);

        shutdown.await;
        let _ = terminating_tx.send(true);
        tracing::info!(
            quiet_period = ?config.drain_quiet_period,
            "received TERM signal, draining"
        );
        drainer.drain().await;

        tracing::info!(
            in_flight = tracker.count(),
            "drained; shutting down servers"
        );
        trigger.fire();
        for server in servers {
            let _ = server.await;
        }

        let waited = Instant::now();
        if !tracker.wait_idle(config.upgrade_drain_timeout).await {
            tracing::warn!(
                still_open = tracker.count(),
                waited = ?waited.elapsed(),
                "gave up waiting for upgraded connections"
            );
        }
        reporting.abort();
        flush_telemetry(pushing, tracing).await;
        tracing::info!("shutdown complete");
    }
}

/// Binds and serves `config` until `shutdown` completes and the drain is over:
/// what the binary runs.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let sidecar = Sidecar::bind(config)?;
    tracing::info!(
        main = %sidecar.main_addr(),
        admin = %sidecar.admin_addr(),
        metrics = %sidecar.metrics_addr(),
        user_metrics = ?sidecar.user_metrics_addr(),
        tls = ?sidecar.tls_addr(),
        "queue-proxy listening"
    );
    sidecar.run(shutdown).await;
    Ok(())
}
