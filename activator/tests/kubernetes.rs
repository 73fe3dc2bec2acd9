//! The activator against a (fake) Kubernetes API server: the Kubernetes source
//! end to end, from the objects upstream's controllers write to requests
//! proxied to pods. The API server speaks the real list/watch protocol on
//! loopback (`support::fake_apiserver`); the activator reaches it through a
//! generated kubeconfig, exactly as in a cluster with `KUBECONFIG` set.
//!
//! Spec `activator.md` §10 checks 26, 30, 31, 36, 38–44 run here, plus a cold
//! start through a real queue-proxy, watch drops, 410 relists, an API-server
//! restart, the startup checks of §1.3, and the RBAC of deploy/activator
//! against the calls actually made.

mod support;

use activator::config::Config;
use activator::revision::private_service_name;
use activator::server::ActivatorServer;
use activator::source::RevisionSource;
use activator::source::kubernetes::{ConfigMaps, KubernetesSource, StartError};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::fake_apiserver::{Call, FakeApiServer};
use support::fake_pod::FakePod;
use support::http::{autoscaler, get, within};
use support::real_pod::RealPod;
use tokio::sync::{oneshot, watch};

const NS: &str = "real-namespace";
const SYSTEM: &str = "knative-serving";

// === cluster objects ===

/// The fake API server with the three config maps in place.
async fn cluster(network: &[(&str, &str)]) -> FakeApiServer {
    let api = FakeApiServer::start().await;
    let data: serde_json::Map<String, Value> = network
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    config_map(&api, "config-network", Value::Object(data));
    config_map(
        &api,
        "config-logging",
        json!({"loglevel.activator": "info"}),
    );
    config_map(
        &api,
        "config-observability",
        json!({"logging.enable-request-log": "false"}),
    );
    api
}

fn config_map(api: &FakeApiServer, name: &str, data: Value) {
    api.apply(
        "configmaps",
        json!({"metadata": {"namespace": SYSTEM, "name": name}, "data": data}),
    );
}

/// A Revision; `containers` defaults to one container with an `http1` port.
fn revision(api: &FakeApiServer, name: &str, cc: u32, timeout: u64, containers: Option<Value>) {
    let containers =
        containers.unwrap_or_else(|| json!([{"image": "app", "ports": [{"containerPort": 8080}]}]));
    api.apply(
        "revisions",
        json!({
            "metadata": {"namespace": NS, "name": name, "uid": format!("uid-{name}"),
                         "labels": {"serving.knative.dev/service": "svc"}},
            "spec": {"containerConcurrency": cc, "timeoutSeconds": timeout,
                     "containers": containers},
        }),
    );
}

/// One subset per address: the fake pods share 127.0.0.1 and differ by port.
fn subsets(ready: &[String], not_ready: &[String]) -> Value {
    let subset = |dest: &String, key: &str| {
        let (ip, port) = dest.rsplit_once(':').unwrap();
        json!({key: [{"ip": ip}], "ports": [{"name": "http", "port": port.parse::<u16>().unwrap()}]})
    };
    let all: Vec<Value> = ready
        .iter()
        .map(|d| subset(d, "addresses"))
        .chain(not_ready.iter().map(|d| subset(d, "notReadyAddresses")))
        .collect();
    json!(all)
}

/// The revision's private Endpoints, as the private Service's controller
/// writes them.
fn private_endpoints(api: &FakeApiServer, rev: &str, ready: &[String], not_ready: &[String]) {
    api.apply(
        "endpoints",
        json!({
            "metadata": {"namespace": NS, "name": private_service_name(rev), "labels": {
                "networking.internal.knative.dev/serviceType": "Private",
                "serving.knative.dev/revision": rev,
                "serving.knative.dev/revisionUID": format!("uid-{rev}")}},
            "subsets": subsets(ready, not_ready),
        }),
    );
}

/// The private Service, its ClusterIP standing in at `dest`.
fn private_service(api: &FakeApiServer, rev: &str, dest: &str) {
    let (ip, port) = dest.rsplit_once(':').unwrap();
    api.apply(
        "services",
        json!({
            "metadata": {"namespace": NS, "name": private_service_name(rev), "labels": {
                "networking.internal.knative.dev/serviceType": "Private",
                "serving.knative.dev/revision": rev}},
            "spec": {"clusterIP": ip, "ports": [
                {"name": "http", "port": port.parse::<u16>().unwrap(), "targetPort": 8012}]},
        }),
    );
}

/// The revision's public Endpoints: the activators the SKS put in its path.
fn public_endpoints(api: &FakeApiServer, rev: &str, activators: &[&str]) {
    let addresses: Vec<Value> = activators.iter().map(|ip| json!({"ip": ip})).collect();
    api.apply(
        "endpoints",
        json!({
            "metadata": {"namespace": NS, "name": rev, "labels": {
                "networking.internal.knative.dev/serviceType": "Public",
                "serving.knative.dev/revision": rev}},
            "subsets": [{"addresses": addresses, "ports": [{"name": "http", "port": 8012}]}],
        }),
    );
}

// === the activator ===

struct Activator {
    addr: SocketAddr,
    source: Arc<KubernetesSource>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Activator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn env(api: &FakeApiServer, url: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("POD_NAME", "activator-test"),
        ("POD_IP", "10.0.0.1"),
        ("SYSTEM_NAMESPACE", SYSTEM),
        ("KUBECONFIG", api.kubeconfig().as_str()),
        ("ACTIVATOR_HTTP_PORT", "0"),
        ("ACTIVATOR_H2C_PORT", "0"),
        ("ACTIVATOR_DRAIN_TIMEOUT_MS", "0"),
        ("ACTIVATOR_AUTOSCALER_URL", url),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env
}

impl Activator {
    /// Starts the activator as `main` does without `ACTIVATOR_STATIC_SOURCE`.
    async fn try_start(api: &FakeApiServer, extra: &[(&str, &str)]) -> Result<Self, StartError> {
        let (url, _frames) = autoscaler().await;
        let mut config = Config::from_env(&env(api, &url, extra), None).unwrap();
        let source = Arc::new(KubernetesSource::from_config(&config).await?);
        source.network().apply_to(&mut config);
        let server = ActivatorServer::bind(config, source.clone()).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], server.http_addr().port()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let activator = Activator {
            addr,
            source,
            stop: Some(stop),
            task,
        };
        within(10, async {
            while get(addr, "/", &[("user-agent", "kube-probe/1.30")]).await.0 != 200 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        Ok(activator)
    }

    async fn start(api: &FakeApiServer, extra: &[(&str, &str)]) -> Self {
        within(20, Activator::try_start(api, extra)).await.unwrap()
    }

    /// `GET /` for revision `rev` of [`NS`].
    async fn get(&self, rev: &str) -> (u16, String) {
        get(
            self.addr,
            "/",
            &[
                ("knative-serving-namespace", NS),
                ("knative-serving-revision", rev),
            ],
        )
        .await
    }

    /// Until the source's snapshot satisfies `f`.
    async fn until(&self, what: &str, f: impl Fn(&activator::source::Snapshot) -> bool) {
        let mut snapshots = self.source.subscribe();
        tokio::time::timeout(Duration::from_secs(10), snapshots.wait_for(|s| f(s)))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap();
    }

    /// Until revision `rev` is known, with at least `dests` addresses.
    async fn until_known(&self, rev: &str, dests: usize) {
        self.until(rev, |s| {
            s.iter()
                .any(|(k, st)| k.name == rev && st.ready.len() + st.not_ready.len() >= dests)
        })
        .await;
    }

    fn config_maps(&self) -> watch::Receiver<ConfigMaps> {
        self.source.config_maps()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        within(10, task).await.unwrap();
    }
}

/// Requests `rev` until one gets `status`, for up to 10 s.
async fn eventually(a: &Activator, rev: &str, status: u16) -> String {
    within(10, async {
        loop {
            let (got, body) = a.get(rev).await;
            if got == status {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Lets watches and probes settle (what must NOT happen gets this long).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

// === tests ===

// Cold start: the Revision appears, requests are held, the private Endpoints
// gain a not-ready address whose real queue-proxy answers `queue`, and every
// held request is released to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_releases_held_requests_to_a_real_queue_proxy() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[]).await;
    assert_eq!(a.get("hello").await.0, 404);

    revision(&api, "hello", 0, 30, None);
    a.until_known("hello", 0).await;
    let held: Vec<_> = (0..3)
        .map(|_| {
            let addr = a.addr;
            tokio::spawn(async move {
                get(
                    addr,
                    "/",
                    &[
                        ("knative-serving-namespace", NS),
                        ("knative-serving-revision", "hello"),
                    ],
                )
                .await
            })
        })
        .collect();
    settle().await;
    for h in &held {
        if h.is_finished() {
            panic!("not held: {:?}", h);
        }
    }

    let pod = RealPod::start(false).await;
    private_endpoints(&api, "hello", &[], &[pod.main.clone()]);
    a.until_known("hello", 1).await;
    settle().await;
    assert!(held.iter().all(|h| !h.is_finished()), "app not ready yet");

    pod.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    for request in held {
        assert_eq!(within(10, request).await.unwrap().0, 200);
    }
    a.stop().await;
}

// §1.3: no config-network, no activator (upstream's fatal GET); the other two
// maps must exist too (upstream's config-map watcher).
#[tokio::test]
async fn startup_fails_without_the_config_maps() {
    let api = FakeApiServer::start().await;
    let err = within(20, Activator::try_start(&api, &[]))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "configmaps \"config-network\" not found in namespace \"knative-serving\""
    );
    config_map(&api, "config-network", json!({}));
    config_map(&api, "config-logging", json!({}));
    let err = within(20, Activator::try_start(&api, &[]))
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("\"config-observability\" not found"),
        "{err}"
    );
}

// The binary itself: missing env names the variable; a missing config-network
// exits 1 naming it.
#[tokio::test]
async fn binary_exits_1_naming_what_is_missing() {
    let api = FakeApiServer::start().await;
    let run = |env: HashMap<String, String>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_activator"));
        cmd.env_clear().envs(env);
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };
    let mut vars = env(&api, "ws://127.0.0.1:1", &[]);
    vars.remove("POD_IP");
    let out = run(vars).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("POD_IP"));

    let out = run(env(&api, "ws://127.0.0.1:1", &[])).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"config-network\" not found"), "{stderr}");
}
