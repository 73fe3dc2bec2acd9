//! A real queue-proxy (the `queue-proxy` crate, in-process) in front of a tiny
//! app: what a revision's pod looks like to the activator.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A real queue-proxy in front of an app whose `/healthz` follows `ready`.
pub struct RealPod {
    /// Whether the app behind the queue-proxy answers its readiness check.
    pub ready: Arc<AtomicBool>,
    /// The queue-proxy's serving address (`127.0.0.1:port`).
    pub main: String,
    _app: JoinHandle<()>,
    _qp: JoinHandle<()>,
}

impl RealPod {
    pub async fn start(ready: bool) -> RealPod {
        let ready = Arc::new(AtomicBool::new(ready));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app_port = listener.local_addr().unwrap().port();
        let flag = ready.clone();
        let app = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let flag = flag.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        let status = if flag.load(Ordering::SeqCst) {
                            StatusCode::OK
                        } else {
                            StatusCode::SERVICE_UNAVAILABLE
                        };
                        async move {
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });

        let mut env: HashMap<String, String> = queue_proxy::config::test_env(app_port);
        for var in [
            "QUEUE_SERVING_PORT",
            "QUEUE_SERVING_TLS_PORT",
            "QUEUE_PROXY_ADMIN_PORT",
            "QUEUE_PROXY_METRICS_PORT",
        ] {
            env.insert(var.into(), "0".into());
        }
        // One HTTP attempt per health check (periodSeconds > 0), so the
        // queue-proxy answers 503 at once while the app is not ready.
        env.insert(
            "SERVING_READINESS_PROBE".into(),
            format!(
                r#"{{"httpGet":{{"path":"/healthz","port":{app_port},"host":"127.0.0.1","scheme":"HTTP"}},"successThreshold":1,"periodSeconds":1,"timeoutSeconds":1}}"#
            ),
        );
        let config = queue_proxy::config::Config::from_env(&env).expect("valid queue-proxy env");
        let sidecar = queue_proxy::Sidecar::bind(config).expect("queue-proxy binds");
        let main = format!("127.0.0.1:{}", sidecar.main_addr().port());
        let qp = tokio::spawn(sidecar.run(std::future::pending()));
        RealPod {
            ready,
            main,
            _app: app,
            _qp: qp,
        }
    }
}
