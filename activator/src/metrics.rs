//! The activator's metrics (spec §8.1), served for Prometheus on `:9090`
//! (`GET /metrics`) when the metrics protocol is `prometheus`, with the names
//! upstream's OTel → Prometheus translation gives its instruments (scope
//! `knative.dev/serving/pkg/activator`; see the README for the rules):
//!
//! - `kn_revision_request_concurrency` (gauge; `k8s_namespace_name`,
//!   `kn_configuration_name`, `kn_revision_name`, `kn_service_name`): the
//!   adjusted per-second concurrency of the last report to the autoscaler;
//! - `kn_revision_request_queued` (gauge from an up/down counter;
//!   `k8s_namespace_name`, `kn_revision_name`): +1 on entering the activation
//!   step, −1 once capacity is obtained or refused;
//! - `kn_revision_request_active` (likewise): +1 when proxying starts, −1 when
//!   the response is over;
//! - `kn_activator_stats_conn_reachable` and `kn_activator_stats_conn_errors_total`
//!   (`peer="autoscaler"`): the stats websocket's state and its disconnects;
//! - `http_server_request_duration_seconds`: every request that passed the probe
//!   answers, with otelhttp's attributes plus the four revision labels (none on
//!   a 404 from the revision lookup).
//!
//! Beyond upstream (knative#13459): `kn_revision_request_held_duration_seconds`
//! (histogram; `k8s_namespace_name`, `kn_revision_name`), the time each request
//! waited in the activator for capacity, i.e. the cold-start wait users see.
//!
//! The concurrency, reachability and error series are read at scrape time from
//! the reporter and the link, which already keep them: nothing is recorded for
//! them on the request path. The per-revision instruments are looked up once per
//! request under a read lock and are atomics after that.

use http::{Request, Response};
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use queue_proxy::body::ProxyBody;
use queue_proxy::request_metrics::{AtomicHistogram, Exposition};
use queue_proxy::telemetry::semconv::{method as method_label, protocol_version};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::reporter::ConcurrencyReporter;
use crate::revision::{Revision, RevisionKey};
use crate::source::Snapshot;

/// Buckets of the held-time histogram, in seconds: from a warm pass-through to
/// a slow cold start (a revision's default timeout is 300 s).
pub const HELD_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabels {
    k8s_namespace_name: String,
    kn_revision_name: String,
}

/// Label sets are sorted by key, as OTel's attribute sets are.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OwnerLabels {
    k8s_namespace_name: String,
    kn_configuration_name: String,
    kn_revision_name: String,
    kn_service_name: String,
}

impl OwnerLabels {
    fn of(revision: &Revision) -> Self {
        OwnerLabels {
            k8s_namespace_name: revision.key.namespace.clone(),
            kn_configuration_name: revision.configuration.clone(),
            kn_revision_name: revision.key.name.clone(),
            kn_service_name: revision.service.clone(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: &'static str,
}

const AUTOSCALER: PeerLabels = PeerLabels { peer: "autoscaler" };

/// otelhttp's server attributes and the revision's labels (left out, not
/// empty, on a 404 from the lookup), in key order.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ServerLabels {
    http_request_method: &'static str,
    http_response_status_code: u16,
    owners: Option<OwnerLabels>,
    network_protocol_version: &'static str,
    url_scheme: &'static str,
}

impl EncodeLabelSet for ServerLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        ("http_request_method", self.http_request_method).encode(encoder.encode_label())?;
        ("http_response_status_code", self.http_response_status_code)
            .encode(encoder.encode_label())?;
        if let Some(owners) = &self.owners {
            owners.encode(encoder)?;
        }
        ("network_protocol_version", self.network_protocol_version)
            .encode(encoder.encode_label())?;
        ("url_scheme", self.url_scheme).encode(encoder.encode_label())
    }
}

type HeldFamily = Family<RevisionLabels, Histogram, fn() -> Histogram>;

fn held_histogram() -> Histogram {
    Histogram::new(HELD_BUCKETS)
}

/// One revision's instruments, shared by its requests.
struct RevisionInstruments {
    queued: Gauge,
    active: Gauge,
    held: Histogram,
}

/// The activator's instruments and the registry they are exposed from.
pub struct ActivatorMetrics {
    registry: Registry,
    queued: Family<RevisionLabels, Gauge>,
    active: Family<RevisionLabels, Gauge>,
    held: HeldFamily,
    server: Family<ServerLabels, AtomicHistogram>,
    revisions: RwLock<HashMap<RevisionKey, Arc<RevisionInstruments>>>,
}

/// What the scrape reads from the rest of the activator.
pub struct LiveSources {
    pub reporter: Arc<ConcurrencyReporter>,
    pub revisions: watch::Receiver<Snapshot>,
    /// The autoscaler link's connected flag.
    pub link_up: watch::Receiver<bool>,
    /// The autoscaler link's disconnect count.
    pub link_errors: Arc<AtomicU64>,
}

impl ActivatorMetrics {
    /// The instruments, with the scrape-time series read from `live`.
    pub fn new(live: LiveSources) -> Self {
        let mut registry = Registry::default();
        let queued = Family::<RevisionLabels, Gauge>::default();
        registry.register(
            "kn_revision_request_queued",
            "Number of requests currently queued in the activator waiting for capacity",
            queued.clone(),
        );
        let active = Family::<RevisionLabels, Gauge>::default();
        registry.register(
            "kn_revision_request_active",
            "Number of requests currently being proxied by the activator",
            active.clone(),
        );
        let held = HeldFamily::new_with_constructor(held_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "kn_revision_request_held_duration",
            "Time requests waited in the activator for capacity (cold-start wait)",
            Unit::Seconds,
            held.clone(),
        );
        let server = Family::<ServerLabels, AtomicHistogram>::default();
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP server requests",
            Unit::Seconds,
            server.clone(),
        );
        registry.register_collector(Box::new(LiveSeries(live)));
        ActivatorMetrics {
            registry,
            queued,
            active,
            held,
            server,
            revisions: RwLock::new(HashMap::new()),
        }
    }

    fn instruments(&self, key: &RevisionKey) -> Arc<RevisionInstruments> {
        if let Some(found) = self.revisions.read().get(key) {
            return found.clone();
        }
        let labels = RevisionLabels {
            k8s_namespace_name: key.namespace.clone(),
            kn_revision_name: key.name.clone(),
        };
        let made = Arc::new(RevisionInstruments {
            queued: self.queued.get_or_create(&labels).clone(),
            active: self.active.get_or_create(&labels).clone(),
            held: self.held.get_or_create(&labels).clone(),
        });
        self.revisions
            .write()
            .entry(key.clone())
            .or_insert(made)
            .clone()
    }

    /// A request for `key` starts waiting for capacity; the guard ends the wait.
    pub fn queued(&self, key: &RevisionKey) -> Queued {
        let instruments = self.instruments(key);
        instruments.queued.inc();
        Queued {
            instruments,
            since: Instant::now(),
        }
    }

    /// Starts timing a request that passed the probe answers and arrived at
    /// `started`.
    pub fn server_started<B>(self: &Arc<Self>, req: &Request<B>, started: Instant) -> ServerTimer {
        ServerTimer {
            metrics: self.clone(),
            started,
            labels: ServerLabels {
                http_request_method: method_label(req.method()),
                http_response_status_code: 0,
                owners: None,
                network_protocol_version: protocol_version(req.version()),
                url_scheme: "http",
            },
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Exposition for ActivatorMetrics {
    fn encode(&self) -> String {
        ActivatorMetrics::encode(self)
    }
}

/// A request waiting for capacity (`kn.revision.request.queued`).
pub struct Queued {
    instruments: Arc<RevisionInstruments>,
    since: Instant,
}

impl Queued {
    /// Capacity was obtained: the request now counts as active until the
    /// returned guard is dropped (with the response).
    pub fn into_active(self) -> Active {
        self.instruments.active.inc();
        Active(self.instruments.clone())
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.instruments.queued.dec();
        self.instruments
            .held
            .observe(self.since.elapsed().as_secs_f64());
    }
}

/// A request being proxied (`kn.revision.request.active`).
pub struct Active(Arc<RevisionInstruments>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.dec();
    }
}

/// Records the server request duration when dropped (held by the response body).
pub struct ServerTimer {
    metrics: Arc<ActivatorMetrics>,
    started: Instant,
    labels: ServerLabels,
}

impl ServerTimer {
    /// Adds the revision's labels.
    pub fn revision(&mut self, revision: &Revision) {
        self.labels.owners = Some(OwnerLabels::of(revision));
    }

    /// Hands the timer to `resp`'s body, recording its status.
    pub fn attach(mut self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        self.labels.http_response_status_code = resp.status().as_u16();
        resp.map(|body| body.holding(Box::new(self)))
    }
}

impl Drop for ServerTimer {
    fn drop(&mut self) {
        if self.labels.http_response_status_code == 0 {
            // The client went away before an answer: otelhttp records none either.
            return;
        }
        self.metrics
            .server
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The series read at scrape time.
struct LiveSeries(LiveSources);

impl std::fmt::Debug for LiveSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSeries").finish_non_exhaustive()
    }
}

impl Collector for LiveSeries {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let live = &self.0;
        let mut concurrency = live.reporter.last_concurrencies();
        if !concurrency.is_empty() {
            concurrency.sort_by(|a, b| a.0.cmp(&b.0));
            let snapshot = live.revisions.borrow().clone();
            let mut family = encoder.encode_descriptor(
                "kn_revision_request_concurrency",
                "Concurrent requests that are routed to Activator",
                None,
                MetricType::Gauge,
            )?;
            for (key, value) in concurrency {
                let labels = match snapshot.get(&key) {
                    Some(state) => OwnerLabels::of(&state.revision),
                    None => OwnerLabels {
                        k8s_namespace_name: key.namespace.clone(),
                        kn_configuration_name: String::new(),
                        kn_revision_name: key.name.clone(),
                        kn_service_name: String::new(),
                    },
                };
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }

        let reachable = i64::from(*live.link_up.borrow());
        let mut family = encoder.encode_descriptor(
            "kn_activator_stats_conn_reachable",
            "Whether the autoscaler is reachable from the activator (1 = reachable, 0 = not reachable)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(reachable).encode(family.encode_family(&AUTOSCALER)?)?;

        let errors = live.link_errors.load(Ordering::Relaxed);
        let mut family = encoder.encode_descriptor(
            "kn_activator_stats_conn_errors",
            "Number of errors on the connection to the autoscaler",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(errors).encode(family.encode_family(&AUTOSCALER)?)?;
        Ok(())
    }
}
