//! The whole activator over real sockets: a loopback autoscaler that decodes the
//! stat frames, fake pods and real queue-proxies as backends, and the static
//! source flipped the way endpoints change in a cluster.

use activator::config::Config;
use activator::revision::{Protocol, Revision, RevisionKey};
use activator::server::ActivatorServer;
use activator::source::static_file::StaticFileSource;
use activator::source::{RevisionState, Snapshot};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_proto::WireStatMessages;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

// === harness ===

mod support;
use support::http::{autoscaler, get, send, within};

fn revision(name: &str, cc: u32, timeout_secs: u64) -> RevisionState {
    RevisionState {
        revision: Revision {
            key: RevisionKey::new("real-namespace", name),
            service: String::new(),
            configuration: String::new(),
            container_concurrency: cc,
            timeout: Duration::from_secs(timeout_secs),
            response_start_timeout: None,
            idle_timeout: None,
            protocol: Protocol::Http1,
        },
        ready: vec![],
        not_ready: vec![],
        cluster_ip: None,
        activators: vec![],
        probe_optimisation: true,
    }
}

fn snapshot(states: Vec<RevisionState>) -> Snapshot {
    Arc::new(
        states
            .into_iter()
            .map(|s| (s.revision.key.clone(), s))
            .collect::<BTreeMap<_, _>>(),
    )
}

struct Harness {
    addr: SocketAddr,
    /// The Prometheus port, with `ACTIVATOR_METRICS_PROTOCOL=prometheus`.
    metrics: Option<SocketAddr>,
    source: Arc<StaticFileSource>,
    frames: mpsc::UnboundedReceiver<WireStatMessages>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(states: Vec<RevisionState>, extra: &[(&str, &str)]) -> Harness {
        let (url, frames) = autoscaler().await;
        let mut env: HashMap<String, String> = [
            ("POD_NAME", "activator-test"),
            ("POD_IP", "127.0.0.1"),
            ("SYSTEM_NAMESPACE", "knative-serving"),
            ("ACTIVATOR_HTTP_PORT", "0"),
            ("ACTIVATOR_H2C_PORT", "0"),
            ("ACTIVATOR_DRAIN_TIMEOUT_MS", "0"),
            ("ACTIVATOR_AUTOSCALER_URL", url.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let config = Config::from_env(&env, None).unwrap();
        let source = Arc::new(StaticFileSource::from_snapshot(snapshot(states)));
        let server = ActivatorServer::bind(config, source.clone()).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], server.http_addr().port()));
        let metrics = server
            .metrics_addr()
            .map(|a| SocketAddr::from(([127, 0, 0, 1], a.port())));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let harness = Harness {
            addr,
            metrics,
            source,
            frames,
            stop: Some(stop),
            task,
        };
        harness.wait_ready().await;
        harness
    }

    /// Until kubelet health passes: the autoscaler link is up.
    async fn wait_ready(&self) {
        within(10, async {
            loop {
                if get(self.addr, "/", &[("user-agent", "kube-probe/1.30")])
                    .await
                    .0
                    == 200
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within(10, self.task).await.unwrap();
    }
}

fn for_revision(name: &str) -> [(&'static str, String); 2] {
    [
        ("knative-serving-namespace", "real-namespace".to_owned()),
        ("knative-serving-revision", name.to_owned()),
    ]
}

/// A fake pod: answers the activator's probe like a ready queue-proxy, and
/// echoes every other request's Host and headers.
async fn fake_pod(hits: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = hits.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let hits = hits.clone();
                    async move {
                        let ua = req
                            .headers()
                            .get("user-agent")
                            .map(|v| v.as_bytes().to_vec());
                        if ua.as_deref() == Some(b"Knative-Activator-Probe") {
                            return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                                "queue",
                            ))));
                        }
                        hits.fetch_add(1, Ordering::SeqCst);
                        let mut text = String::new();
                        for (k, v) in req.headers() {
                            text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                        }
                        Ok(Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn echoed<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

// === tests ===

// §10 checks 10, 12, 11.
#[tokio::test]
async fn unknown_revisions_are_404_and_the_host_form_resolves() {
    let pod = fake_pod(Arc::default()).await;
    let mut rev = revision("real-name", 10, 300);
    rev.ready = vec![pod.to_string()];
    let h = Harness::start(vec![rev], &[]).await;

    let (status, body) = get(
        h.addr,
        "/",
        &[
            ("knative-serving-namespace", "foospace"),
            ("knative-serving-revision", "fooname"),
        ],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        "Error getting active endpoint: revision.serving.knative.dev \"fooname\" not found\n"
    );
    let (status, body) = get(h.addr, "/", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        "Error getting active endpoint: revision.serving.knative.dev \"\" not found\n"
    );

    for host in [
        "real-name.real-namespace.svc.cluster.local",
        "real-name.real-namespace.svc.cluster.local:80",
    ] {
        let req = Request::get("/")
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, _, body) = within(5, send(h.addr, req)).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    h.stop().await;
}

// §10 checks 13, 14, 19: what the pod sees.
#[tokio::test]
async fn forwarded_request_carries_upstreams_headers() {
    let pod = fake_pod(Arc::default()).await;
    let mut rev = revision("real-name", 10, 300);
    rev.ready = vec![pod.to_string()];
    let h = Harness::start(vec![rev], &[]).await;

    let [(n1, v1), (n2, v2)] = for_revision("real-name");
    let req = Request::post("/path?x=1")
        .header("host", "test-host")
        .header(n1, v1)
        .header(n2, v2)
        .header("k-network-hash", "x")
        .body(Full::new(Bytes::from("payload")))
        .unwrap();
    let (status, _, body) = within(5, send(h.addr, req)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(echoed(&body, "k-original-host"), Some("test-host"));
    assert_eq!(echoed(&body, "host"), Some(pod.to_string().as_str()));
    assert_eq!(echoed(&body, "k-proxy-request"), Some("activator"));
    assert_eq!(echoed(&body, "knative-serving-namespace"), None);
    assert_eq!(echoed(&body, "knative-serving-revision"), None);
    assert_eq!(echoed(&body, "k-network-hash"), None);

    // A K-Original-Host already there is kept.
    let [(n1, v1), (n2, v2)] = for_revision("real-name");
    let req = Request::get("/")
        .header("host", "test-host")
        .header("k-original-host", "a")
        .header(n1, v1)
        .header(n2, v2)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, _, body) = within(5, send(h.addr, req)).await;
    assert_eq!(echoed(&body, "k-original-host"), Some("a"));
    h.stop().await;
}

// §10 check 18: no backends, timeout 1 s.
#[tokio::test]
async fn a_request_held_past_the_revision_timeout_gets_504() {
    let h = Harness::start(vec![revision("real-name", 10, 1)], &[]).await;
    let started = Instant::now();
    let [a, b] = for_revision("real-name");
    let (status, body) = within(5, get(h.addr, "/", &[(a.0, &a.1), (b.0, &b.1)])).await;
    assert_eq!((status, body.as_str()), (504, "activator request timeout"));
    assert!(started.elapsed() >= Duration::from_millis(950));
    h.stop().await;
}

// §10 checks 1–3: health follows the autoscaler link and SIGTERM.
#[tokio::test]
async fn health_needs_the_autoscaler_link_and_fails_after_sigterm() {
    // The autoscaler never answers: not ready.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (url, _frames) = autoscaler().await;
    let env: HashMap<String, String> = [
        ("POD_NAME", "a"),
        ("POD_IP", "127.0.0.1"),
        ("SYSTEM_NAMESPACE", "knative-serving"),
        ("ACTIVATOR_HTTP_PORT", "0"),
        ("ACTIVATOR_H2C_PORT", "0"),
        ("ACTIVATOR_AUTOSCALER_URL", &format!("ws://{closed}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_env(&env, None).unwrap();
    let source = Arc::new(StaticFileSource::from_snapshot(snapshot(vec![])));
    let server = ActivatorServer::bind(config, source).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], server.http_addr().port()));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let (status, body) = get(addr, "/anything", &[("user-agent", "kube-probe/1.30")]).await;
    assert_eq!(
        (status, body.as_str()),
        (500, "connection has not yet been established\n")
    );
    drop(stop);
    task.abort();
    drop(url);

    // With the link up: 200; after SIGTERM: 500, while traffic is still served.
    let pod = fake_pod(Arc::default()).await;
    let mut rev = revision("real-name", 10, 300);
    rev.ready = vec![pod.to_string()];
    let mut h = Harness::start(vec![rev], &[("ACTIVATOR_DRAIN_TIMEOUT_MS", "1500")]).await;
    let (status, body) = get(h.addr, "/", &[("user-agent", "kube-probe/1.30")]).await;
    assert_eq!((status, body.as_str()), (200, ""));
    let _ = h.stop.take().unwrap().send(());
    tokio::time::sleep(Duration::from_millis(100)).await;
    for probe in [("user-agent", "kube-probe/1.30"), ("k-kubelet-probe", "1")] {
        let (status, body) = get(h.addr, "/", &[probe]).await;
        assert_eq!(
            (status, body.as_str()),
            (500, "received SIGTERM from kubelet\n")
        );
    }
    let [a, b] = for_revision("real-name");
    let (status, _) = get(h.addr, "/", &[(a.0, &a.1), (b.0, &b.1)]).await;
    assert_eq!(status, 200);
    within(10, h.task).await.unwrap();
}

// Beyond upstream: the opt-in cap on held requests.
#[tokio::test]
async fn held_requests_past_the_cap_get_503() {
    let h = Harness::start(
        vec![revision("real-name", 1, 300)],
        &[("ACTIVATOR_MAX_HELD_PER_REVISION", "2")],
    )
    .await;
    let addr = h.addr;
    let held: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let [a, b] = for_revision("real-name");
                get(addr, "/", &[(a.0, &a.1), (b.0, &b.1)]).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let [a, b] = for_revision("real-name");
    let (status, body) = within(5, get(h.addr, "/", &[(a.0, &a.1), (b.0, &b.1)])).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "too many requests held for revision real-namespace/real-name\n"
    );
    for task in held {
        task.abort();
    }
    h.stop().await;
}

// The cold start, end to end: 50 requests held for a revision with no pod, the
// poke sent before any pod exists; then a real app and queue-proxy start, the
// source flips, and every held request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_releases_fifty_held_requests() {
    let mut h = Harness::start(vec![revision("real-name", 10, 60)], &[]).await;
    let addr = h.addr;
    let held: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn(async move {
                let [a, b] = for_revision("real-name");
                get(addr, "/", &[(a.0, &a.1), (b.0, &b.1)]).await
            })
        })
        .collect();
    // The poke arrives before any pod exists.
    let poke = within(5, h.frames.recv()).await.unwrap();
    assert_eq!(poke.messages.len(), 1);
    let message = &poke.messages[0];
    assert_eq!(
        (message.namespace.as_str(), message.name.as_str()),
        ("real-namespace", "real-name")
    );
    let stat = message.stat.as_ref().unwrap();
    assert_eq!(stat.pod_name, "activator-test");
    assert_eq!(
        (stat.average_concurrent_requests, stat.request_count),
        (1.0, 1.0)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        held.iter().all(|t| !t.is_finished()),
        "requests must be held"
    );

    // The pod starts: the app, then its queue-proxy.
    let first_hit: Arc<parking_lot::Mutex<Option<Instant>>> = Arc::default();
    let app = app_recording_first_hit(first_hit.clone()).await;
    let mut qp_env = queue_proxy::config::test_env(app.port());
    for k in [
        "QUEUE_SERVING_PORT",
        "QUEUE_PROXY_ADMIN_PORT",
        "QUEUE_PROXY_METRICS_PORT",
    ] {
        qp_env.insert(k.into(), "0".into());
    }
    qp_env.insert("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS".into(), "0".into());
    let qp = queue_proxy::Sidecar::bind(queue_proxy::config::Config::from_env(&qp_env).unwrap())
        .unwrap();
    let qp_addr = SocketAddr::from(([127, 0, 0, 1], qp.main_addr().port()));
    let (qp_stop, qp_stopped) = oneshot::channel::<()>();
    let qp_task = tokio::spawn(qp.run(async move {
        let _ = qp_stopped.await;
    }));

    // The endpoints flip: the pod appears (not yet ready in Kubernetes' eyes).
    let flipped = Instant::now();
    h.source.modify(|revisions| {
        let state = revisions
            .get_mut(&RevisionKey::new("real-namespace", "real-name"))
            .unwrap();
        state.not_ready = vec![qp_addr.to_string()];
    });
    for task in held {
        let (status, body) = within(20, task).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "hello"));
    }
    let released_after = first_hit.lock().expect("the app was hit") - flipped;
    eprintln!(
        "cold start: first held request reached the app {released_after:?} after the pod appeared"
    );
    let _ = qp_stop.send(());
    let _ = within(10, qp_task).await;
    h.stop().await;
}

// §10 check 15: with mesh pod addressability, the pod is addressed through the
// private Service's name and the mesh is told to pass through.
#[tokio::test]
async fn passthrough_lb_sets_the_private_host_and_header() {
    let pod = fake_pod(Arc::default()).await;
    let mut rev = revision("real-name", 10, 300);
    rev.ready = vec![pod.to_string()];
    let h = Harness::start(
        vec![rev],
        &[("ACTIVATOR_ENABLE_MESH_POD_ADDRESSABILITY", "true")],
    )
    .await;
    let [(n1, v1), (n2, v2)] = for_revision("real-name");
    let req = Request::get("/")
        .header("host", "test-host")
        .header(n1, v1)
        .header(n2, v2)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = within(5, send(h.addr, req)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        echoed(&body, "host"),
        Some("real-name-private.real-namespace")
    );
    assert_eq!(echoed(&body, "k-passthrough-lb"), Some("true"));
    assert_eq!(echoed(&body, "k-original-host"), Some("test-host"));
    h.stop().await;
}

// §8.1 metrics, plus the held-time histogram (knative#13459), scraped over the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_held_request_through_release() {
    let mut state = revision("real-name", 10, 60);
    state.revision.service = "hello".into();
    state.revision.configuration = "hello-config".into();
    let h = Harness::start(
        vec![state],
        &[
            ("ACTIVATOR_METRICS_PROTOCOL", "prometheus"),
            ("ACTIVATOR_METRICS_PORT", "0"),
        ],
    )
    .await;
    let metrics = h.metrics.expect("a metrics port");
    let scrape = || async move { get(metrics, "/metrics", &[]).await.1 };
    let link = scrape().await;
    assert!(
        link.contains("kn_activator_stats_conn_reachable{peer=\"autoscaler\"} 1\n"),
        "{link}"
    );
    assert!(
        link.contains("kn_activator_stats_conn_errors_total{peer=\"autoscaler\"} 0\n"),
        "{link}"
    );

    // A request with nowhere to go is queued, and stays so.
    let addr = h.addr;
    let held = tokio::spawn(async move {
        let [a, b] = for_revision("real-name");
        get(addr, "/", &[(a.0, &a.1), (b.0, &b.1)]).await
    });
    let queued = "kn_revision_request_queued{k8s_namespace_name=\"real-namespace\",kn_revision_name=\"real-name\"}";
    within(5, async {
        while !scrape().await.contains(&format!("{queued} 1\n")) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // A pod appears (some time later): the request is released and answered.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let pod = fake_pod(Arc::default()).await;
    h.source.modify(|revisions| {
        revisions
            .get_mut(&RevisionKey::new("real-namespace", "real-name"))
            .unwrap()
            .ready = vec![pod.to_string()];
    });
    let (status, _) = within(10, held).await.unwrap();
    assert_eq!(status, 200);
    // An unknown revision: a 404 recorded without revision labels.
    assert_eq!(get(h.addr, "/", &[]).await.0, 404);
    // Probes are not requests.
    get(h.addr, "/", &[("user-agent", "kube-probe/1.30")]).await;

    // The report tick publishes the revision's concurrency.
    let text = within(5, async {
        loop {
            let text = scrape().await;
            if text.contains("kn_revision_request_concurrency{") {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(text.contains(&format!("{queued} 0\n")), "{text}");
    assert!(
        text.contains("kn_revision_request_active{k8s_namespace_name=\"real-namespace\",kn_revision_name=\"real-name\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("kn_revision_request_concurrency{k8s_namespace_name=\"real-namespace\",kn_configuration_name=\"hello-config\",kn_revision_name=\"real-name\",kn_service_name=\"hello\"} "),
        "{text}"
    );
    assert!(
        text.contains("# TYPE kn_revision_request_held_duration_seconds histogram\n"),
        "{text}"
    );
    let held_count = "kn_revision_request_held_duration_seconds_count{k8s_namespace_name=\"real-namespace\",kn_revision_name=\"real-name\"} 1\n";
    assert!(text.contains(held_count), "{text}");
    // Held until the pod appeared, 50 ms or more.
    assert!(
        text.contains("kn_revision_request_held_duration_seconds_bucket{le=\"0.025\",k8s_namespace_name=\"real-namespace\",kn_revision_name=\"real-name\"} 0\n"),
        "{text}"
    );
    let server_200 = "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",k8s_namespace_name=\"real-namespace\",kn_configuration_name=\"hello-config\",kn_revision_name=\"real-name\",kn_service_name=\"hello\",network_protocol_version=\"1.1\",url_scheme=\"http\"} 1\n";
    assert!(text.contains(server_200), "{text}");
    let server_404 = "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"404\",network_protocol_version=\"1.1\",url_scheme=\"http\"} 1\n";
    assert!(text.contains(server_404), "{text}");
    assert_eq!(
        text.matches("http_server_request_duration_seconds_count{")
            .count(),
        2,
        "{text}"
    );
    h.stop().await;
}

// Metrics are off by default: no port is bound.
#[tokio::test]
async fn metrics_are_off_without_the_prometheus_protocol() {
    let h = Harness::start(vec![], &[]).await;
    assert!(h.metrics.is_none());
    h.stop().await;
}

/// A cold start's release latency, 20 times: the pod's address is listed (not
/// ready, refusing connections) with 50 requests held; 100–400 ms later its
/// queue-proxy starts in front of a ready app; the time from that start to the
/// first held request reaching the app is recorded. A measurement, not a check
/// (run it with `--ignored --nocapture`, in release mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; prints p50/p99"]
async fn cold_start_release_latency_over_20_runs() {
    let runs = 20;
    let names: Vec<String> = (0..runs).map(|i| format!("cold-{i}")).collect();
    let h = Harness::start(names.iter().map(|n| revision(n, 10, 60)).collect(), &[]).await;
    let mut samples = Vec::new();
    for name in &names {
        let addr = h.addr;
        let held: Vec<_> = (0..50)
            .map(|_| {
                let name = name.clone();
                tokio::spawn(async move {
                    let [a, b] = for_revision(&name);
                    get(addr, "/", &[(a.0, &a.1), (b.0, &b.1)]).await
                })
            })
            .collect();
        let first_hit: Arc<parking_lot::Mutex<Option<Instant>>> = Arc::default();
        let app = app_recording_first_hit(first_hit.clone()).await;
        // The pod's address, refusing connections until its queue-proxy starts.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        h.source.modify(|revisions| {
            revisions
                .get_mut(&RevisionKey::new("real-namespace", name))
                .unwrap()
                .not_ready = vec![format!("127.0.0.1:{port}")];
        });
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..400))).await;
        let mut qp_env = queue_proxy::config::test_env(app.port());
        qp_env.insert("QUEUE_SERVING_PORT".into(), port.to_string());
        for k in ["QUEUE_PROXY_ADMIN_PORT", "QUEUE_PROXY_METRICS_PORT"] {
            qp_env.insert(k.into(), "0".into());
        }
        qp_env.insert("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS".into(), "0".into());
        let qp_started = Instant::now();
        let qp =
            queue_proxy::Sidecar::bind(queue_proxy::config::Config::from_env(&qp_env).unwrap())
                .unwrap();
        let (qp_stop, qp_stopped) = oneshot::channel::<()>();
        let qp_task = tokio::spawn(qp.run(async move {
            let _ = qp_stopped.await;
        }));
        for task in held {
            let (status, body) = within(20, task).await.unwrap();
            assert_eq!((status, body.as_str()), (200, "hello"));
        }
        let released = first_hit.lock().expect("the app was hit") - qp_started;
        samples.push(released);
        let _ = qp_stop.send(());
        let _ = within(10, qp_task).await;
    }
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "cold start over {runs} runs, queue-proxy start -> first held request at the app: \
         p50 {:?}, p99 {:?}, min {:?}, max {:?}",
        pick(0.5),
        pick(0.99),
        samples[0],
        samples[samples.len() - 1]
    );
    h.stop().await;
}

/// An app answering `hello`, noting when it was first hit.
async fn app_recording_first_hit(
    first_hit: Arc<parking_lot::Mutex<Option<Instant>>>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let first_hit = first_hit.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<Incoming>| {
                    first_hit.lock().get_or_insert_with(Instant::now);
                    async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello")))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    app
}

// §10 check 16: a transport error on the way to a pod is a 502 with the
// error's text. The pod passes the activator's probe, then drops every request.
#[tokio::test]
async fn a_transport_error_is_a_502_with_the_errors_text() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pod = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let probe = req.headers().get("user-agent").map(|v| v.as_bytes())
                        == Some(b"Knative-Activator-Probe".as_slice());
                    if probe {
                        Ok(Response::new(Full::new(Bytes::from("queue"))))
                    } else {
                        Err("dropped")
                    }
                });
                // An error from the service closes the connection unanswered.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut state = revision("real-name", 10, 60);
    state.ready = vec![pod.to_string()];
    let h = Harness::start(vec![state], &[]).await;
    let [a, b] = for_revision("real-name");
    let (status, body) = within(10, get(h.addr, "/", &[(a.0, &a.1), (b.0, &b.1)])).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.ends_with('\n') && body.len() > 1, "{body:?}");
    h.stop().await;
}

// === the early hold (beyond upstream: activator/src/early_hold.rs) ===
//
// A connection's first request is held before hyper takes the connection; a
// kept-alive request is held by the handler. Both must behave the same.

const QUEUED: &str = "kn_revision_request_queued{k8s_namespace_name=\"real-namespace\",kn_revision_name=\"real-name\"}";

const HELD_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\n\
Knative-Serving-Namespace: real-namespace\r\nKnative-Serving-Revision: real-name\r\n\r\n";

const WITH_METRICS: [(&str, &str); 2] = [
    ("ACTIVATOR_METRICS_PROTOCOL", "prometheus"),
    ("ACTIVATOR_METRICS_PORT", "0"),
];

/// A pod that answers the activator's probe with `queue` and every other
/// request (HTTP/1 or h2c) with its method, version and body.
async fn echo_pod() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let probe = req.headers().get("user-agent").map(|v| v.as_bytes())
                        == Some(b"Knative-Activator-Probe".as_slice());
                    if probe {
                        return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("queue"))));
                    }
                    let (parts, body) = req.into_parts();
                    let body = http_body_util::BodyExt::collect(body)
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let text = format!(
                        "{} {:?} {}",
                        parts.method,
                        parts.version,
                        String::from_utf8_lossy(&body)
                    );
                    Ok(Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn add_ready_pod(h: &Harness, pod: SocketAddr) {
    h.source.modify(|revisions| {
        revisions
            .get_mut(&RevisionKey::new("real-namespace", "real-name"))
            .unwrap()
            .ready = vec![pod.to_string()];
    });
}

/// Scrapes the metrics port until its text contains `needle`.
async fn wait_for_metric(metrics: SocketAddr, needle: &str) {
    within(5, async {
        while !get(metrics, "/metrics", &[]).await.1.contains(needle) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// One HTTP/1.1 response with a Content-Length, read off `stream`.
async fn read_response(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let head_end = loop {
        if let Some(i) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-response");
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    while bytes.len() < head_end + length {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        bytes.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&bytes[head_end..head_end + length]).into_owned();
    (status, body)
}

/// Once `client`'s request is held, a ready pod appears: the response.
async fn release_one(h: &Harness, client: &mut tokio::net::TcpStream) -> (u16, String) {
    wait_for_metric(h.metrics.unwrap(), &format!("{QUEUED} 1\n")).await;
    add_ready_pod(h, echo_pod().await);
    within(10, read_response(client)).await
}

// A client that goes away while its request is held frees the request's
// place (the held cap, the queued gauge) at once, whichever way it was held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_client_that_leaves_frees_its_place_early_or_late() {
    use tokio::io::AsyncWriteExt;
    let mut extra = WITH_METRICS.to_vec();
    extra.push(("ACTIVATOR_MAX_HELD_PER_REVISION", "1"));
    let h = Harness::start(vec![revision("real-name", 1, 300)], &extra).await;
    let metrics = h.metrics.unwrap();
    let [a, b] = for_revision("real-name");
    for kept_alive in [false, true] {
        let mut client = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        if kept_alive {
            // A first request answered on the connection: the next one is hyper's.
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nK-Network-Probe: activator\r\n\r\n")
                .await
                .unwrap();
            assert_eq!(
                within(5, read_response(&mut client)).await,
                (200, "activator".to_owned())
            );
        }
        client.write_all(HELD_HEAD).await.unwrap();
        wait_for_metric(metrics, &format!("{QUEUED} 1\n")).await;
        let refused = get(h.addr, "/", &[(a.0, &a.1), (b.0, &b.1)]).await;
        assert_eq!(refused.0, 503, "kept alive: {kept_alive}");
        drop(client);
        wait_for_metric(metrics, &format!("{QUEUED} 0\n")).await;
    }
    // The place is free: a request is held again, and served once a pod is up.
    let addr = h.addr;
    let held = tokio::spawn(async move {
        let [a, b] = for_revision("real-name");
        get(addr, "/", &[(a.0, &a.1), (b.0, &b.1)]).await
    });
    wait_for_metric(metrics, &format!("{QUEUED} 1\n")).await;
    add_ready_pod(&h, echo_pod().await);
    assert_eq!(
        within(10, held).await.unwrap(),
        (200, "GET HTTP/1.1 ".to_owned())
    );
    h.stop().await;
}

// The early hold reads the head, and whatever body came with it, off the
// socket: both reach the pod intact, and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_held_post_keeps_its_body_and_its_connection() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start(vec![revision("real-name", 10, 300)], &WITH_METRICS).await;
    let mut client = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let post = b"POST /echo HTTP/1.1\r\nHost: example.com\r\n\
Knative-Serving-Namespace: real-namespace\r\nKnative-Serving-Revision: real-name\r\n\
Content-Length: 11\r\n\r\nhello world";
    client.write_all(post).await.unwrap();
    assert_eq!(
        release_one(&h, &mut client).await,
        (200, "POST HTTP/1.1 hello world".to_owned())
    );
    client.write_all(HELD_HEAD).await.unwrap();
    assert_eq!(
        within(10, read_response(&mut client)).await,
        (200, "GET HTTP/1.1 ".to_owned())
    );
    h.stop().await;
}

// A head that arrives in pieces is left to hyper, and held by the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_in_pieces_is_held_and_released() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start(vec![revision("real-name", 10, 300)], &WITH_METRICS).await;
    let mut client = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let (first, rest) = HELD_HEAD.split_at(30);
    client.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(rest).await.unwrap();
    assert_eq!(
        release_one(&h, &mut client).await,
        (200, "GET HTTP/1.1 ".to_owned())
    );
    h.stop().await;
}

// HTTP/2 with prior knowledge is not the early hold's: the handler holds it,
// and it goes to the pod as h2c.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_request_is_held_and_released_as_h2c() {
    let h = Harness::start(vec![revision("real-name", 10, 300)], &WITH_METRICS).await;
    let stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://example.com/")
        .header("knative-serving-namespace", "real-namespace")
        .header("knative-serving-revision", "real-name")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let held = tokio::spawn(tx.send_request(req));
    wait_for_metric(h.metrics.unwrap(), &format!("{QUEUED} 1\n")).await;
    add_ready_pod(&h, echo_pod().await);
    let resp = within(10, held).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "GET HTTP/2.0 ");
    h.stop().await;
}

// A connection that never sends anything is closed at shutdown, as hyper
// closes an idle one; the drain does not wait out its header read timeout.
#[tokio::test]
async fn shutdown_does_not_wait_for_a_connection_that_sent_nothing() {
    let h = Harness::start(vec![], &[]).await;
    let _silent = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    // Connections are accepted in order: once a later one is answered, the
    // silent one is in its accept step.
    let probe = get(h.addr, "/", &[("k-network-probe", "activator")]).await;
    assert_eq!(probe, (200, "activator".to_owned()));
    // stop() allows 10 s; the header read timeout is 60 s.
    h.stop().await;
}

// Beyond upstream (whose held requests wait out their timeout): a revision
// removed while requests wait for it answers them at once with the 404 a new
// request gets, whether the early hold or the handler held them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_removed_while_held_answers_its_requests_404() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start(vec![revision("real-name", 10, 300)], &WITH_METRICS).await;
    let mut fresh = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    fresh.write_all(HELD_HEAD).await.unwrap();
    let mut kept_alive = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    kept_alive
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nK-Network-Probe: activator\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        within(5, read_response(&mut kept_alive)).await,
        (200, "activator".to_owned())
    );
    kept_alive.write_all(HELD_HEAD).await.unwrap();
    wait_for_metric(h.metrics.unwrap(), &format!("{QUEUED} 2\n")).await;
    h.source.modify(|revisions| {
        revisions.remove(&RevisionKey::new("real-namespace", "real-name"));
    });
    let not_found = (
        404,
        "Error getting active endpoint: revision.serving.knative.dev \"real-name\" not found\n"
            .to_owned(),
    );
    assert_eq!(within(5, read_response(&mut fresh)).await, not_found);
    assert_eq!(within(5, read_response(&mut kept_alive)).await, not_found);
    h.stop().await;
}
