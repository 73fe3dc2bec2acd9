//! The throttler through its public API: upstream's `TestThrottlerSuccesses`,
//! `TestMultipleActivators`, `TestThrottlerErrorNoRevision` and friends
//! (`pkg/activator/net/throttler_test.go`), plus the queueing guarantees of
//! spec §3.4–§3.5. Each test names the spec §10 checks it covers.

use activator::revision::{DestsUpdate, Revision, RevisionKey};
use activator::throttler::{Lease, Throttler, ThrottlerError};
use futures_util::future::join_all;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::timeout;

fn key() -> RevisionKey {
    RevisionKey::new("real-namespace", "real-name")
}

fn revision(cc: u32) -> Revision {
    Revision {
        key: key(),
        service: String::new(),
        configuration: String::new(),
        container_concurrency: cc,
        timeout: Duration::from_secs(300),
        response_start_timeout: None,
        idle_timeout: None,
        protocol: Default::default(),
    }
}

fn throttler(cc: u32) -> Arc<Throttler> {
    let t = Arc::new(Throttler::new(Some("130.0.0.2".into())));
    t.upsert_revision(&revision(cc));
    t
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn pods(t: &Throttler, dests: &[&str]) {
    t.update_dests(DestsUpdate {
        key: key(),
        cluster_ip_dest: None,
        dests: set(dests),
    });
}

fn cluster_ip(t: &Throttler, ip: &str, dests: &[&str]) {
    t.update_dests(DestsUpdate {
        key: key(),
        cluster_ip_dest: Some(ip.into()),
        dests: set(dests),
    });
}

/// `n` requests at once, all held.
async fn concurrent(t: &Throttler, n: usize) -> Vec<Lease> {
    let k = key();
    let leases = join_all((0..n).map(|_| t.acquire(&k))).await;
    leases.into_iter().map(|l| l.unwrap()).collect()
}

fn dest_set(leases: &[Lease]) -> BTreeSet<String> {
    leases.iter().map(|l| l.dest().to_owned()).collect()
}

fn spawn_acquire(t: &Arc<Throttler>) -> JoinHandle<Result<Lease, ThrottlerError>> {
    let t = t.clone();
    tokio::spawn(async move { t.acquire(&key()).await })
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

async fn finished(h: JoinHandle<Result<Lease, ThrottlerError>>) -> Result<Lease, ThrottlerError> {
    timeout(Duration::from_secs(1), h)
        .await
        .expect("the waiter finished")
        .expect("the waiter did not panic")
}

/// Polls `f` once; `true` if it is still pending.
async fn poll_once_pending<F: Future + Unpin>(f: &mut F) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx).is_pending())).await
}

// §10 check 13 (throttler part): a single healthy pod; a repeated identical
// update changes nothing.
#[tokio::test(start_paused = true)]
async fn single_healthy_pod() {
    let t = throttler(1);
    pods(&t, &["128.0.0.1:1234"]);
    pods(&t, &["128.0.0.1:1234"]);
    assert_eq!(t.capacity(&key()), Some(1));
    let lease = t.acquire(&key()).await.unwrap();
    assert_eq!(lease.dest(), "128.0.0.1:1234");
    assert!(!lease.is_cluster_ip());
}

// Upstream's "single healthy podIP, infinite cc": the last update wins.
#[tokio::test(start_paused = true)]
async fn unlimited_concurrency_follows_the_latest_pods() {
    let t = throttler(0);
    pods(&t, &["128.0.0.2:1234", "128.0.0.32:1212"]);
    pods(&t, &["128.0.0.1:1234"]);
    assert_eq!(t.acquire(&key()).await.unwrap().dest(), "128.0.0.1:1234");
}

// Upstream's "spread podIP load": cc = 1, two pods, two requests.
#[tokio::test(start_paused = true)]
async fn spread_over_pods_at_cc1() {
    let t = throttler(1);
    pods(&t, &["128.0.0.3:1234"]);
    pods(&t, &["128.0.0.1:1234", "128.0.0.2:1234"]);
    assert_eq!(t.capacity(&key()), Some(2));
    let leases = concurrent(&t, 2).await;
    assert_eq!(
        dest_set(&leases),
        set(&["128.0.0.1:1234", "128.0.0.2:1234"])
    );
}

// §10 check 32 (upstream's "clumping test").
#[tokio::test(start_paused = true)]
async fn first_available_packs_requests_onto_the_first_pod() {
    let t = throttler(3);
    pods(
        &t,
        &[
            "128.0.0.1:1234",
            "128.0.0.2:1234",
            "128.0.0.2:4236",
            "128.0.0.2:1233",
            "128.0.0.2:1230",
        ],
    );
    assert_eq!(t.capacity(&key()), Some(15));
    let leases = concurrent(&t, 3).await;
    assert_eq!(dest_set(&leases), set(&["128.0.0.1:1234"]));
}

// §10 check 33 (upstream's "roundrobin test").
#[tokio::test(start_paused = true)]
async fn round_robin_gives_each_pod_one() {
    let t = throttler(5);
    let all = ["128.0.0.1:1234", "128.0.0.2:1234", "211.212.213.214"];
    pods(&t, &all);
    let leases = concurrent(&t, 3).await;
    assert_eq!(dest_set(&leases), set(&all));
}

// §10 check 35 (upstream's "single healthy clusterIP" and "multiple ClusterIP
// requests"): everything goes to the ClusterIP.
#[tokio::test(start_paused = true)]
async fn cluster_ip_takes_every_request() {
    let t = throttler(1);
    pods(&t, &["128.0.0.1:1234", "128.0.0.2:1234"]);
    cluster_ip(&t, "129.0.0.1:1234", &["128.0.0.1:1234", "128.0.0.2:1234"]);
    assert_eq!(t.capacity(&key()), Some(2));
    let leases = concurrent(&t, 2).await;
    assert_eq!(dest_set(&leases), set(&["129.0.0.1:1234"]));
    assert!(leases.iter().all(Lease::is_cluster_ip));
}

// §10 checks 34 and 18 (throttler part; upstream's TestMultipleActivators):
// with capacity 1 the second request waits until its deadline while the
// first goes through.
#[tokio::test(start_paused = true)]
async fn second_request_waits_out_its_deadline_at_capacity_1() {
    let t = throttler(1);
    pods(&t, &["128.0.0.1:1234", "128.0.0.2:1234", "128.0.0.23:1234"]);
    t.update_activators(&key(), &["130.0.0.1".into(), "130.0.0.2".into()]);
    assert_eq!(t.capacity(&key()), Some(1));
    // Byte-wise order, as in Go: "128.0.0.23:…" sorts before "128.0.0.2:…"
    // ('3' < ':'), so index 1 of 2 gets the middle one of [.1, .23, .2].
    assert_eq!(t.assigned_dests(&key()).unwrap(), vec!["128.0.0.23:1234"]);

    let first = t.acquire(&key()).await.unwrap();
    let second = timeout(Duration::from_millis(100), t.acquire(&key())).await;
    assert!(second.is_err(), "the second request timed out waiting");
    assert_eq!(first.dest(), "128.0.0.23:1234");
}

// §10 check 18 (throttler part): no backends, the request just waits.
#[tokio::test(start_paused = true)]
async fn without_backends_requests_wait() {
    for cc in [0, 1, 10] {
        let t = throttler(cc);
        assert_eq!(t.capacity(&key()), Some(0));
        assert!(
            timeout(Duration::from_secs(1), t.acquire(&key()))
                .await
                .is_err()
        );
    }
}

// §10 check 29: cc = 0 is a gate, closed without pods, open with any.
#[tokio::test(start_paused = true)]
async fn unlimited_concurrency_gate_opens_and_closes() {
    let t = throttler(0);
    t.update_activators(&key(), &["130.0.0.1".into(), "130.0.0.2".into()]);
    let waiters: Vec<_> = (0..20).map(|_| spawn_acquire(&t)).collect();
    settle().await;
    assert!(waiters.iter().all(|w| !w.is_finished()), "closed: all wait");

    pods(&t, &["ip1", "ip2", "ip3"]);
    assert_eq!(t.capacity(&key()), Some(1));
    // All pods, whatever this activator's index.
    assert_eq!(t.assigned_dests(&key()).unwrap(), vec!["ip1", "ip2", "ip3"]);
    let mut held = Vec::new();
    for w in waiters {
        held.push(finished(w).await.unwrap());
    }
    // Open: no limit at all, and the load spreads over the pods.
    held.extend(concurrent(&t, 100).await);
    for dest in ["ip1", "ip2", "ip3"] {
        let n = held.iter().filter(|l| l.dest() == dest).count();
        assert!(n > 20, "{dest} got {n} of 120");
    }

    // Closed again: in-flight leases stay, newcomers wait.
    pods(&t, &[]);
    assert_eq!(t.capacity(&key()), Some(0));
    let late = spawn_acquire(&t);
    settle().await;
    assert!(!late.is_finished());
    drop(held);
    pods(&t, &["ip9"]);
    assert_eq!(finished(late).await.unwrap().dest(), "ip9");
}

// Random choice of 2 through the throttler: with two pods, held requests
// alternate between them (the lighter one always wins).
#[tokio::test(start_paused = true)]
async fn random_choice_of_two_sends_to_the_lighter_pod() {
    let t = throttler(0);
    pods(&t, &["a", "b"]);
    let mut held = Vec::new();
    for i in 0..10 {
        held.push(t.acquire(&key()).await.unwrap());
        let on_a = held.iter().filter(|l| l.dest() == "a").count();
        let on_b = held.len() - on_a;
        assert!(
            on_a.abs_diff(on_b) <= 1,
            "after {} requests: {on_a}/{on_b}",
            i + 1
        );
    }
    // Free everything on "a": the next ones all go there until it catches up.
    held.retain(|l| l.dest() == "b");
    for _ in 0..5 {
        held.push(t.acquire(&key()).await.unwrap());
    }
    assert_eq!(held.iter().filter(|l| l.dest() == "a").count(), 5);
}

// Spec §3.5: a capacity decrease never preempts. In-flight leases keep their
// pods, new requests wait, and returning slots are absorbed until the
// revision is back under its new capacity.
#[tokio::test(start_paused = true)]
async fn shrinking_capacity_does_not_preempt() {
    let t = throttler(1);
    pods(&t, &["a", "b"]);
    let leases = concurrent(&t, 2).await;
    let (on_a, on_b): (Vec<_>, Vec<_>) = leases.into_iter().partition(|l| l.dest() == "a");
    let (on_a, on_b) = (
        on_a.into_iter().next().unwrap(),
        on_b.into_iter().next().unwrap(),
    );

    // "b" goes away while its request runs.
    pods(&t, &["a"]);
    assert_eq!(t.capacity(&key()), Some(1));
    assert_eq!(on_b.dest(), "b");
    let waiter = spawn_acquire(&t);
    settle().await;
    assert!(!waiter.is_finished());

    // The request on "b" finishing frees no capacity: its slot is withdrawn.
    drop(on_b);
    settle().await;
    assert!(!waiter.is_finished());

    drop(on_a);
    assert_eq!(finished(waiter).await.unwrap().dest(), "a");
}

// Spec §3.5, seen without per-pod limits (ClusterIP mode): the revision
// breaker itself withdraws returning slots after a decrease.
#[tokio::test(start_paused = true)]
async fn shrinking_cluster_ip_capacity_absorbs_returning_slots() {
    let t = throttler(1);
    cluster_ip(&t, "129.0.0.1:1234", &["a", "b"]);
    let (first, second) = {
        let mut held = concurrent(&t, 2).await.into_iter();
        (held.next().unwrap(), held.next().unwrap())
    };
    cluster_ip(&t, "129.0.0.1:1234", &["a"]);
    assert_eq!(t.capacity(&key()), Some(1));
    let waiter = spawn_acquire(&t);
    settle().await;
    assert!(!waiter.is_finished());
    drop(first);
    settle().await;
    assert!(
        !waiter.is_finished(),
        "one in flight is already the new capacity"
    );
    drop(second);
    assert!(finished(waiter).await.unwrap().is_cluster_ip());
}

// Spec §3.5 refinement: waiters are served in arrival order.
#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let t = throttler(1);
    pods(&t, &["a"]);
    let first = t.acquire(&key()).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..5 {
        let (t, tx) = (t.clone(), tx.clone());
        tokio::spawn(async move {
            let lease = t.acquire(&key()).await.unwrap();
            tx.send(i).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(lease);
        });
        tokio::task::yield_now().await;
    }
    drop(first);
    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(rx.recv().await.unwrap());
    }
    assert_eq!(order, vec![0, 1, 2, 3, 4]);
}

// New capacity wakes waiters in arrival order too.
#[tokio::test(start_paused = true)]
async fn new_pods_release_waiters_in_arrival_order() {
    let t = throttler(1);
    let mut waiters = Vec::new();
    for _ in 0..3 {
        waiters.push(spawn_acquire(&t));
        tokio::task::yield_now().await;
    }
    settle().await;
    pods(&t, &["a"]);
    settle().await;
    let done: Vec<_> = waiters.iter().map(JoinHandle::is_finished).collect();
    assert_eq!(done, vec![true, false, false]);
    let mut waiters = waiters.into_iter();
    drop(finished(waiters.next().unwrap()).await.unwrap());
    settle().await;
    let done: Vec<_> = waiters
        .as_slice()
        .iter()
        .map(JoinHandle::is_finished)
        .collect();
    assert_eq!(done, vec![true, false]);
}

// Cancel-safety: a waiter dropped after the freed slot was handed to it does
// not swallow the wake-up; the next waiter gets the slot.
#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_does_not_lose_the_wake_up() {
    let t = throttler(1);
    pods(&t, &["a"]);
    let running = t.acquire(&key()).await.unwrap();
    let k = key();
    let mut cancelled = Box::pin(t.acquire(&k));
    assert!(poll_once_pending(&mut cancelled).await);
    let next = spawn_acquire(&t);
    settle().await;

    drop(running); // the slot goes to `cancelled`, first in line...
    drop(cancelled); // ...which gives it up without running again.
    let lease = finished(next).await.unwrap();
    assert_eq!(lease.dest(), "a");
    drop(lease);
    // Nothing leaked: the revision takes one request again.
    assert!(
        timeout(Duration::ZERO, t.acquire(&key()))
            .await
            .is_ok_and(|l| l.is_ok())
    );
}

// §10 checks 10 and 44 (throttler part): unknown or removed revisions.
#[tokio::test(start_paused = true)]
async fn unknown_and_removed_revisions_are_not_found() {
    let t = Throttler::new(None);
    let err = t.acquire(&key()).await.unwrap_err();
    assert_eq!(err, ThrottlerError::RevisionNotFound(key()));
    assert_eq!(
        err.to_string(),
        r#"revision.serving.knative.dev "real-name" not found"#
    );

    t.upsert_revision(&revision(1));
    pods(&t, &["128.0.0.1:1234"]);
    let lease = t.acquire(&key()).await.unwrap();
    t.remove_revision(&key());
    assert_eq!(
        t.acquire(&key()).await.unwrap_err(),
        ThrottlerError::RevisionNotFound(key())
    );
    assert_eq!(t.capacity(&key()), None);
    // A lease handed out before stays usable.
    assert_eq!(lease.dest(), "128.0.0.1:1234");
}

// Removing a revision fails its waiters at once, for both breaker kinds.
#[tokio::test(start_paused = true)]
async fn removing_a_revision_releases_its_waiters() {
    for cc in [0, 1] {
        let t = throttler(cc);
        let waiters: Vec<_> = (0..5).map(|_| spawn_acquire(&t)).collect();
        settle().await;
        assert!(waiters.iter().all(|w| !w.is_finished()));
        t.remove_revision(&key());
        for w in waiters {
            assert_eq!(
                finished(w).await.unwrap_err(),
                ThrottlerError::RevisionGone,
                "cc {cc}"
            );
        }
    }
}

// Upstream's TestThrottlerErrorOneTimesOut with ClusterIP: capacity 1 from
// one ready backend; the second request waits, the first proceeds.
#[tokio::test(start_paused = true)]
async fn cluster_ip_capacity_is_enforced() {
    let t = throttler(1);
    cluster_ip(&t, "129.0.0.1:1234", &["128.0.0.1:1234"]);
    assert_eq!(t.capacity(&key()), Some(1));
    let first = t.acquire(&key()).await.unwrap();
    assert!(
        timeout(Duration::from_millis(100), t.acquire(&key()))
            .await
            .is_err()
    );
    drop(first);
    assert!(t.acquire(&key()).await.unwrap().is_cluster_ip());
}

// §10 check 43: private Endpoints emptied, capacity drops to 0.
#[tokio::test(start_paused = true)]
async fn empty_dests_mean_no_capacity() {
    let t = throttler(10);
    pods(&t, &["a", "b"]);
    assert_eq!(t.capacity(&key()), Some(20));
    pods(&t, &[]);
    assert_eq!(t.capacity(&key()), Some(0));
    assert_eq!(t.assigned_dests(&key()), Some(vec![]));
}

// Many requests through a busy revision from several threads: every one is
// served, never more at once than the capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_never_exceeds_capacity_under_load() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let t = throttler(2);
    pods(&t, &["a", "b", "c"]);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let (t, running, peak) = (t.clone(), running.clone(), peak.clone());
            tokio::spawn(async move {
                let lease = t.acquire(&key()).await.unwrap();
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                drop(lease);
            })
        })
        .collect();
    for task in tasks {
        timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=6).contains(&peak), "peak {peak}");
}
