//! Revision backends against real servers on loopback: fake queue-proxies
//! answering `/healthz` the way a queue-proxy does, and the real queue-proxy
//! in-process. Spec `activator.md` §10 checks 36–43 (those that need no
//! Kubernetes), §5.3's "healthy pods are not re-probed", and the release-fast
//! re-probe cadence.

use activator::backends::{
    BackendsManager, BackendsOptions, MeshMode, ProbeOptions, ProbeOutcome, probe_queue_proxy,
};
use activator::revision::{DestsUpdate, Protocol, Revision, RevisionKey};
use activator::source::static_file::StaticFileSource;
use activator::source::{RevisionSource, RevisionState, Snapshot};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

mod support;
use support::real_pod::RealPod;

const NAMESPACE: &str = "test-namespace";
const NAME: &str = "test-revision";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// === fake queue-proxies ===

/// How a fake queue-proxy answers.
#[derive(Debug, Clone)]
enum Answer {
    /// 200 `queue`: healthy.
    Queue,
    /// This status, empty body.
    Status(u16),
    /// 200 with this body.
    Body(&'static str),
    /// 200 `queue`, after this long.
    Slow(Duration),
}

/// What a fake queue-proxy received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    version: http::Version,
    headers: http::HeaderMap,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

struct FakeState {
    answer: Mutex<Answer>,
    seen: Mutex<Vec<Seen>>,
}

/// A server on 127.0.0.1 answering every request per its current [`Answer`].
/// Dropping it closes the port.
struct FakeQp {
    addr: SocketAddr,
    state: Arc<FakeState>,
    task: JoinHandle<()>,
}

impl Drop for FakeQp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeQp {
    async fn start(answer: Answer) -> FakeQp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(FakeState {
            answer: Mutex::new(answer),
            seen: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.answer(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeQp { addr, state, task }
    }

    fn dest(&self) -> String {
        self.addr.to_string()
    }

    fn set(&self, answer: Answer) {
        *self.state.answer.lock().unwrap() = answer;
    }

    fn hits(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl FakeState {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.seen.lock().unwrap().push(Seen {
            path: req.uri().path().to_owned(),
            version: req.version(),
            headers: req.headers().clone(),
        });
        let answer = self.answer.lock().unwrap().clone();
        let (status, body) = match answer {
            Answer::Queue => (200, "queue"),
            Answer::Status(status) => (status, ""),
            Answer::Body(body) => (200, body),
            Answer::Slow(delay) => {
                tokio::time::sleep(delay).await;
                (200, "queue")
            }
        };
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    }
}

/// An address with nothing listening.
async fn closed_dest() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

// === the manager under test ===

fn key() -> RevisionKey {
    RevisionKey::new(NAMESPACE, NAME)
}

fn state(
    ready: &[&str],
    not_ready: &[&str],
    cluster_ip: Option<&str>,
    probe_optimisation: bool,
) -> RevisionState {
    state_for(key(), ready, not_ready, cluster_ip, probe_optimisation)
}

fn state_for(
    key: RevisionKey,
    ready: &[&str],
    not_ready: &[&str],
    cluster_ip: Option<&str>,
    probe_optimisation: bool,
) -> RevisionState {
    RevisionState {
        revision: Revision {
            key,
            service: String::new(),
            configuration: String::new(),
            container_concurrency: 1,
            timeout: Duration::from_secs(300),
            response_start_timeout: None,
            idle_timeout: None,
            protocol: Protocol::Http1,
        },
        ready: ready.iter().map(|s| s.to_string()).collect(),
        not_ready: not_ready.iter().map(|s| s.to_string()).collect(),
        cluster_ip: cluster_ip.map(str::to_owned),
        activators: Vec::new(),
        probe_optimisation,
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

/// A manager reading a programmatic source, and the updates it sends.
struct Harness {
    source: Arc<StaticFileSource>,
    updates: mpsc::UnboundedReceiver<DestsUpdate>,
    task: JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Harness {
    fn start(options: BackendsOptions, states: Vec<RevisionState>) -> Harness {
        let source = Arc::new(StaticFileSource::from_snapshot(snapshot(states)));
        let (tx, updates) = mpsc::unbounded_channel();
        let task = BackendsManager::new(source.subscribe(), tx, options).spawn();
        Harness {
            source,
            updates,
            task,
        }
    }

    fn auto(states: Vec<RevisionState>) -> Harness {
        Harness::start(BackendsOptions::default(), states)
    }

    fn set(&self, state: RevisionState) {
        self.source.modify(|revisions| {
            revisions.insert(state.revision.key.clone(), state);
        });
    }

    async fn next(&mut self) -> DestsUpdate {
        timeout(Duration::from_secs(3), self.updates.recv())
            .await
            .expect("an update within 3 s")
            .expect("the manager is running")
    }

    /// Asserts no update arrives for `period`.
    async fn quiet(&mut self, period: Duration) {
        if let Ok(update) = timeout(period, self.updates.recv()).await {
            panic!("unexpected update {update:?}");
        }
    }
}

fn pods(dests: &[&str]) -> DestsUpdate {
    DestsUpdate {
        key: key(),
        cluster_ip_dest: None,
        dests: dests.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
    }
}

fn via_cluster_ip(cluster_ip: &str, ready: &[&str]) -> DestsUpdate {
    DestsUpdate {
        cluster_ip_dest: Some(cluster_ip.to_owned()),
        ..pods(ready)
    }
}

// === the probe itself ===

// §10 check 41 (verdicts; the request's shape is checked below).
#[tokio::test]
async fn probe_verdicts() {
    let t = ms(300);
    let healthy = FakeQp::start(Answer::Queue).await;
    assert_eq!(
        probe_queue_proxy(&healthy.dest(), t).await,
        ProbeOutcome::Healthy
    );

    let mesh_like = ProbeOutcome::NotHealthy {
        possibly_mesh: true,
    };
    let not_mesh = ProbeOutcome::NotHealthy {
        possibly_mesh: false,
    };
    for (answer, want) in [
        (Answer::Status(503), mesh_like),
        (Answer::Status(502), mesh_like),
        (Answer::Status(404), not_mesh),
        (Answer::Status(500), not_mesh),
        (Answer::Status(400), not_mesh),
        (Answer::Body("queue\n"), not_mesh),
        (Answer::Body(""), not_mesh),
        (Answer::Body("activator"), not_mesh),
    ] {
        let qp = FakeQp::start(answer.clone()).await;
        assert_eq!(probe_queue_proxy(&qp.dest(), t).await, want, "{answer:?}");
        assert!(!want.is_healthy());
    }

    // No answer at all could be a mesh.
    assert_eq!(probe_queue_proxy(&closed_dest().await, t).await, mesh_like);
    let slow = FakeQp::start(Answer::Slow(ms(1000))).await;
    let started = Instant::now();
    assert_eq!(probe_queue_proxy(&slow.dest(), t).await, mesh_like);
    let took = started.elapsed();
    assert!(
        took >= t && took < ms(600),
        "a slow answer is given up at the deadline, took {took:?}"
    );
}

// === the health state machine ===

// §10 checks 36 (ready pod) and 41 (request shape), and §5.3: healthy pods are
// not probed again.
#[tokio::test]
async fn ready_pod_becomes_a_backend_and_is_not_probed_again() {
    let pod = FakeQp::start(Answer::Queue).await;
    let mut h = Harness::auto(vec![state(&[&pod.dest()], &[], None, true)]);
    assert_eq!(h.next().await, pods(&[&pod.dest()]));
    h.quiet(ms(400)).await;
    assert_eq!(pod.hits(), 1, "a healthy pod is probed once");

    let seen = &pod.seen()[0];
    assert_eq!(seen.path, "/healthz");
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.header("k-network-probe"), Some("queue"));
    assert_eq!(seen.header("user-agent"), Some("Knative-Activator-Probe"));
    assert_eq!(seen.header("host"), Some(pod.dest().as_str()));
    assert_eq!(seen.header("k-passthrough-lb"), None);
}

// §5.3 ticker: only the addresses not yet healthy are re-probed.
#[tokio::test]
async fn only_unhealthy_pods_are_reprobed() {
    let good = FakeQp::start(Answer::Queue).await;
    let bad = FakeQp::start(Answer::Status(503)).await;
    let mut h = Harness::auto(vec![state(&[&good.dest()], &[], None, true)]);
    assert_eq!(h.next().await, pods(&[&good.dest()]));

    // A second pod that does not answer yet: no change, so no update.
    h.set(state(&[&good.dest()], &[&bad.dest()], None, true));
    h.quiet(ms(400)).await;
    assert_eq!(good.hits(), 1, "the healthy pod is left alone");
    assert!(
        bad.hits() >= 4,
        "the failing pod is re-probed ({} probes in 400 ms)",
        bad.hits()
    );
}

// §10 check 36: a not-ready pod whose queue-proxy answers gets traffic early.
#[tokio::test]
async fn not_ready_pod_is_admitted_once_it_answers_with_probe_optimisation() {
    let pod = FakeQp::start(Answer::Status(503)).await;
    let mut h = Harness::auto(vec![state(&[], &[&pod.dest()], None, true)]);
    h.quiet(ms(150)).await;
    pod.set(Answer::Queue);
    assert_eq!(h.next().await, pods(&[&pod.dest()]));
}

// §10 check 36: with an exec readiness probe or a startup probe, only pods
// Kubernetes reports ready count.
#[tokio::test]
async fn without_probe_optimisation_only_ready_pods_count() {
    let ready = FakeQp::start(Answer::Queue).await;
    let not_ready = FakeQp::start(Answer::Queue).await;
    let mut h = Harness::auto(vec![state(
        &[&ready.dest()],
        &[&not_ready.dest()],
        None,
        false,
    )]);
    assert_eq!(h.next().await, pods(&[&ready.dest()]));
    h.quiet(ms(300)).await;
    assert!(
        not_ready.hits() >= 2,
        "the not-ready pod keeps being probed"
    );

    h.set(state(&[&ready.dest(), &not_ready.dest()], &[], None, false));
    assert_eq!(h.next().await, pods(&[&ready.dest(), &not_ready.dest()]));
}

// §10 check 37: 503 then 200 `queue` admits the pod with exactly one update.
#[tokio::test]
async fn failing_then_answering_pod_gives_one_update() {
    let pod = FakeQp::start(Answer::Status(503)).await;
    let cluster = closed_dest().await;
    let mut h = Harness::auto(vec![state(&[&pod.dest()], &[], Some(&cluster), true)]);
    h.quiet(ms(100)).await;
    pod.set(Answer::Queue);
    assert_eq!(h.next().await, pods(&[&pod.dest()]));
    h.quiet(ms(300)).await;
}

// §10 checks 38 (second half) and 41: a wrong body or a 404 is a failure that
// rules out a mesh, so the ClusterIP is not tried.
#[tokio::test]
async fn wrong_body_or_404_is_unhealthy_and_not_a_mesh() {
    let newline = FakeQp::start(Answer::Body("queue\n")).await;
    let missing = FakeQp::start(Answer::Status(404)).await;
    let cluster = FakeQp::start(Answer::Queue).await;
    let mut h = Harness::auto(vec![state(
        &[&newline.dest(), &missing.dest()],
        &[],
        Some(&cluster.dest()),
        true,
    )]);
    h.quiet(ms(400)).await;
    assert_eq!(cluster.hits(), 0, "no ClusterIP fallback");
    assert!(
        newline.hits() >= 2 && missing.hits() >= 2,
        "pods are re-probed"
    );

    // One pod answering 404 among mesh-like failures is enough.
    let mesh_like = FakeQp::start(Answer::Status(503)).await;
    h.set(state(
        &[&missing.dest(), &mesh_like.dest()],
        &[],
        Some(&cluster.dest()),
        true,
    ));
    h.quiet(ms(300)).await;
    assert_eq!(cluster.hits(), 0);
}

// §10 check 38: only mesh-like failures and a healthy ClusterIP switch the
// revision to the ClusterIP, for good.
#[tokio::test]
async fn mesh_like_failures_switch_to_the_cluster_ip_for_good() {
    let unavailable = FakeQp::start(Answer::Status(503)).await;
    let bad_gateway = FakeQp::start(Answer::Status(502)).await;
    let unreachable = closed_dest().await;
    let cluster = FakeQp::start(Answer::Queue).await;
    let ready = [unavailable.dest(), bad_gateway.dest()];
    let ready: Vec<&str> = ready.iter().map(String::as_str).collect();
    let mut h = Harness::auto(vec![state(
        &ready,
        &[&unreachable],
        Some(&cluster.dest()),
        true,
    )]);
    assert_eq!(h.next().await, via_cluster_ip(&cluster.dest(), &ready));
    assert_eq!(cluster.hits(), 1);
    let pod_probes = unavailable.hits();

    // Pods that would now answer are not probed any more; the ClusterIP, known
    // healthy, is not probed again either.
    unavailable.set(Answer::Queue);
    let extra = FakeQp::start(Answer::Queue).await;
    let more = [ready[0], ready[1], &extra.dest()];
    h.set(state(&more, &[], Some(&cluster.dest()), true));
    assert_eq!(h.next().await, via_cluster_ip(&cluster.dest(), &more));
    h.quiet(ms(300)).await;

    // Scaling to zero and back keeps the ClusterIP mode (it is re-probed).
    h.set(state(&[], &[], Some(&cluster.dest()), true));
    assert_eq!(h.next().await, pods(&[]));
    h.set(state(&[ready[0]], &[], Some(&cluster.dest()), true));
    assert_eq!(h.next().await, via_cluster_ip(&cluster.dest(), &[ready[0]]));
    assert_eq!(cluster.hits(), 2);
    assert_eq!(unavailable.hits(), pod_probes, "pods are not probed again");
    assert_eq!(extra.hits(), 0);
}

// §10 check 39: mesh mode `enabled` never probes pods.
#[tokio::test]
async fn mesh_enabled_uses_the_cluster_ip_without_probing_pods() {
    let pod = FakeQp::start(Answer::Queue).await;
    let cluster = FakeQp::start(Answer::Status(503)).await;
    let mut h = Harness::start(
        BackendsOptions {
            mesh_mode: MeshMode::Enabled,
            ..BackendsOptions::default()
        },
        vec![state(&[&pod.dest()], &[], Some(&cluster.dest()), true)],
    );
    h.quiet(ms(100)).await;
    cluster.set(Answer::Queue);
    assert_eq!(
        h.next().await,
        via_cluster_ip(&cluster.dest(), &[&pod.dest()])
    );
    h.quiet(ms(200)).await;
    assert_eq!(pod.hits(), 0);
}

// §10 check 39: mesh mode `disabled` trusts Kubernetes' ready pods and never
// uses the ClusterIP.
#[tokio::test]
async fn mesh_disabled_trusts_ready_pods_and_never_uses_the_cluster_ip() {
    let ready = closed_dest().await; // never probed, so nothing needs to listen
    let not_ready = FakeQp::start(Answer::Status(503)).await;
    let cluster = FakeQp::start(Answer::Queue).await;
    let mut h = Harness::start(
        BackendsOptions {
            mesh_mode: MeshMode::Disabled,
            ..BackendsOptions::default()
        },
        vec![state(
            &[&ready],
            &[&not_ready.dest()],
            Some(&cluster.dest()),
            true,
        )],
    );
    assert_eq!(h.next().await, pods(&[&ready]));
    h.quiet(ms(300)).await;
    assert!(not_ready.hits() >= 2, "not-ready pods are still probed");

    // Even with every pod failing like a mesh would.
    let failing = FakeQp::start(Answer::Status(503)).await;
    h.set(state(&[], &[&failing.dest()], Some(&cluster.dest()), true));
    assert_eq!(h.next().await, pods(&[]));
    h.quiet(ms(300)).await;
    assert_eq!(cluster.hits(), 0);

    failing.set(Answer::Queue);
    assert_eq!(h.next().await, pods(&[&failing.dest()]));
}

// §10 check 40 and §5.2: with passthrough load balancing the probes name the
// private service and the ClusterIP is never used.
#[tokio::test]
async fn passthrough_lb_probes_name_the_service_and_never_fall_back() {
    let pod = FakeQp::start(Answer::Status(503)).await;
    let cluster = FakeQp::start(Answer::Queue).await;
    let mut h = Harness::start(
        BackendsOptions {
            passthrough_lb: true,
            ..BackendsOptions::default()
        },
        vec![state(&[&pod.dest()], &[], Some(&cluster.dest()), true)],
    );
    h.quiet(ms(300)).await;
    assert_eq!(cluster.hits(), 0);
    let seen = &pod.seen()[0];
    assert_eq!(
        seen.header("host"),
        Some("test-revision-private.test-namespace")
    );
    assert_eq!(seen.header("k-passthrough-lb"), Some("true"));
    assert_eq!(seen.header("k-network-probe"), Some("queue"));

    pod.set(Answer::Queue);
    assert_eq!(h.next().await, pods(&[&pod.dest()]));
}

// §10 check 42: a pod moving from ready to not ready is dropped until it
// passes a probe again.
#[tokio::test]
async fn pod_moving_to_not_ready_is_dropped_until_it_answers_again() {
    let a = FakeQp::start(Answer::Queue).await;
    let b = FakeQp::start(Answer::Queue).await;
    let (a_dest, b_dest) = (a.dest(), b.dest());
    let mut h = Harness::auto(vec![state(&[&a_dest, &b_dest], &[], None, true)]);
    assert_eq!(h.next().await, pods(&[&a_dest, &b_dest]));
    assert_eq!(a.hits(), 1);

    // Demoted but still answering: re-probed and kept (probe optimisation).
    h.set(state(&[&b_dest], &[&a_dest], None, true));
    assert_eq!(h.next().await, pods(&[&a_dest, &b_dest]));
    assert_eq!(a.hits(), 2);

    // Back to ready: already healthy, nothing to do.
    h.set(state(&[&a_dest, &b_dest], &[], None, true));
    h.quiet(ms(150)).await;
    assert_eq!(a.hits(), 2);

    // Demoted and failing: dropped, and re-admitted once it answers.
    a.set(Answer::Status(503));
    h.set(state(&[&b_dest], &[&a_dest], None, true));
    assert_eq!(h.next().await, pods(&[&b_dest]));
    h.quiet(ms(150)).await;
    a.set(Answer::Queue);
    assert_eq!(h.next().await, pods(&[&a_dest, &b_dest]));
    assert_eq!(b.hits(), 1, "the pod that stayed ready is never re-probed");
}

// §10 check 43 and §5.1: no addresses means an empty update; a revision with
// neither addresses nor ClusterIP has no watcher yet; removing a revision
// stops its watcher without an update (as upstream).
#[tokio::test]
async fn no_addresses_give_an_empty_update() {
    let other = RevisionKey::new(NAMESPACE, "other");
    let mut h = Harness::auto(vec![
        state(&[], &[], Some("10.96.0.1:80"), true),
        state_for(other.clone(), &[], &[], None, true),
    ]);
    assert_eq!(h.next().await, pods(&[]));
    h.quiet(ms(100)).await;

    let pod = FakeQp::start(Answer::Queue).await;
    h.set(state(&[&pod.dest()], &[], None, true));
    assert_eq!(h.next().await, pods(&[&pod.dest()]));
    h.set(state(&[], &[], None, true));
    assert_eq!(h.next().await, pods(&[]));

    // The other revision gets a watcher of its own once it has a pod.
    h.set(state_for(other.clone(), &[&pod.dest()], &[], None, true));
    let update = h.next().await;
    assert_eq!(
        update,
        DestsUpdate {
            key: other.clone(),
            ..pods(&[&pod.dest()])
        }
    );

    h.source.modify(|revisions| {
        revisions.remove(&other);
    });
    h.quiet(ms(150)).await;
}

// §5.2: the probes of one round run in parallel under one deadline.
#[tokio::test]
async fn a_round_probes_all_pods_in_parallel() {
    let slow: Vec<FakeQp> =
        futures_util::future::join_all((0..3).map(|_| FakeQp::start(Answer::Slow(ms(200))))).await;
    let dests: Vec<String> = slow.iter().map(FakeQp::dest).collect();
    let dests: Vec<&str> = dests.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mut h = Harness::auto(vec![state(&dests, &[], None, true)]);
    assert_eq!(h.next().await, pods(&dests));
    let took = started.elapsed();
    assert!(took < ms(450), "three 200 ms probes took {took:?}");

    // Past the shared deadline the round gives up on all of them at once.
    let slower: Vec<FakeQp> =
        futures_util::future::join_all((0..3).map(|_| FakeQp::start(Answer::Slow(ms(1000))))).await;
    let dests: Vec<String> = slower.iter().map(FakeQp::dest).collect();
    let dests: Vec<&str> = dests.iter().map(String::as_str).collect();
    let mut h = Harness::auto(vec![state(&dests, &[], None, true)]);
    h.quiet(ms(500)).await;
    drop(h);
    let hits: Vec<usize> = slower.iter().map(FakeQp::hits).collect();
    assert!(
        hits.iter().all(|&n| n >= 2),
        "every slow pod is probed again after the deadline: {hits:?}"
    );
}

// === release fast ===

/// How long after `pod` starts answering `queue` the update arrives.
async fn admission_delay(options: BackendsOptions, fail_for: Duration) -> Duration {
    let pod = FakeQp::start(Answer::Status(503)).await;
    let mut h = Harness::start(options, vec![state(&[], &[&pod.dest()], None, true)]);
    h.quiet(fail_for).await;
    pod.set(Answer::Queue);
    let answering = Instant::now();
    assert_eq!(h.next().await, pods(&[&pod.dest()]));
    answering.elapsed()
}

// Beyond upstream: a pod that starts answering soon after it appears is
// admitted within milliseconds, not at the next 200 ms tick.
#[tokio::test]
async fn release_fast_admits_a_pod_within_milliseconds() {
    let fast = admission_delay(BackendsOptions::default(), ms(40)).await;
    let upstream = admission_delay(
        BackendsOptions {
            probe: ProbeOptions {
                initial_interval: ms(200),
                fast_phase: Duration::ZERO,
                ..ProbeOptions::default()
            },
            ..BackendsOptions::default()
        },
        ms(40),
    )
    .await;
    println!(
        "pod answering `queue` -> DestsUpdate: {:.1} ms (upstream's fixed 200 ms cadence: {:.1} ms)",
        fast.as_secs_f64() * 1e3,
        upstream.as_secs_f64() * 1e3
    );
    assert!(fast < ms(100), "took {fast:?}");
}

// §10 check 36 end to end, and release fast through the real queue-proxy: the
// pod is admitted while Kubernetes still reports it not ready, milliseconds
// after its app becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_queue_proxy_pod_is_admitted_fast_once_its_app_is_ready() {
    let pod = RealPod::start(false).await;
    assert_eq!(
        probe_queue_proxy(&pod.main, ms(300)).await,
        ProbeOutcome::NotHealthy {
            possibly_mesh: true
        },
        "a queue-proxy whose app is not ready answers 503"
    );
    let mut h = Harness::auto(vec![state(&[], &[&pod.main], None, true)]);
    h.quiet(ms(60)).await;
    pod.ready.store(true, Ordering::SeqCst);
    let ready = Instant::now();
    assert_eq!(h.next().await, pods(&[&pod.main]));
    let took = ready.elapsed();
    println!(
        "real queue-proxy: app ready -> DestsUpdate: {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    assert!(took < ms(100), "took {took:?}");

    // A ready pod behind a ready app: one probe, one update.
    let other = RealPod::start(true).await;
    h.set(state(&[&other.main], &[&pod.main], None, true));
    assert_eq!(h.next().await, pods(&[&other.main, &pod.main]));
}

// The manager ends once nobody listens to its updates.
#[tokio::test]
async fn manager_stops_when_updates_are_no_longer_received() {
    let source = StaticFileSource::from_snapshot(Snapshot::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let task = BackendsManager::new(source.subscribe(), tx, BackendsOptions::default()).spawn();
    drop(rx);
    timeout(Duration::from_secs(2), task)
        .await
        .expect("the manager stops")
        .unwrap();
}
