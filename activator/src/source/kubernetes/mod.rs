//! A [`RevisionSource`] fed by the Kubernetes API: what upstream's activator
//! learns from its informers (`cmd/activator/main.go`, spec §1.3, §1.4, §11).
//!
//! Startup, in upstream's order; any failure stops the activator:
//! 1. `GET /version` passes `KUBERNETES_MIN_VERSION` (`client`);
//! 2. `GET` ConfigMap `config-network` in SYSTEM_NAMESPACE (`config_maps`);
//! 3. watches start and each cache is listed once: Revisions (all
//!    namespaces), private and public Endpoints and private Services (label
//!    selectors of §11), ConfigMaps in SYSTEM_NAMESPACE;
//! 4. `config-network`, `config-logging` and `config-observability` must all
//!    exist (upstream's config-map watcher refuses to start otherwise).
//!
//! Then every change of any cache rebuilds the [`Snapshot`] (`snapshot`), and
//! publishes it only if it differs.
//!
//! # Keeping traffic flowing
//! kube-runtime's watchers re-watch from the last resourceVersion after a
//! dropped stream and re-list after `410 Gone` or an error (with backoff).
//! The caches swap a re-list in atomically once it completes, and keep their
//! contents while the API server is unreachable, so revisions already known
//! stay routable throughout: a re-list never publishes an empty snapshot.

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
use kube::runtime::reflector::store::WriterDropped;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::{RevisionSource, Snapshot};
use crate::config::Config;

pub mod client;
pub mod config_maps;
pub mod endpoints;
pub mod revision;
pub mod services;
mod snapshot;

pub use client::{KubeVersion, client};
pub use config_maps::{CONFIG_NETWORK, ConfigMaps, NetworkConfig};

use config_maps::{ConfigData, InvalidNetworkConfig};
use revision::KnativeRevision;
use snapshot::Caches;

/// What the source needs besides a client.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// `SYSTEM_NAMESPACE`: where the config maps live.
    pub system_namespace: String,
    /// `CONFIG_LOGGING_NAME` (default `config-logging`).
    pub config_logging_name: String,
    /// `CONFIG_OBSERVABILITY_NAME` (default `config-observability`).
    pub config_observability_name: String,
    /// `KUBERNETES_MIN_VERSION` (default v1.34.0).
    pub min_version: KubeVersion,
    /// How long the version check keeps trying (upstream: 60 s, every 1 s).
    pub version_wait: Duration,
}

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error(transparent)]
    Version(#[from] client::VersionError),
    /// Upstream: `configmaps "<name>" not found`.
    #[error("configmaps {name:?} not found in namespace {namespace:?}")]
    ConfigMapMissing { namespace: String, name: String },
    #[error("fetching configmap {name:?}: {source}")]
    ConfigMapFetch {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Network(#[from] InvalidNetworkConfig),
    #[error("the {0} cache stopped before it was filled")]
    CacheNeverFilled(&'static str),
}

/// Revisions and endpoints from the Kubernetes API, published as snapshots.
pub struct KubernetesSource {
    snapshots: watch::Receiver<Snapshot>,
    config_maps: watch::Receiver<ConfigMaps>,
    network: NetworkConfig,
    _tasks: Vec<AbortOnDrop>,
}

/// A task that stops with its owner: the source's watches end when the source
/// is dropped, or when its startup fails half-way.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl KubernetesSource {
    /// The source `config` asks for: its kubeconfig (or in-cluster), its
    /// namespace and config map names, upstream's version-check timing.
    pub async fn from_config(config: &Config) -> Result<KubernetesSource, StartError> {
        let client = client(config.kubeconfig.as_deref()).await?;
        let options = SourceOptions {
            system_namespace: config.system_namespace.clone(),
            config_logging_name: config.config_logging_name.clone(),
            config_observability_name: config.config_observability_name.clone(),
            min_version: config.kubernetes_min_version,
            version_wait: Duration::from_secs(60),
        };
        KubernetesSource::start(client, options).await
    }

    /// Checks the server, reads `config-network`, starts the watches and
    /// returns once every cache was listed (see the module docs).
    pub async fn start(
        client: kube::Client,
        options: SourceOptions,
    ) -> Result<KubernetesSource, StartError> {
        client::check_version(
            &client,
            options.min_version,
            Duration::from_secs(1),
            options.version_wait,
        )
        .await?;

        let namespace = options.system_namespace.as_str();
        let config_maps_api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let network_map = config_maps_api
            .get_opt(CONFIG_NETWORK)
            .await
            .map_err(|source| StartError::ConfigMapFetch {
                name: CONFIG_NETWORK.to_owned(),
                source,
            })?
            .ok_or_else(|| StartError::ConfigMapMissing {
                namespace: namespace.to_owned(),
                name: CONFIG_NETWORK.to_owned(),
            })?;
        let network = NetworkConfig::parse(&network_map.data.unwrap_or_default())?;

        let mut watches = Watches::default();
        let caches = Caches {
            revisions: watches.watch(
                "revisions",
                Api::<KnativeRevision>::all(client.clone()),
                watcher::Config::default(),
            ),
            private_endpoints: watches.watch(
                "private endpoints",
                Api::<Endpoints>::all(client.clone()),
                watcher::Config::default().labels(&endpoints::private_endpoints_selector()),
            ),
            public_endpoints: watches.watch(
                "public endpoints",
                Api::<Endpoints>::all(client.clone()),
                watcher::Config::default().labels(&endpoints::public_endpoints_selector()),
            ),
            services: watches.watch(
                "private services",
                Api::<Service>::all(client.clone()),
                watcher::Config::default().labels(&services::private_services_selector()),
            ),
        };
        let config_store =
            watches.watch("config maps", config_maps_api, watcher::Config::default());
        watches.all_listed().await?;
        let Watches {
            changed, mut tasks, ..
        } = watches;

        let names = ConfigMapNames {
            namespace: namespace.to_owned(),
            network: CONFIG_NETWORK.to_owned(),
            logging: options.config_logging_name.clone(),
            observability: options.config_observability_name.clone(),
        };
        let first_maps =
            names
                .read(&config_store, None)
                .map_err(|name| StartError::ConfigMapMissing {
                    namespace: namespace.to_owned(),
                    name,
                })?;
        let (maps_tx, config_maps) = watch::channel(first_maps);
        let (snapshot_tx, snapshots) = watch::channel(Arc::new(caches.build()));
        tasks.push(AbortOnDrop(tokio::spawn(publish_changes(
            caches,
            snapshot_tx,
            config_store,
            names,
            maps_tx,
            changed,
        ))));
        tracing::info!(
            revisions = snapshots.borrow().len(),
            "caches synced; watching the Kubernetes API"
        );
        Ok(KubernetesSource {
            snapshots,
            config_maps,
            network,
            _tasks: tasks,
        })
    }

    /// `config-network` as read at startup.
    pub fn network(&self) -> NetworkConfig {
        self.network
    }

    /// The watched config maps (`config-logging`, `config-observability`, and
    /// `config-network` as it is now), and every later change.
    pub fn config_maps(&self) -> watch::Receiver<ConfigMaps> {
        self.config_maps.clone()
    }
}

impl RevisionSource for KubernetesSource {
    fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.snapshots.clone()
    }
}

/// The watch tasks, the notification they share, and their first listings.
#[derive(Default)]
struct Watches {
    changed: Arc<Notify>,
    tasks: Vec<AbortOnDrop>,
    listed: Vec<(&'static str, BoxFuture<'static, Result<(), WriterDropped>>)>,
}

impl Watches {
    /// Watches `api` into a cache on a task of its own, waking `changed` after
    /// every change. Errors are logged; the watcher retries with backoff and
    /// the cache keeps its contents meanwhile.
    fn watch<K>(&mut self, name: &'static str, api: Api<K>, config: watcher::Config) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let (store, writer) = reflector::store();
        let events = watcher(api, config)
            .default_backoff()
            .modify(|object: &mut K| {
                // Nothing reads them, and they are most of an object's bytes.
                object.meta_mut().managed_fields = None;
            })
            .reflect(writer);
        let changed = self.changed.clone();
        self.tasks.push(AbortOnDrop(tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            let mut failing = false;
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                    Ok(_) => {
                        if std::mem::take(&mut failing) {
                            tracing::info!(watch = name, "watch recovered");
                        }
                        changed.notify_one();
                    }
                    Err(error) => {
                        failing = true;
                        tracing::warn!(
                            watch = name,
                            %error,
                            "watch failed; keeping the cached objects and retrying"
                        );
                    }
                }
            }
        })));
        let reader = store.clone();
        self.listed.push((
            name,
            Box::pin(async move { reader.wait_until_ready().await }),
        ));
        store
    }

    /// Until every cache was listed once.
    async fn all_listed(&mut self) -> Result<(), StartError> {
        for (name, listed) in self.listed.drain(..) {
            if listed.await.is_err() {
                return Err(StartError::CacheNeverFilled(name));
            }
        }
        Ok(())
    }
}

/// Where the three config maps are.
struct ConfigMapNames {
    namespace: String,
    network: String,
    logging: String,
    observability: String,
}

impl ConfigMapNames {
    /// The three maps' data. A map that is gone keeps its `previous` data (or,
    /// at startup, is the error, by name).
    fn read(
        &self,
        store: &Store<ConfigMap>,
        previous: Option<&ConfigMaps>,
    ) -> Result<ConfigMaps, String> {
        let data = |name: &str, prev: Option<&ConfigData>| -> Result<ConfigData, String> {
            match store.get(&ObjectRef::new(name).within(&self.namespace)) {
                Some(cm) => Ok(cm.data.clone().unwrap_or_default()),
                None => prev.cloned().ok_or_else(|| name.to_owned()),
            }
        };
        Ok(ConfigMaps {
            network: data(&self.network, previous.map(|p| &p.network))?,
            logging: data(&self.logging, previous.map(|p| &p.logging))?,
            observability: data(&self.observability, previous.map(|p| &p.observability))?,
        })
    }
}

/// Rebuilds and publishes (when different) the snapshot and the config maps
/// after every change of a cache. Notifications coalesce: a burst of events
/// costs one rebuild.
async fn publish_changes(
    caches: Caches,
    snapshots: watch::Sender<Snapshot>,
    config_store: Store<ConfigMap>,
    names: ConfigMapNames,
    config_maps: watch::Sender<ConfigMaps>,
    changed: Arc<Notify>,
) {
    loop {
        changed.notified().await;
        let revisions = caches.build();
        snapshots.send_if_modified(|current| {
            if **current == revisions {
                return false;
            }
            *current = Arc::new(revisions);
            true
        });
        let previous = config_maps.borrow().clone();
        if let Ok(maps) = names.read(&config_store, Some(&previous)) {
            config_maps.send_if_modified(|current| {
                if *current == maps {
                    return false;
                }
                *current = maps;
                true
            });
        }
    }
}
