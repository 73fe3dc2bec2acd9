//! The README's "run" command until the full demo (activator, cold start) lands:
//! a sample app behind a real queue-proxy on loopback, a little traffic of every
//! kind, and a report of what was served and what the autoscaler would have seen.
//!
//! `cargo run --release -p queue-proxy --example demo`

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use metrics_proto::{Message, Stat};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Container concurrency of the demo revision: small, so the breaker shows.
const CC: usize = 2;
/// Work the sample app does per request.
const APP_WORK: Duration = Duration::from_millis(20);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("queue-proxy demo: a sample app behind the queue-proxy, on loopback\n");
    let served = Arc::new(AppCounters::default());
    let app = start_sample_app(served.clone()).await;
    println!(
        "  sample app     http://{app}  ({} ms of work per request)",
        APP_WORK.as_millis()
    );

    let mut env = queue_proxy::config::test_env(app.port());
    for (k, v) in [
        ("QUEUE_SERVING_PORT", "0"),
        ("QUEUE_PROXY_ADMIN_PORT", "0"),
        ("QUEUE_PROXY_METRICS_PORT", "0"),
        ("SERVING_POD", "demo-00001-deployment-abc12"),
        ("CONTAINER_CONCURRENCY", "2"),
        // The demo stops at once instead of draining for upstream's 30 s.
        ("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", "0"),
    ] {
        env.insert(k.into(), v.into());
    }
    let config = queue_proxy::config::Config::from_env(&env).expect("demo env is valid");
    let sidecar = queue_proxy::Sidecar::bind(config).expect("bind loopback ports");
    let main = loopback(sidecar.main_addr());
    let metrics = loopback(sidecar.metrics_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let qp = tokio::spawn(sidecar.run(async move {
        let _ = stop_rx.await;
    }));
    println!(
        "  queue-proxy    http://{main}  (CONTAINER_CONCURRENCY={CC}, queue {})",
        10 * CC
    );
    println!("  autoscaler     http://{metrics}/metrics (protobuf Stat, 1 s windows)\n");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let watcher = tokio::spawn(watch_stats(metrics, seen.clone()));
    let started = Instant::now();
    let mut statuses: BTreeMap<(&str, u16), usize> = BTreeMap::new();

    println!("[1/4] 40 sequential HTTP/1.1 requests");
    for _ in 0..40 {
        let status = send(main, false, &[]).await;
        *statuses.entry(("http/1.1", status)).or_default() += 1;
    }
    println!("[2/4] 20 sequential h2c requests (HTTP/2 with prior knowledge)");
    for _ in 0..20 {
        let status = send(main, true, &[]).await;
        *statuses.entry(("h2c", status)).or_default() += 1;
    }
    println!("[3/4] 20 requests as the activator sends them (K-Proxy-Request: activator)");
    for _ in 0..20 {
        let status = send(main, false, &[("k-proxy-request", "activator")]).await;
        *statuses.entry(("via activator", status)).or_default() += 1;
    }
    println!(
        "[4/4] a burst of 40 concurrent requests at CC={CC}: {} run or wait, the rest get 503",
        11 * CC
    );
    let burst: Vec<_> = (0..40)
        .map(|_| tokio::spawn(send(main, false, &[])))
        .collect();
    for b in burst {
        let status = b.await.unwrap();
        *statuses.entry(("burst", status)).or_default() += 1;
    }
    // Let the last window close.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let elapsed = started.elapsed();
    watcher.abort();
    let seen = std::mem::take(&mut *seen.lock().unwrap());

    println!("\n== What the clients got ({:.1} s)", elapsed.as_secs_f64());
    for ((kind, status), n) in &statuses {
        println!("  {kind:<14} {status}  x{n}");
    }
    println!("\n== What the app served");
    println!(
        "  HTTP/1.1 requests {:>4}",
        served.http1.load(Ordering::Relaxed)
    );
    println!(
        "  HTTP/2 requests   {:>4}",
        served.http2.load(Ordering::Relaxed)
    );
    println!(
        "  peak concurrency  {:>4}  (never above CC={CC})",
        served.peak.load(Ordering::Relaxed)
    );

    let stats = tokio::time::timeout(Duration::from_secs(2), scrape(metrics)).await;
    println!("\n== What the autoscaler saw, window by window");
    println!(
        "  {:>7}  {:>11}  {:>9}  {:>8}  {:>8}",
        "uptime", "concurrency", "proxied", "req/s", "proxied"
    );
    for s in &seen {
        println!(
            "  {:>6.1}s  {:>11.3}  {:>9.3}  {:>8.0}  {:>8.0}",
            s.process_uptime,
            s.average_concurrent_requests,
            s.average_proxied_concurrent_requests,
            s.request_count,
            s.proxied_request_count
        );
    }
    if let Ok(Some(last)) = stats {
        println!("  pod_name: {}", last.pod_name);
    }

    let errors: usize = statuses
        .iter()
        .filter(|((kind, status), _)| !(*status == 200 || (*kind == "burst" && *status == 503)))
        .map(|(_, n)| n)
        .sum();
    println!("\n== Errors (anything but 200, or 503 from the burst): {errors}");
    let _ = stop_tx.send(());
    let _ = qp.await;
    if errors > 0 {
        std::process::exit(1);
    }
}

#[derive(Default)]
struct AppCounters {
    http1: AtomicUsize,
    http2: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

async fn start_sample_app(counters: Arc<AppCounters>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counters = counters.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let counters = counters.clone();
                    async move {
                        let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        counters.peak.fetch_max(now, Ordering::SeqCst);
                        match req.version() {
                            http::Version::HTTP_2 => &counters.http2,
                            _ => &counters.http1,
                        }
                        .fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(APP_WORK).await;
                        counters.in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"hello\n",
                        ))))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// One request on a new connection; returns the status (502 if the proxy is unreachable).
async fn send(addr: SocketAddr, h2: bool, headers: &[(&str, &str)]) -> u16 {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return StatusCode::BAD_GATEWAY.as_u16();
    };
    let io = TokioIo::new(stream);
    let mut req = Request::get(format!("http://demo.default.example.com:{}/", addr.port()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let resp = if h2 {
        let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        tx.send_request(req).await
    } else {
        let (mut tx, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        tx.send_request(req).await
    };
    match resp {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            status
        }
        Err(_) => StatusCode::BAD_GATEWAY.as_u16(),
    }
}

async fn scrape(metrics: SocketAddr) -> Option<Stat> {
    let stream = TcpStream::connect(metrics).await.ok()?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = Request::get("/metrics")
        .header("host", "autoscaler")
        .header("accept", "application/protobuf")
        .body(Full::new(Bytes::new()))
        .ok()?;
    let body = tx
        .send_request(req)
        .await
        .ok()?
        .into_body()
        .collect()
        .await
        .ok()?;
    Stat::decode(body.to_bytes()).ok()
}

/// Scrapes every 250 ms and keeps each closed window once, as an autoscaler would.
async fn watch_stats(metrics: SocketAddr, seen: Arc<Mutex<Vec<Stat>>>) {
    let mut last_uptime = 0.0;
    loop {
        if let Some(stat) = scrape(metrics).await
            && stat.process_uptime > 0.0
            && stat.process_uptime != last_uptime
        {
            last_uptime = stat.process_uptime;
            seen.lock().unwrap().push(stat);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}
