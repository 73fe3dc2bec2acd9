//! A stand-in for a revision's pod (or its private Service's ClusterIP): it
//! answers the activator's probes with a configurable status and body, and
//! every other request with its own name, optionally holding requests until
//! released. It records the probes it saw and counts the requests it served.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What a probe request looked like.
#[derive(Debug, Clone)]
pub struct SeenProbe {
    pub path: String,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub network_probe: Option<String>,
    pub passthrough_lb: Option<String>,
}

struct Shared {
    name: String,
    probe_answer: Mutex<(u16, &'static str)>,
    probes: Mutex<Vec<SeenProbe>>,
    served: AtomicUsize,
    in_flight: AtomicUsize,
    release: watch::Sender<bool>,
}

/// A fake pod on 127.0.0.1; dropping it stops it.
pub struct FakePod {
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePod {
    /// A pod called `name` answering probes with `status` and `body`; requests
    /// are answered at once unless `hold` is set.
    pub async fn start(name: &str, status: u16, body: &'static str, hold: bool) -> FakePod {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            probe_answer: Mutex::new((status, body)),
            probes: Mutex::new(Vec::new()),
            served: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            release: watch::Sender::new(!hold),
        });
        let state = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(state.clone(), req));
                    // HTTP/1.1 and h2c prior knowledge, as a queue-proxy.
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakePod { port, shared, task }
    }

    /// A pod whose queue-proxy is ready: probes get 200 `queue`.
    pub async fn ready(name: &str) -> FakePod {
        FakePod::start(name, 200, "queue", false).await
    }

    /// `127.0.0.1:<port>`.
    pub fn dest(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set_probe_answer(&self, status: u16, body: &'static str) {
        *self.shared.probe_answer.lock() = (status, body);
    }

    pub fn probes(&self) -> Vec<SeenProbe> {
        self.shared.probes.lock().clone()
    }

    /// Requests answered or being answered (probes excluded).
    pub fn served(&self) -> usize {
        self.shared.served.load(Ordering::SeqCst)
    }

    /// Requests held right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Lets held requests (and all later ones) through.
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// Holds requests again.
    pub fn hold(&self) {
        self.shared.release.send_replace(false);
    }
}

async fn answer(
    state: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if header("user-agent").as_deref() == Some("Knative-Activator-Probe") {
        state.probes.lock().push(SeenProbe {
            path: req.uri().path().to_owned(),
            host: header("host"),
            user_agent: header("user-agent"),
            network_probe: header("k-network-probe"),
            passthrough_lb: header("k-passthrough-lb"),
        });
        let (status, body) = *state.probe_answer.lock();
        return Ok(Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap());
    }
    state.served.fetch_add(1, Ordering::SeqCst);
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    let mut released = state.release.subscribe();
    let _ = released.wait_for(|r| *r).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(Response::new(Full::new(Bytes::from(state.name.clone()))))
}
