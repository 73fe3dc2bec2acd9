//! In-process "pods" for the demo: the sample app and a queue-proxy in front
//! of it, started and stopped by the stand-in autoscaler, and published to the
//! activator's static source the way the private Endpoints would be.

use activator::revision::{Protocol, Revision, RevisionKey};
use activator::source::static_file::StaticFileSource;
use activator::source::{RevisionState, Snapshot};
use http::StatusCode;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app;
use crate::client;

/// What every pod of the demo's revision looks like.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub key: RevisionKey,
    pub container_concurrency: u32,
    /// From "scheduled" to the app accepting connections (image pull and
    /// process start, in a cluster).
    pub app_startup: Duration,
    /// The app's work per request.
    pub app_work: Duration,
}

impl PodSpec {
    /// The activator's view of the revision with `ready` pods.
    pub fn snapshot(&self, ready: Vec<String>) -> Snapshot {
        let state = RevisionState {
            revision: Revision {
                key: self.key.clone(),
                service: String::new(),
                configuration: String::new(),
                container_concurrency: self.container_concurrency,
                timeout: Duration::from_secs(60),
                response_start_timeout: None,
                idle_timeout: None,
                protocol: Protocol::Http1,
            },
            ready,
            not_ready: vec![],
            cluster_ip: None,
            activators: vec![],
            probe_optimisation: true,
        };
        Arc::new(BTreeMap::from([(self.key.clone(), state)]))
    }
}

/// One running pod.
pub struct Pod {
    /// The app itself.
    pub app_addr: SocketAddr,
    /// The queue-proxy's serving port (what Endpoints list).
    pub serving: SocketAddr,
    /// The queue-proxy's autoscaler stats port (`:9090` upstream).
    pub metrics: SocketAddr,
    stop_proxy: oneshot::Sender<()>,
    proxy: JoinHandle<()>,
    app: JoinHandle<()>,
}

/// Why a pod could not start.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("app listener: {0}")]
    App(#[source] std::io::Error),
    #[error("queue-proxy config: {0}")]
    Config(#[from] queue_proxy::config::ConfigError),
    #[error("queue-proxy bind: {0}")]
    Bind(String),
    #[error("queue-proxy not ready after {0:?}")]
    NotReady(Duration),
}

impl Pod {
    /// Starts the app (after its start-up delay) and its queue-proxy, and
    /// returns once the queue-proxy answers kubelet's readiness probe.
    pub async fn start(spec: &PodSpec, name: &str) -> Result<Pod, PodError> {
        tokio::time::sleep(spec.app_startup).await;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(PodError::App)?;
        let app_addr = listener.local_addr().map_err(PodError::App)?;
        let app_port = app_addr.port();
        let app = tokio::spawn(app::serve(listener, spec.app_work));

        let mut env = queue_proxy::config::test_env(app_port);
        for k in [
            "QUEUE_SERVING_PORT",
            "QUEUE_PROXY_ADMIN_PORT",
            "QUEUE_PROXY_METRICS_PORT",
        ] {
            env.insert(k.into(), "0".into());
        }
        env.insert("SERVING_NAMESPACE".into(), spec.key.namespace.clone());
        env.insert("SERVING_REVISION".into(), spec.key.name.clone());
        env.insert(
            "CONTAINER_CONCURRENCY".into(),
            spec.container_concurrency.to_string(),
        );
        env.insert("SERVING_POD".into(), name.to_owned());
        env.insert("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS".into(), "0".into());
        let sidecar = queue_proxy::Sidecar::bind(queue_proxy::config::Config::from_env(&env)?)
            .map_err(|e| PodError::Bind(e.to_string()))?;
        let serving = SocketAddr::from(([127, 0, 0, 1], sidecar.main_addr().port()));
        let metrics = SocketAddr::from(([127, 0, 0, 1], sidecar.metrics_addr().port()));
        let (stop_proxy, stopped) = oneshot::channel::<()>();
        let proxy = tokio::spawn(sidecar.run(async move {
            let _ = stopped.await;
        }));
        let pod = Pod {
            app_addr,
            serving,
            metrics,
            stop_proxy,
            proxy,
            app,
        };
        let limit = Duration::from_secs(10);
        let ready = tokio::time::timeout(limit, async {
            while kubelet_probe(serving).await != Some(StatusCode::OK) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        if ready.await.is_err() {
            pod.stop().await;
            return Err(PodError::NotReady(limit));
        }
        Ok(pod)
    }

    /// Stops the queue-proxy (no drain quiet period) and then the app.
    pub async fn stop(self) {
        let _ = self.stop_proxy.send(());
        let _ = self.proxy.await;
        self.app.abort();
    }
}

/// kubelet's readiness probe of the queue-proxy, as the reconciler writes it.
async fn kubelet_probe(serving: SocketAddr) -> Option<StatusCode> {
    let req = client::request(
        "hello",
        &[
            ("user-agent", "kube-probe/1.30"),
            ("k-network-probe", "queue"),
        ],
    );
    client::get(serving, req).await.ok()
}

/// The revision's pods, and the activator's source that lists them.
pub struct PodSet {
    spec: PodSpec,
    source: Arc<StaticFileSource>,
    pods: Vec<Pod>,
    started: usize,
}

impl PodSet {
    /// No pods yet; `source` is set to list none.
    pub fn new(spec: PodSpec, source: Arc<StaticFileSource>) -> Self {
        source.set(spec.snapshot(vec![]));
        PodSet {
            spec,
            source,
            pods: Vec::new(),
            started: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Starts or stops pods until there are `n`. New pods are published once
    /// ready; leaving pods are unpublished before they stop.
    pub async fn scale_to(&mut self, n: usize) -> Result<(), PodError> {
        if n > self.pods.len() {
            let starting: Vec<_> = (self.pods.len()..n)
                .map(|_| {
                    self.started += 1;
                    let name = format!("{}-deployment-{}", self.spec.key.name, self.started);
                    let spec = self.spec.clone();
                    async move { Pod::start(&spec, &name).await }
                })
                .collect();
            for pod in futures_util::future::join_all(starting).await {
                self.pods.push(pod?);
            }
            self.publish();
        } else if n < self.pods.len() {
            let leaving = self.pods.split_off(n);
            self.publish();
            for pod in leaving {
                pod.stop().await;
            }
        }
        Ok(())
    }

    fn publish(&self) {
        let ready = self.pods.iter().map(|p| p.serving.to_string()).collect();
        self.source.set(self.spec.snapshot(ready));
    }
}
