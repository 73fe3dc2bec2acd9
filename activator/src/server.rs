//! The assembled activator: binds 8012 and 8013, connects the pieces, serves
//! until told to stop, then shuts down as upstream's does (spec §9):
//!
//! 1. the first SIGTERM fails kubelet health at once;
//! 2. traffic is still served normally for 45 s (stats keep flowing);
//! 3. the servers stop accepting and wait, without a deadline, for in-flight
//!    requests;
//! 4. the autoscaler websocket is closed.
//!
//! How the pieces talk: the [`RevisionSource`] publishes snapshots; one task
//! keeps the [`Throttler`]'s revisions and activator subsets in step with them;
//! the [`BackendsManager`] probes the endpoints of each snapshot and sends
//! [`DestsUpdate`]s to the throttler; the [`ConcurrencyReporter`] sends its
//! batches to the [`AutoscalerLink`], whose status gates health.

use queue_proxy::request_log::{RequestLogger, RevisionInfo};
use queue_proxy::request_metrics::MetricsEndpoint;
use queue_proxy::server::{
    Protocols, READ_HEADER_TIMEOUT, ServeError, Shutdown, bind_dual_stack, serve, serve_with,
};
use queue_proxy::telemetry::{self, ResourceInfo, TelemetryError, TracingPlan};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::backends::{BackendsManager, BackendsOptions, ProbeOptions};
use crate::config::{Config, MetricsProtocol};
use crate::early_hold::EarlyHold;
use crate::forward::Forwarder;
use crate::handler::ActivatorHandler;
use crate::held::HeldLimit;
use crate::metrics::{ActivatorMetrics, LiveSources};
use crate::probe::Health;
use crate::reporter::{AutoscalerLink, ConcurrencyReporter, LinkOptions, REPORT_INTERVAL};
use crate::revision::{DestsUpdate, RevisionKey};
use crate::source::{RevisionSource, RevisionState, Snapshot};
use crate::throttler::Throttler;

/// The instrumentation scope of the activator's own spans.
pub const TRACING_SCOPE: &str = "knative.dev/serving/pkg/activator";

/// An activator whose listeners are bound.
pub struct ActivatorServer {
    config: Config,
    source: Arc<dyn RevisionSource>,
    http: TcpListener,
    h2c: TcpListener,
    /// The Prometheus port, bound only for `metrics-protocol: prometheus`.
    metrics: Option<TcpListener>,
    /// Set when the tracing protocol is not `none`.
    tracing: Option<TracingPlan>,
}

impl ActivatorServer {
    /// Binds the HTTP (8012) and h2c (8013) ports of `config`.
    pub fn bind(config: Config, source: Arc<dyn RevisionSource>) -> Result<Self, ServeError> {
        let metrics = match config.metrics_protocol {
            MetricsProtocol::Prometheus => Some(bind_dual_stack(config.metrics_port)?),
            MetricsProtocol::None => None,
            MetricsProtocol::Grpc | MetricsProtocol::HttpProtobuf => {
                tracing::warn!(
                    protocol = ?config.metrics_protocol,
                    "OTLP metrics export is not implemented in the activator; metrics are off"
                );
                None
            }
        };
        let tracing = TracingPlan::from_config(&config.tracing, telemetry::process_env)
            .map_err(TelemetryError::from)?;
        Ok(ActivatorServer {
            tracing,
            http: bind_dual_stack(config.http_port)?,
            h2c: bind_dual_stack(config.h2c_port)?,
            metrics,
            config,
            source,
        })
    }

    /// The HTTP port's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The h2c port's address.
    pub fn h2c_addr(&self) -> SocketAddr {
        self.h2c
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The metrics port's address, when metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains and stops (spec §9).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let ActivatorServer {
            config,
            source,
            http,
            h2c,
            metrics: metrics_listener,
            tracing,
        } = self;
        let tracing = tracing.map(|plan| {
            let resource = ResourceInfo {
                container: "activator".into(),
                namespace: config.system_namespace.clone(),
                pod: config.pod_name.clone(),
                ..ResourceInfo::default()
            }
            .resource(telemetry::process_env("OTEL_SERVICE_NAME").as_deref());
            Arc::new(plan.start(resource, TRACING_SCOPE, tokio::runtime::Handle::current()))
        });
        let snapshots = source.subscribe();

        let throttler = Arc::new(Throttler::new(Some(config.pod_ip.clone())));
        let forwarder = Arc::new(Forwarder::new(config.max_idle_per_host));
        let syncing = tokio::spawn(sync_with_source(
            snapshots.clone(),
            throttler.clone(),
            forwarder.clone(),
        ));

        let (dests_tx, dests_rx) = mpsc::unbounded_channel();
        let backends = BackendsManager::new(
            snapshots.clone(),
            dests_tx,
            BackendsOptions {
                probe: ProbeOptions {
                    timeout: config.probe_timeout,
                    max_interval: config.probe_frequency,
                    ..ProbeOptions::default()
                },
                mesh_mode: config.mesh_compatibility_mode,
                passthrough_lb: config.mesh_pod_addressability,
            },
        )
        .spawn();
        let applying = tokio::spawn(apply_dests(dests_rx, snapshots.clone(), throttler.clone()));

        let (batches_tx, batches_rx) = mpsc::unbounded_channel();
        let reporter = Arc::new(ConcurrencyReporter::new(
            config.pod_name.clone(),
            batches_tx,
        ));
        let reporting = tokio::spawn(reporter.clone().run(REPORT_INTERVAL));
        let link =
            AutoscalerLink::spawn(config.autoscaler_url(), batches_rx, LinkOptions::default());

        let metrics = metrics_listener.is_some().then(|| {
            Arc::new(ActivatorMetrics::new(LiveSources {
                reporter: reporter.clone(),
                revisions: snapshots.clone(),
                link_up: link.status(),
                link_errors: link.disconnect_counter(),
            }))
        });

        let health = Arc::new(Health::new(link.status()));
        let handler = Arc::new(ActivatorHandler {
            health: health.clone(),
            revisions: snapshots,
            cluster_domain: config.cluster_domain.clone(),
            reporter,
            throttler,
            forwarder,
            held: HeldLimit::new(config.max_held_per_revision),
            passthrough_lb: config.mesh_pod_addressability,
            metrics: metrics.clone(),
            tracing: tracing.clone(),
            request_log: config.request_log_template.as_deref().map(|template| {
                Arc::new(RequestLogger::new_or_disabled(
                    template,
                    RevisionInfo::default(),
                    false,
                ))
            }),
        });

        let (trigger, stop) = Shutdown::new();
        // The metrics port stays up through the drain and stops with the rest.
        let metrics_server = match (metrics_listener, metrics) {
            (Some(listener), Some(metrics)) => Some(tokio::spawn(serve(
                listener,
                Arc::new(MetricsEndpoint(metrics)),
                Protocols::Http1Only,
                READ_HEADER_TIMEOUT,
                stop.clone(),
            ))),
            _ => None,
        };
        let servers = [(http, stop.clone()), (h2c, stop)].map(|(listener, stop)| {
            tokio::spawn(serve_with(
                listener,
                EarlyHold::new(handler.clone(), READ_HEADER_TIMEOUT, stop.clone()),
                handler.clone(),
                Protocols::Http1AndH2c,
                READ_HEADER_TIMEOUT,
                stop,
            ))
        });

        shutdown.await;
        health.shutting_down();
        tracing::info!(drain = ?config.drain_timeout, "received TERM signal; serving until the drain ends");
        tokio::time::sleep(config.drain_timeout).await;
        trigger.fire();
        for server in servers.into_iter().chain(metrics_server) {
            let _ = server.await;
        }
        link.shutdown().await;
        if let Some(tracing) = tracing {
            // Flushes what is still batched; blocks, so off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
        }
        for task in [syncing, applying, reporting, backends] {
            task.abort();
        }
        tracing::info!("shutdown complete");
    }
}

/// Keeps the throttler's revisions and activator subsets in step with the
/// source (upstream's Revision and public-Endpoints informer handlers), and
/// drops the connection pools of addresses no revision has any more.
async fn sync_with_source(
    mut snapshots: watch::Receiver<Snapshot>,
    throttler: Arc<Throttler>,
    forwarder: Arc<Forwarder>,
) {
    let mut known: BTreeMap<RevisionKey, RevisionState> = BTreeMap::new();
    loop {
        let current = snapshots.borrow_and_update().clone();
        for (key, state) in current.iter() {
            let previous = known.get(key);
            if previous.is_none_or(|p| p.revision != state.revision) {
                throttler.upsert_revision(&state.revision);
            }
            if previous.is_none_or(|p| p.activators != state.activators) {
                throttler.update_activators(key, &state.activators);
            }
        }
        for key in known.keys().filter(|k| !current.contains_key(*k)) {
            throttler.remove_revision(key);
        }
        forwarder.retain(|dest| {
            current.values().any(|s| {
                s.ready.iter().chain(&s.not_ready).any(|d| d == dest)
                    || s.cluster_ip.as_deref() == Some(dest)
            })
        });
        known = current
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

/// Hands the backends' updates to the throttler, making sure it knows the
/// revision first (the sync task may not have seen the snapshot yet).
async fn apply_dests(
    mut updates: mpsc::UnboundedReceiver<DestsUpdate>,
    snapshots: watch::Receiver<Snapshot>,
    throttler: Arc<Throttler>,
) {
    while let Some(update) = updates.recv().await {
        let revision = snapshots
            .borrow()
            .get(&update.key)
            .map(|s| s.revision.clone());
        if let Some(revision) = revision {
            throttler.upsert_revision(&revision);
        }
        throttler.update_dests(update);
    }
}
