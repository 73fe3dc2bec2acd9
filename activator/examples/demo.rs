//! The README's "run" command: a sample app behind a queue-proxy and the
//! activator on loopback, a cold start included, and a printed report.
//!
//! `cargo run --release -p activator --example demo`
//!
//! 1. The revision has no pod. Requests reach the activator and are held; the
//!    activator pokes a stand-in autoscaler over its websocket at once.
//! 2. The stand-in "scales": it starts the app (with a start-up delay) and its
//!    queue-proxy, and the pod appears in the (static) endpoints.
//! 3. The held requests are released; then a steady phase through the
//!    activator, and a burst straight at the queue-proxy past its concurrency.
//!
//! The stand-in autoscaler is a test tool, kept small on purpose.

use activator::config::Config;
use activator::revision::{Protocol, Revision, RevisionKey};
use activator::server::ActivatorServer;
use activator::source::static_file::StaticFileSource;
use activator::source::{RevisionState, Snapshot};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_proto::{Message, WireStatMessages};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

const APP_STARTUP: Duration = Duration::from_millis(400);
const APP_WORK: Duration = Duration::from_millis(10);
const CC: u32 = 2;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("activator + queue-proxy demo, on loopback\n");
    let key = RevisionKey::new("default", "hello-00001");

    // The stand-in autoscaler.
    let (autoscaler_url, mut frames) = autoscaler().await;
    println!("  autoscaler (stand-in)  {autoscaler_url}");

    // The activator, with a revision that has no pod yet.
    let source = Arc::new(StaticFileSource::from_snapshot(snapshot(&key, vec![])));
    let env: HashMap<String, String> = [
        ("POD_NAME", "activator-demo"),
        ("POD_IP", "127.0.0.1"),
        ("SYSTEM_NAMESPACE", "knative-serving"),
        ("ACTIVATOR_HTTP_PORT", "0"),
        ("ACTIVATOR_H2C_PORT", "0"),
        ("ACTIVATOR_DRAIN_TIMEOUT_MS", "0"),
        ("ACTIVATOR_AUTOSCALER_URL", autoscaler_url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let server =
        ActivatorServer::bind(Config::from_env(&env, None).unwrap(), source.clone()).unwrap();
    let activator = SocketAddr::from(([127, 0, 0, 1], server.http_addr().port()));
    let (stop_activator, stopped) = oneshot::channel::<()>();
    let activator_task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    println!("  activator              http://{activator}  (revision {key}, CC={CC}, no pods)\n");
    // Ready (as kubelet sees it) once its websocket to the autoscaler is up.
    while probe_ready(activator).await != 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Phase 1: a cold start.
    println!("[1/3] 20 requests at scale zero: held by the activator");
    let sent = Instant::now();
    let held: Vec<_> = (0..20)
        .map(|_| tokio::spawn(timed_get(activator)))
        .collect();
    let poke = tokio::time::timeout(Duration::from_secs(5), frames.recv())
        .await
        .expect("the activator pokes the autoscaler")
        .unwrap();
    let poke_after = sent.elapsed();
    let stat = poke.messages[0].stat.clone().unwrap_or_default();
    println!(
        "      poke after {:.1} ms: {}/{} concurrency {} requests {}",
        poke_after.as_secs_f64() * 1e3,
        poke.messages[0].namespace,
        poke.messages[0].name,
        stat.average_concurrent_requests,
        stat.request_count
    );
    println!(
        "      the stand-in autoscaler scales to 1: the app starts ({} ms start-up)",
        APP_STARTUP.as_millis()
    );
    tokio::time::sleep(APP_STARTUP).await;
    let app = start_app().await;
    let (qp, qp_metrics, stop_qp, qp_task) = start_queue_proxy(app.port()).await;
    source.set(snapshot(&key, vec![qp.to_string()]));
    let mut cold = Vec::new();
    let mut statuses: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    for h in held {
        let (status, waited) = h.await.unwrap();
        *statuses.entry(("cold start", status)).or_default() += 1;
        cold.push(waited);
    }
    cold.sort();

    // Phase 2: steady traffic through the activator.
    println!("[2/3] steady: 4 clients x 50 requests through the activator");
    let steady: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..50 {
                    got.push(timed_get(activator).await.0);
                }
                got
            })
        })
        .collect();
    for s in steady {
        for status in s.await.unwrap() {
            *statuses.entry(("steady", status)).or_default() += 1;
        }
    }

    // Phase 3: a burst straight at the queue-proxy, past CC + 10xCC.
    println!(
        "[3/3] a burst of 40 straight at the queue-proxy (CC={CC}: {} run or wait)",
        11 * CC
    );
    let burst: Vec<_> = (0..40)
        .map(|_| tokio::spawn(timed_get_direct(qp)))
        .collect();
    for b in burst {
        *statuses.entry(("burst", b.await.unwrap())).or_default() += 1;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut reports = Vec::new();
    while let Ok(frame) = frames.try_recv() {
        reports.push(frame);
    }
    let qp_stat = scrape(qp_metrics).await;

    println!("\n== Cold start");
    let pct = |p: f64| cold[((cold.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "  held requests waited p50 {:.0} ms, p99 {:.0} ms (app start-up {} ms)",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        APP_STARTUP.as_millis()
    );
    println!("\n== What the clients got");
    for ((phase, status), n) in &statuses {
        println!("  {phase:<11} {status}  x{n}");
    }
    println!(
        "\n== What the autoscaler got from the activator ({} frames after the poke)",
        reports.len()
    );
    for frame in reports.iter().take(6) {
        for m in &frame.messages {
            let s = m.stat.clone().unwrap_or_default();
            println!(
                "  {}/{}: concurrency {:.2}, requests {}",
                m.namespace, m.name, s.average_concurrent_requests, s.request_count
            );
        }
    }
    if let Some(s) = qp_stat {
        println!("\n== The queue-proxy's last stat window (:9090, protobuf)");
        println!(
            "  concurrency {:.2} (proxied {:.2}), requests {} (proxied {}), uptime {:.1} s",
            s.average_concurrent_requests,
            s.average_proxied_concurrent_requests,
            s.request_count,
            s.proxied_request_count,
            s.process_uptime
        );
    }
    let errors: usize = statuses
        .iter()
        .filter(|((phase, status), _)| !(*status == 200 || (*phase == "burst" && *status == 503)))
        .map(|(_, n)| n)
        .sum();
    println!("\n== Errors (anything but 200, or 503 from the burst): {errors}");
    let _ = stop_qp.send(());
    let _ = stop_activator.send(());
    let _ = tokio::join!(qp_task, activator_task);
    if errors > 0 {
        std::process::exit(1);
    }
}

fn snapshot(key: &RevisionKey, pods: Vec<String>) -> Snapshot {
    let state = RevisionState {
        revision: Revision {
            key: key.clone(),
            service: String::new(),
            configuration: String::new(),
            container_concurrency: CC,
            timeout: Duration::from_secs(60),
            response_start_timeout: None,
            idle_timeout: None,
            protocol: Protocol::Http1,
        },
        ready: pods,
        not_ready: vec![],
        cluster_ip: None,
        activators: vec![],
        probe_optimisation: true,
    };
    Arc::new(BTreeMap::from([(key.clone(), state)]))
}

async fn autoscaler() -> (String, mpsc::UnboundedReceiver<WireStatMessages>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Binary(data) = msg
                        && let Ok(frame) = WireStatMessages::decode(data)
                    {
                        let _ = tx.send(frame);
                    }
                }
            });
        }
    });
    (url, rx)
}

async fn start_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<Incoming>| async {
                    tokio::time::sleep(APP_WORK).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn start_queue_proxy(
    app_port: u16,
) -> (
    SocketAddr,
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut env = queue_proxy::config::test_env(app_port);
    for k in [
        "QUEUE_SERVING_PORT",
        "QUEUE_PROXY_ADMIN_PORT",
        "QUEUE_PROXY_METRICS_PORT",
    ] {
        env.insert(k.into(), "0".into());
    }
    env.insert("CONTAINER_CONCURRENCY".into(), CC.to_string());
    env.insert("SERVING_POD".into(), "hello-00001-deployment-demo".into());
    env.insert("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS".into(), "0".into());
    let sidecar =
        queue_proxy::Sidecar::bind(queue_proxy::config::Config::from_env(&env).unwrap()).unwrap();
    let main = SocketAddr::from(([127, 0, 0, 1], sidecar.main_addr().port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], sidecar.metrics_addr().port()));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(sidecar.run(async move {
        let _ = stopped.await;
    }));
    (main, metrics, stop, task)
}

/// A GET for the revision through the activator: status and how long it took.
async fn timed_get(activator: SocketAddr) -> (u16, Duration) {
    let started = Instant::now();
    let req = Request::get("/")
        .header("host", "hello.default.example.com")
        .header("knative-serving-namespace", "default")
        .header("knative-serving-revision", "hello-00001")
        .body(Full::new(Bytes::new()))
        .unwrap();
    (send(activator, req).await, started.elapsed())
}

async fn probe_ready(activator: SocketAddr) -> u16 {
    let req = Request::get("/")
        .header("host", "activator")
        .header("user-agent", "kube-probe/1.30")
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(activator, req).await
}

async fn timed_get_direct(qp: SocketAddr) -> u16 {
    let req = Request::get("/")
        .header("host", "hello.default.example.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(qp, req).await
}

async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> u16 {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return 502;
    };
    let Ok((mut tx, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return 502;
    };
    tokio::spawn(conn);
    match tx.send_request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            status
        }
        Err(_) => 502,
    }
}

async fn scrape(metrics: SocketAddr) -> Option<metrics_proto::Stat> {
    let stream = TcpStream::connect(metrics).await.ok()?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = Request::get("/metrics")
        .header("host", "autoscaler")
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
    metrics_proto::Stat::decode(body.to_bytes()).ok()
}
