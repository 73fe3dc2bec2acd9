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
use activator::source::kubernetes::{
    ConfigMaps, KubeVersion, KubernetesSource, SourceOptions, StartError,
};
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
fn subsets(port_name: &str, ready: &[String], not_ready: &[String]) -> Value {
    let subset = |dest: &String, key: &str| {
        let (ip, port) = dest.rsplit_once(':').unwrap();
        json!({key: [{"ip": ip}],
               "ports": [{"name": port_name, "port": port.parse::<u16>().unwrap()}]})
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
    private_endpoints_on(api, rev, "http", ready, not_ready);
}

fn private_endpoints_on(
    api: &FakeApiServer,
    rev: &str,
    port_name: &str,
    ready: &[String],
    not_ready: &[String],
) {
    api.apply(
        "endpoints",
        json!({
            "metadata": {"namespace": NS, "name": private_service_name(rev), "labels": {
                "networking.internal.knative.dev/serviceType": "Private",
                "serving.knative.dev/revision": rev,
                "serving.knative.dev/revisionUID": format!("uid-{rev}")}},
            "subsets": subsets(port_name, ready, not_ready),
        }),
    );
}

/// The private Service, its ClusterIP standing in at `dest`.
fn private_service(api: &FakeApiServer, rev: &str, dest: &str) {
    private_service_named(api, rev, &private_service_name(rev), dest);
}

fn private_service_named(api: &FakeApiServer, rev: &str, name: &str, dest: &str) {
    let (ip, port) = dest.rsplit_once(':').unwrap();
    api.apply(
        "services",
        json!({
            "metadata": {"namespace": NS, "name": name, "labels": {
                "networking.internal.knative.dev/serviceType": "Private",
                "serving.knative.dev/revision": rev}},
            "spec": {"clusterIP": ip, "ports": [
                {"name": "http", "port": port.parse::<u16>().unwrap(), "targetPort": 8012}]},
        }),
    );
}

/// The revision's public Endpoints: the activators the SKS put in its path.
fn public_endpoints(api: &FakeApiServer, rev: &str, port_name: &str, activators: &[&str]) {
    let addresses: Vec<Value> = activators.iter().map(|ip| json!({"ip": ip})).collect();
    api.apply(
        "endpoints",
        json!({
            "metadata": {"namespace": NS, "name": rev, "labels": {
                "networking.internal.knative.dev/serviceType": "Public",
                "serving.knative.dev/revision": rev}},
            "subsets": [{"addresses": addresses, "ports": [{"name": port_name, "port": 8012}]}],
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
    if let Some(h) = held.iter().position(|h| h.is_finished()) {
        let done = held.into_iter().nth(h).unwrap().await.unwrap();
        panic!("a request was not held: {done:?}");
    }

    let pod = RealPod::start(false).await;
    private_endpoints(&api, "hello", &[], std::slice::from_ref(&pod.main));
    a.until_known("hello", 1).await;
    settle().await;
    assert!(held.iter().all(|h| !h.is_finished()), "app not ready yet");

    pod.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    for request in held {
        assert_eq!(within(10, request).await.unwrap().0, 200);
    }
    a.stop().await;
}

// An HTTPS API server, as in every real cluster: rustls with the ring
// provider, the CA from the kubeconfig.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_over_tls() {
    let api = FakeApiServer::start_tls().await;
    config_map(&api, "config-network", json!({}));
    config_map(&api, "config-logging", json!({}));
    config_map(&api, "config-observability", json!({}));
    let a = Activator::start(&api, &[]).await;
    let _pod = serving(&api, &a, "r", 1).await;
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
    // The watches of the failed start are gone with it.
    within(10, async {
        while api.open_watches() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

// Startup: an API server older than KUBERNETES_MIN_VERSION is refused (after
// retrying for `version_wait`; a minute in the binary).
#[tokio::test]
async fn too_old_api_server_is_refused() {
    let api = cluster(&[]).await;
    let options = |min_version| SourceOptions {
        system_namespace: SYSTEM.into(),
        config_logging_name: "config-logging".into(),
        config_observability_name: "config-observability".into(),
        min_version,
        version_wait: Duration::ZERO,
    };
    let kubeconfig = api.kubeconfig();
    let client = || activator::source::kubernetes::client(Some(&kubeconfig));
    let err = KubernetesSource::start(client().await.unwrap(), options(KubeVersion(1, 99, 0)))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "kubernetes version \"v1.34.1\" is not compatible, need at least \"v1.99.0\" \
         (this can be overridden with the env var \"KUBERNETES_MIN_VERSION\")"
    );
    let source = KubernetesSource::start(client().await.unwrap(), options(KubeVersion(1, 34, 1)));
    assert!(within(20, source).await.is_ok());
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

/// A container list whose serving container has an `exec` readiness probe.
fn exec_readiness() -> Value {
    json!([{"ports": [{"containerPort": 8080}], "readinessProbe": {"exec": {"command": ["ok"]}}}])
}

/// A container list with a sidecar that has a startup probe.
fn sidecar_startup_probe() -> Value {
    json!([{"ports": [{"containerPort": 8080}]},
           {"name": "sidecar", "startupProbe": {"tcpSocket": {"port": 9}}}])
}

fn is_timeout((status, body): &(u16, String)) -> bool {
    *status == 504 && body.contains("activator request timeout")
}

// §10 check 36: a not-ready address whose queue-proxy answers takes traffic,
// unless the serving container has an exec readiness probe or any container a
// startup probe; then only once Kubernetes marks it ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_36_probe_optimisation_follows_the_revision_spec() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[]).await;
    let plain = FakePod::ready("plain-pod").await;
    revision(&api, "plain", 0, 1, None);
    private_endpoints(&api, "plain", &[], &[plain.dest()]);
    assert_eq!(eventually(&a, "plain", 200).await, "plain-pod");

    for (rev, containers) in [
        ("exec", exec_readiness()),
        ("startup", sidecar_startup_probe()),
    ] {
        let pod = FakePod::ready(&format!("{rev}-pod")).await;
        revision(&api, rev, 0, 1, Some(containers));
        private_endpoints(&api, rev, &[], &[pod.dest()]);
        a.until_known(rev, 1).await;
        assert!(is_timeout(&a.get(rev).await), "{rev}: not ready, not used");
        assert!(!pod.probes().is_empty(), "{rev}: probed all the same");
        private_endpoints(&api, rev, &[pod.dest()], &[]);
        assert_eq!(eventually(&a, rev, 200).await, format!("{rev}-pod"));
    }
}

// §10 check 38: pods failing probes like a mesh would (503) while the
// ClusterIP answers: traffic goes through the ClusterIP. A 404 rules a mesh
// out: no fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_38_mesh_like_failures_fall_back_to_the_cluster_ip() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[]).await;
    let service = FakePod::ready("cluster-ip").await;
    let meshed = FakePod::start("meshed-pod", 503, "", false).await;
    revision(&api, "meshed", 0, 1, None);
    private_service(&api, "meshed", &service.dest());
    private_endpoints(&api, "meshed", &[meshed.dest()], &[]);
    assert_eq!(eventually(&a, "meshed", 200).await, "cluster-ip");
    assert_eq!(meshed.served(), 0);

    let service = FakePod::ready("cluster-ip-2").await;
    let plain = FakePod::start("404-pod", 404, "", false).await;
    revision(&api, "no-mesh", 0, 1, None);
    private_service(&api, "no-mesh", &service.dest());
    private_endpoints(&api, "no-mesh", &[plain.dest()], &[]);
    a.until_known("no-mesh", 1).await;
    let got = a.get("no-mesh").await;
    assert!(is_timeout(&got), "{got:?}");
    assert_eq!(service.served() + plain.served(), 0);
}

// §5.1: a revision name too long for `<rev>-private` finds its Service by
// kmeta.ChildName's rule (first 23 characters, the name's MD5, the suffix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_revision_names_find_their_private_service() {
    let api = cluster(&[("mesh-compatibility-mode", "enabled")]).await;
    let a = Activator::start(&api, &[]).await;
    let service = FakePod::ready("cluster-ip").await;
    let rev = "long-revision-name-that-goes-on-and-on-and-on-00001-abcdefghij";
    revision(&api, rev, 0, 1, None);
    // Computed with Python's hashlib, not with the code under test.
    let name = "long-revision-name-thatf8cf76a9d925fd7980ccfd37c5728276-private";
    private_service_named(&api, rev, name, &service.dest());
    private_endpoints(&api, rev, &["10.1.0.1:8012".to_owned()], &[]);
    assert_eq!(eventually(&a, rev, 200).await, "cluster-ip");
}

// §10 check 39, mesh-compatibility-mode from config-network: `enabled` never
// probes pods and uses the ClusterIP; `disabled` never uses the ClusterIP and
// trusts ready addresses without probing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_39_mesh_compatibility_mode_comes_from_config_network() {
    for (mode, expect) in [("enabled", "cluster-ip"), ("Disabled", "pod")] {
        let api = cluster(&[("mesh-compatibility-mode", mode)]).await;
        let a = Activator::start(&api, &[]).await;
        let service = FakePod::ready("cluster-ip").await;
        // A pod that would fail every probe.
        let pod = FakePod::start("pod", 503, "", false).await;
        revision(&api, "r", 0, 1, None);
        private_service(&api, "r", &service.dest());
        private_endpoints(&api, "r", &[pod.dest()], &[]);
        assert_eq!(eventually(&a, "r", 200).await, expect, "mode {mode}");
        assert!(pod.probes().is_empty(), "mode {mode}: pods are not probed");
        if expect == "pod" {
            assert!(service.probes().is_empty() && service.served() == 0);
        }
    }
}

// §10 check 40: with enable-mesh-pod-addressability, probes name the private
// service and carry K-Passthrough-Lb; the ClusterIP is never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_40_passthrough_lb_never_uses_the_cluster_ip() {
    let api = cluster(&[("enable-mesh-pod-addressability", "true")]).await;
    let a = Activator::start(&api, &[]).await;
    let service = FakePod::ready("cluster-ip").await;
    let pod = FakePod::start("pod", 503, "", false).await;
    revision(&api, "r", 0, 1, None);
    private_service(&api, "r", &service.dest());
    private_endpoints(&api, "r", &[pod.dest()], &[]);
    a.until_known("r", 1).await;
    assert!(is_timeout(&a.get("r").await));
    assert!(service.probes().is_empty() && service.served() == 0);
    let probe = pod.probes().pop().expect("the pod was probed");
    assert_eq!(probe.host.as_deref(), Some("r-private.real-namespace"));
    assert_eq!(probe.passthrough_lb.as_deref(), Some("true"));
}

// §10 check 41: probes are `GET /healthz` with K-Network-Probe: queue and the
// activator's User-Agent; only the exact body `queue` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_41_probe_requests_and_verdict() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[]).await;
    let pod = FakePod::start("pod", 200, "queue\n", false).await;
    revision(&api, "r", 0, 1, None);
    private_endpoints(&api, "r", &[], &[pod.dest()]);
    a.until_known("r", 1).await;
    assert!(is_timeout(&a.get("r").await));
    let probes = pod.probes();
    assert!(!probes.is_empty());
    for probe in probes {
        assert_eq!(probe.path, "/healthz");
        assert_eq!(probe.network_probe.as_deref(), Some("queue"));
        assert_eq!(probe.user_agent.as_deref(), Some("Knative-Activator-Probe"));
        assert_eq!(probe.passthrough_lb, None);
    }
    pod.set_probe_answer(200, "queue");
    assert_eq!(eventually(&a, "r", 200).await, "pod");
}

// §10 check 42: a pod moving from addresses to notReadyAddresses leaves the
// backends until it answers a probe again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_42_pod_becoming_not_ready_is_reprobed() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[]).await;
    let pod = serving(&api, &a, "r", 1).await;

    pod.set_probe_answer(503, "");
    private_endpoints(&api, "r", &[], &[pod.dest()]);
    a.until("the pod not ready", |s| {
        s.values()
            .any(|st| st.ready.is_empty() && st.not_ready.len() == 1)
    })
    .await;
    let body = eventually(&a, "r", 504).await;
    assert!(body.contains("activator request timeout"), "{body}");
    pod.set_probe_answer(200, "queue");
    assert_eq!(eventually(&a, "r", 200).await, "pod");
}

// §10 check 43: private Endpoints emptied (scaled to zero): capacity 0, requests wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_43_empty_endpoints_mean_no_capacity() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[]).await;
    let _pod = serving(&api, &a, "r", 1).await;
    private_endpoints(&api, "r", &[], &[]);
    eventually(&a, "r", 504).await;
    assert!(is_timeout(&a.get("r").await));
}

// §10 check 44: a deleted Revision is not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_44_deleted_revision_is_not_found() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[]).await;
    let _pod = serving(&api, &a, "gone", 1).await;
    api.delete("revisions", NS, "gone");
    let body = eventually(&a, "gone", 404).await;
    assert_eq!(
        body,
        "Error getting active endpoint: revision.serving.knative.dev \"gone\" not found\n"
    );
}

/// Until `pod` holds `n` requests, and still does a moment later.
async fn holds_exactly(pod: &FakePod, n: usize) {
    within(10, async {
        while pod.in_flight() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    settle().await;
    assert_eq!(pod.in_flight(), n);
}

fn spawn_requests(
    a: &Activator,
    rev: &str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<(u16, String)>> {
    (0..n)
        .map(|_| {
            let addr = a.addr;
            let rev = rev.to_owned();
            tokio::spawn(async move {
                get(
                    addr,
                    "/",
                    &[
                        ("knative-serving-namespace", NS),
                        ("knative-serving-revision", &rev),
                    ],
                )
                .await
            })
        })
        .collect()
}

// §10 check 26: cc=10 through the ClusterIP, 10 ready backends: 5 activators
// give capacity 20, 200 activators capacity 1, no backends capacity 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_26_cluster_ip_capacity_follows_backends_and_activators() {
    let api = cluster(&[("mesh-compatibility-mode", "enabled")]).await;
    let a = Activator::start(&api, &[("POD_IP", "10.0.0.1")]).await;
    let service = FakePod::start("cluster-ip", 200, "queue", true).await;
    let backends: Vec<String> = (1..=10).map(|i| format!("10.1.0.{i}:8012")).collect();
    revision(&api, "r", 10, 30, None);
    private_service(&api, "r", &service.dest());
    private_endpoints(&api, "r", &backends, &[]);
    let five: Vec<String> = (1..=5).map(|i| format!("10.0.0.{i}")).collect();
    let five: Vec<&str> = five.iter().map(String::as_str).collect();
    public_endpoints(&api, "r", "http", &five);
    a.until("5 activators", |s| {
        s.values().any(|st| st.activators.len() == 5)
    })
    .await;
    // The snapshot is out; let the throttler apply it (and the ClusterIP).
    settle().await;

    let requests = spawn_requests(&a, "r", 25);
    holds_exactly(&service, 20).await;
    service.release();
    for r in requests {
        assert_eq!(within(10, r).await.unwrap().0, 200);
    }

    service.hold();
    let many: Vec<String> = (0..200)
        .map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    public_endpoints(&api, "r", "http", &many);
    a.until("200 activators", |s| {
        s.values().any(|st| st.activators.len() == 200)
    })
    .await;
    // The snapshot is out; let the throttler apply it.
    settle().await;
    let requests = spawn_requests(&a, "r", 3);
    holds_exactly(&service, 1).await;
    service.release();
    for r in requests {
        assert_eq!(within(10, r).await.unwrap().0, 200);
    }

    private_endpoints(&api, "r", &[], &[]);
    revision(&api, "r", 10, 1, None);
    eventually(&a, "r", 504).await;
}

/// Once the throttler applied the new subset (requests reach `pods[index]`),
/// every request goes to `pods[index]` (cc=1, one request at a time).
async fn only_ever_serves(a: &Activator, pods: &[FakePod], index: usize) {
    within(10, async {
        while pods[index].served() == 0 {
            a.get("r").await;
        }
    })
    .await;
    let before: Vec<usize> = pods.iter().map(FakePod::served).collect();
    for _ in 0..4 {
        assert_eq!(a.get("r").await.0, 200);
    }
    let after: Vec<usize> = pods.iter().map(FakePod::served).collect();
    let mut want = before.clone();
    want[index] += 4;
    assert_eq!(after, want, "only pod {index} of the sorted pods serves");
}

/// Pods `pod-0..n` sorted by address as the throttler sorts them.
async fn sorted_pods(n: usize) -> Vec<FakePod> {
    let mut pods = Vec::new();
    for i in 0..n {
        pods.push(FakePod::ready(&format!("pod-{i}")).await);
    }
    pods.sort_by_key(FakePod::dest);
    pods
}

// §10 check 30: public Endpoints on port `http2` {130.0.0.1, 130.0.0.2} with
// POD_IP 130.0.0.2: 2 activators, index 1 (this activator gets the second of
// two cc=1 pods); then {130.0.0.2}: 1 activator, index 0 (both pods, first
// available first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_30_subsetting_from_public_endpoints() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[("POD_IP", "130.0.0.2")]).await;
    let pods = sorted_pods(2).await;
    let h2c = json!([{"ports": [{"name": "h2c", "containerPort": 8080}]}]);
    revision(&api, "r", 1, 1, Some(h2c));
    let dests: Vec<String> = pods.iter().map(FakePod::dest).collect();
    private_endpoints_on(&api, "r", "http2", &dests, &[]);
    public_endpoints(&api, "r", "http2", &["130.0.0.1", "130.0.0.2"]);
    a.until("2 activators", |s| {
        s.values().any(|st| st.activators.len() == 2)
    })
    .await;
    only_ever_serves(&a, &pods, 1).await;

    public_endpoints(&api, "r", "http2", &["130.0.0.2"]);
    a.until("1 activator", |s| {
        s.values().any(|st| st.activators.len() == 1)
    })
    .await;
    within(10, async {
        while pods[0].served() == 0 {
            a.get("r").await;
        }
    })
    .await;
}

// §10 check 31: activators ["10.10.10.1","10.10.10.2","10.10.10.3","11.11.11.11"]
// and POD_IP 10.10.10.3 give index 2 of 4 (the third of four cc=1 pods); a
// POD_IP not listed keeps index -1 (all pods, the first first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_31_activator_index_in_string_order() {
    for (pod_ip, expect) in [("10.10.10.3", 2), ("10.9.9.9", 0)] {
        let api = cluster(&[]).await;
        let a = Activator::start(&api, &[("POD_IP", pod_ip)]).await;
        let pods = sorted_pods(4).await;
        revision(&api, "r", 1, 1, None);
        let dests: Vec<String> = pods.iter().map(FakePod::dest).collect();
        private_endpoints(&api, "r", &dests, &[]);
        public_endpoints(
            &api,
            "r",
            "http",
            &["11.11.11.11", "10.10.10.2", "10.10.10.1", "10.10.10.3"],
        );
        a.until("4 activators", |s| {
            s.values().any(|st| st.activators.len() == 4)
        })
        .await;
        only_ever_serves(&a, &pods, expect).await;
    }
}

/// Requests to `rev`, one after another, until stopped; every answer that is
/// not 200 is kept.
struct Traffic {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<(usize, Vec<(u16, String)>)>,
}

impl Traffic {
    fn start(a: &Activator, rev: &str) -> Traffic {
        let (stop, stopped) = watch::channel(false);
        let addr = a.addr;
        let rev = rev.to_owned();
        let task = tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !*stopped.borrow() {
                let headers = [
                    ("knative-serving-namespace", NS),
                    ("knative-serving-revision", rev.as_str()),
                ];
                match get(addr, "/", &headers).await {
                    (200, _) => ok += 1,
                    other => failed.push(other),
                }
            }
            (ok, failed)
        });
        Traffic { stop, task }
    }

    /// Stops and checks that every request succeeded.
    async fn all_succeeded(self) {
        self.stop.send_replace(true);
        let (ok, failed) = within(10, self.task).await.unwrap();
        assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
        assert!(ok > 0);
        println!("{ok} requests, none failed");
    }
}

/// The fewest revisions any snapshot had while the returned task ran.
fn fewest_revisions(a: &Activator) -> (watch::Sender<bool>, tokio::task::JoinHandle<usize>) {
    let mut snapshots = a.source.subscribe();
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut fewest = snapshots.borrow_and_update().len();
        loop {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() { return fewest; }
                    fewest = fewest.min(snapshots.borrow_and_update().len());
                }
                _ = stopped.changed() => return fewest,
            }
        }
    });
    (stop, task)
}

/// Revision `rev` (cc 0, `timeout` seconds) served by one ready pod, `pod`.
async fn serving(api: &FakeApiServer, a: &Activator, rev: &str, timeout: u64) -> FakePod {
    let pod = FakePod::ready("pod").await;
    revision(api, rev, 0, timeout, None);
    private_endpoints(api, rev, &[pod.dest()], &[]);
    assert_eq!(eventually(a, rev, 200).await, "pod");
    pod
}

/// Until the watches are open again (one per cache).
async fn watches_reopened(api: &FakeApiServer) {
    within(20, async {
        while api.open_watches() < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// After a disruption: a new pod and a new revision are still picked up. The
/// new pods are returned: they must outlive the traffic sent to them.
async fn still_follows_changes(
    api: &FakeApiServer,
    a: &Activator,
    first: &FakePod,
) -> [FakePod; 2] {
    let second = FakePod::ready("pod-2").await;
    private_endpoints(api, "r", &[first.dest(), second.dest()], &[]);
    a.until_known("r", 2).await;
    let other = FakePod::ready("other-pod").await;
    revision(api, "later", 0, 30, None);
    private_endpoints(api, "later", &[other.dest()], &[]);
    assert_eq!(eventually(a, "later", 200).await, "other-pod");
    [second, other]
}

// Watches ended by the server and watch connections cut mid-stream: the
// watches resume (at once after a clean end, after kube-runtime's backoff
// after a cut), and traffic to known revisions never fails meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_drops_do_not_interrupt_traffic() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[]).await;
    let pod = serving(&api, &a, "r", 30).await;
    let (stop, fewest) = fewest_revisions(&a);
    let traffic = Traffic::start(&a, "r");
    for cut in [false, true, false, true, false] {
        watches_reopened(&api).await;
        api.bookmark();
        if cut {
            api.drop_watches();
        } else {
            api.end_watches();
        }
    }
    watches_reopened(&api).await;
    let _pods = still_follows_changes(&api, &a, &pod).await;
    traffic.all_succeeded().await;
    stop.send_replace(true);
    assert!(fewest.await.unwrap() >= 1, "no snapshot lost the revision");
}

// 410 Gone on the open watches and on re-watching: the caches are listed
// again, swapped in whole, and traffic never fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_410_relists_without_interrupting_traffic() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[]).await;
    let pod = serving(&api, &a, "r", 30).await;
    let lists = |api: &FakeApiServer| api.calls().iter().filter(|c| c.verb == "list").count();
    let before = lists(&api);
    let (stop, fewest) = fewest_revisions(&a);
    let traffic = Traffic::start(&a, "r");
    watches_reopened(&api).await;
    api.expire();
    within(20, async {
        while lists(&api) < before + 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    watches_reopened(&api).await;
    let _pods = still_follows_changes(&api, &a, &pod).await;
    traffic.all_succeeded().await;
    stop.send_replace(true);
    assert!(
        fewest.await.unwrap() >= 1,
        "the relist published no empty snapshot"
    );
}

// The API server goes away (restart): known revisions keep being served, and
// what changed while it was down is picked up once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_restart_keeps_serving_known_revisions() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[]).await;
    let pod = serving(&api, &a, "r", 30).await;
    let (stop, fewest) = fewest_revisions(&a);
    let traffic = Traffic::start(&a, "r");
    watches_reopened(&api).await;
    api.set_down(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        a.get("r").await.0,
        200,
        "served while the API server is down"
    );
    api.set_down(false);
    watches_reopened(&api).await;
    let _pods = still_follows_changes(&api, &a, &pod).await;
    traffic.all_succeeded().await;
    stop.send_replace(true);
    assert!(fewest.await.unwrap() >= 1);
}

// config-logging and config-observability are published as plain data, and
// follow edits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_are_published_and_followed() {
    let api = cluster(&[("mesh-compatibility-mode", "auto")]).await;
    let a = Activator::start(&api, &[]).await;
    let mut maps = a.config_maps();
    {
        let now = maps.borrow_and_update();
        assert_eq!(now.logging["loglevel.activator"], "info");
        assert_eq!(now.observability["logging.enable-request-log"], "false");
        assert_eq!(now.network["mesh-compatibility-mode"], "auto");
    }
    config_map(
        &api,
        "config-observability",
        json!({"metrics-protocol": "prometheus"}),
    );
    within(
        10,
        maps.wait_for(|m| {
            m.observability.get("metrics-protocol").map(String::as_str) == Some("prometheus")
        }),
    )
    .await
    .unwrap();
    // A map deleted later keeps its last contents.
    api.delete("configmaps", SYSTEM, "config-logging");
    config_map(&api, "config-observability", json!({}));
    within(10, maps.wait_for(|m| m.observability.is_empty()))
        .await
        .unwrap();
    assert_eq!(maps.borrow().logging["loglevel.activator"], "info");
}

// RBAC: every API call the activator made in a full run (startup, watches,
// relists after 410 and drops) is allowed by deploy/activator/rbac.yaml, bound
// to the ServiceAccount the Deployment runs as.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_allows_every_call_the_activator_makes() {
    let api = cluster(&[]).await;
    let a = Activator::start(&api, &[]).await;
    let pod = serving(&api, &a, "r", 30).await;
    public_endpoints(&api, "r", "http", &["10.0.0.1"]);
    let service = FakePod::ready("cluster-ip").await;
    private_service(&api, "r", &service.dest());
    watches_reopened(&api).await;
    api.drop_watches();
    watches_reopened(&api).await;
    api.expire();
    still_follows_changes(&api, &a, &pod).await;
    a.stop().await;

    let calls: BTreeSet<Call> = api.calls().into_iter().collect();
    for call in &calls {
        println!(
            "{} {}{} {}",
            call.verb,
            if call.group.is_empty() {
                String::new()
            } else {
                format!("{}/", call.group)
            },
            call.resource,
            call.namespace.as_deref().unwrap_or("(all namespaces)")
        );
    }

    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/activator");
    let docs = |file: &str| -> Vec<Value> {
        let text = std::fs::read_to_string(deploy.join(file)).unwrap();
        serde_saphyr::from_multiple(&text).unwrap()
    };
    let rbac = docs("rbac.yaml");
    let of_kind =
        |kind: &str| -> Vec<&Value> { rbac.iter().filter(|d| d["kind"] == kind).collect() };
    let deployment = docs("activator.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        of_kind("ServiceAccount")[0]["metadata"]["name"],
        account.as_str()
    );

    // Roles bound to the account: (role, namespace it applies in; None = all).
    let mut bound: Vec<(&Value, Option<String>)> = Vec::new();
    for binding in of_kind("RoleBinding")
        .into_iter()
        .chain(of_kind("ClusterRoleBinding"))
    {
        let binds_us = binding["subjects"].as_array().unwrap().iter().any(|s| {
            s["kind"] == "ServiceAccount"
                && s["name"] == account.as_str()
                && s["namespace"] == SYSTEM
        });
        if !binds_us {
            continue;
        }
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap();
        let role_name = &binding["roleRef"]["name"];
        let role = *of_kind(role_kind)
            .iter()
            .find(|r| r["metadata"]["name"] == *role_name)
            .expect("bound role exists");
        let scope = (binding["kind"] == "RoleBinding").then(|| {
            binding["metadata"]["namespace"]
                .as_str()
                .unwrap()
                .to_owned()
        });
        bound.push((role, scope));
    }
    let has = |list: &Value, item: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .any(|v| v == item || v == "*")
    };
    let mut used_resources = BTreeSet::new();
    for call in calls.iter().filter(|c| c.resource != "/version") {
        let allowed = bound.iter().any(|(role, scope)| {
            let in_scope = scope.is_none() || scope.as_deref() == call.namespace.as_deref();
            in_scope
                && role["rules"].as_array().unwrap().iter().any(|rule| {
                    rule.get("resourceNames").is_none()
                        && has(&rule["apiGroups"], &call.group)
                        && has(&rule["resources"], &call.resource)
                        && has(&rule["verbs"], &call.verb)
                })
        });
        assert!(
            allowed,
            "not allowed by deploy/activator/rbac.yaml: {call:?}"
        );
        used_resources.insert(call.resource.clone());
    }
    // `GET /version` is the only non-resource call (allowed to every
    // authenticated user by the default system:discovery role).
    assert!(calls.iter().any(|c| c.resource == "/version"));
    assert!(
        calls
            .iter()
            .all(|c| c.resource != "/version" || c.verb == "get")
    );
    // Upstream's grants the activator does not use: secrets (internal TLS).
    let granted: BTreeSet<String> = bound
        .iter()
        .flat_map(|(role, _)| role["rules"].as_array().unwrap().iter())
        .flat_map(|rule| rule["resources"].as_array().unwrap().iter())
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let unused: Vec<&String> = granted.difference(&used_resources).collect();
    assert_eq!(unused, ["secrets"]);
    assert!(
        calls
            .iter()
            .all(|c| ["get", "list", "watch"].contains(&c.verb.as_str()))
    );
}
