//! The queue-proxy's hot paths, one group per concern:
//!
//! - `breaker`: a slot taken and given back, alone and from several threads
//!   at once (the shared atomics and semaphore under contention);
//! - `stats`: a request's In/Out events, alone and contended;
//! - `stat`: encoding the protobuf `Stat`, and publishing a window;
//! - `headers`: the outbound and inbound header rules of a typical request;
//! - `handler`: one whole request through the queue-proxy in-process over a
//!   loopback connection, next to the same request straight to the app.

use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue};
use metrics_proto::{Message, Stat};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use queue_proxy::breaker::Breaker;
use queue_proxy::stats::reporter::StatReporter;
use queue_proxy::stats::{ReqEvent, RequestStats, RequestStatsReport};

fn main() {
    divan::main();
}

/// Iterations per sample for the nanosecond-scale benches: without it divan
/// may settle on one iteration per sample after a slow first one (a page
/// fault, a neighbour's burst), below the timer's precision.
const ITERS: u32 = 1000;

mod breaker {
    use super::*;

    static SHARED: LazyLock<Arc<Breaker>> = LazyLock::new(|| Breaker::new(1024, 10_240));

    #[divan::bench(sample_size = ITERS)]
    fn acquire_release(b: divan::Bencher<'_, '_>) {
        let breaker = Breaker::new(10, 100);
        b.bench_local(|| {
            let permit = breaker.acquire().now_or_never();
            divan::black_box(permit)
        });
    }

    #[divan::bench(sample_size = ITERS)]
    fn try_acquire_release(b: divan::Bencher<'_, '_>) {
        let breaker = Breaker::new(10, 100);
        b.bench_local(|| divan::black_box(breaker.try_acquire()));
    }

    /// Every thread takes and returns slots of one breaker.
    #[divan::bench(threads = [2, 4], sample_size = ITERS)]
    fn acquire_release_contended() {
        divan::black_box(SHARED.acquire().now_or_never());
    }
}

mod stats {
    use super::*;

    static SHARED: LazyLock<Arc<RequestStats>> =
        LazyLock::new(|| Arc::new(RequestStats::new(tokio::time::Instant::now())));

    /// `track` records In; dropping the guard records Out.
    #[divan::bench(sample_size = ITERS)]
    fn track_request(b: divan::Bencher<'_, '_>) {
        let stats = Arc::new(RequestStats::new(tokio::time::Instant::now()));
        b.bench_local(|| drop(divan::black_box(stats.track(false))));
    }

    #[divan::bench(sample_size = ITERS)]
    fn handle_event_in_out(b: divan::Bencher<'_, '_>) {
        let stats = RequestStats::new(tokio::time::Instant::now());
        b.bench_local(|| {
            let now = tokio::time::Instant::now();
            stats.handle_event(ReqEvent::In, now);
            stats.handle_event(ReqEvent::Out, now);
        });
    }

    #[divan::bench(threads = [2, 4], sample_size = ITERS)]
    fn track_request_contended() {
        drop(divan::black_box(SHARED.track(true)));
    }
}

mod stat {
    use super::*;

    fn stat() -> Stat {
        Stat {
            pod_name: "hello-00001-deployment-5d4b9c7f6-abcde".into(),
            average_concurrent_requests: 3.25,
            average_proxied_concurrent_requests: 1.5,
            request_count: 812.0,
            proxied_request_count: 301.0,
            process_uptime: 3600.5,
            timestamp: 0,
        }
    }

    #[divan::bench(sample_size = ITERS)]
    fn encode(b: divan::Bencher<'_, '_>) {
        let stat = stat();
        b.bench_local(|| divan::black_box(&stat).encode_to_vec());
    }

    /// What the reporter does each second: build, encode and swap in the stat.
    #[divan::bench(sample_size = ITERS)]
    fn publish_window(b: divan::Bencher<'_, '_>) {
        let start = tokio::time::Instant::now();
        let reporter = StatReporter::new(stat().pod_name, Duration::from_secs(1), start);
        let report = RequestStatsReport {
            average_concurrency: 3.25,
            average_proxied_concurrency: 1.5,
            request_count: 812.0,
            proxied_request_count: 301.0,
        };
        b.bench_local(|| reporter.report(divan::black_box(&report), start));
    }
}

mod headers {
    use super::*;
    use queue_proxy::proxy::headers::{from_app, to_app};

    fn request_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "hello.default.example.com"),
            ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
            ("accept", "text/html,application/xhtml+xml"),
            ("accept-encoding", "gzip, deflate, br"),
            ("connection", "keep-alive"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-request-id", "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"),
            ("knative-serving-namespace", "default"),
            ("knative-serving-revision", "hello-00001"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    }

    fn response_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("content-type", "text/html; charset=utf-8"),
            ("content-length", "612"),
            ("date", "Sat, 05 Dec 2026 00:00:00 GMT"),
            ("cache-control", "no-cache"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    }

    #[divan::bench(sample_size = ITERS)]
    fn rewrite_request(b: divan::Bencher<'_, '_>) {
        let peer = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        b.with_inputs(request_headers)
            .bench_local_refs(|h| to_app(h, peer, None));
    }

    #[divan::bench(sample_size = ITERS)]
    fn rewrite_response(b: divan::Bencher<'_, '_>) {
        b.with_inputs(response_headers)
            .bench_local_refs(|h| from_app(h, false));
    }
}

mod handler {
    use super::*;
    use loadtest::client::{Conn, request};
    use loadtest::pod::{Pod, PodSpec};

    /// The app and a queue-proxy in front of it (the demo's in-process pod),
    /// served by their own runtime.
    struct Setup {
        rt: tokio::runtime::Runtime,
        app: SocketAddr,
        queue_proxy: SocketAddr,
    }

    fn setup(cc: u32) -> Setup {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let spec = PodSpec {
            key: activator::revision::RevisionKey::new("default", "hello-00001"),
            container_concurrency: cc,
            app_startup: Duration::ZERO,
            app_work: Duration::ZERO,
        };
        let pod = rt
            .block_on(Pod::start(&spec, "bench"))
            .expect("the pod starts");
        let (app, queue_proxy) = (pod.app_addr, pod.serving);
        // Kept running until the runtime is dropped.
        std::mem::forget(pod);
        Setup {
            rt,
            app,
            queue_proxy,
        }
    }

    fn get(b: divan::Bencher<'_, '_>, setup: &Setup, addr: SocketAddr) {
        let mut conn = Conn::new(addr);
        b.bench_local(|| {
            let status = setup
                .rt
                .block_on(conn.send(request("hello.default.example.com", &[])))
                .expect("a response");
            assert_eq!(status, http::StatusCode::OK);
        });
    }

    /// The reference: the same client straight to the app.
    #[divan::bench(sample_count = 100, sample_size = 20)]
    fn direct_to_app(b: divan::Bencher<'_, '_>) {
        let s = setup(0);
        get(b, &s, s.app);
    }

    #[divan::bench(sample_count = 100, sample_size = 20)]
    fn via_queue_proxy(b: divan::Bencher<'_, '_>) {
        let s = setup(0);
        get(b, &s, s.queue_proxy);
    }

    #[divan::bench(sample_count = 100, sample_size = 20)]
    fn via_queue_proxy_cc10(b: divan::Bencher<'_, '_>) {
        let s = setup(10);
        get(b, &s, s.queue_proxy);
    }
}
