//! The sample app: answers every request with `hello\n` after a fixed amount
//! of work (a sleep, like upstream's dataplane-probe app). It runs in-process
//! for the demo and as `loadtest app` (a separate process) for the load runs.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, work: Duration) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<Incoming>| async move {
                if !work.is_zero() {
                    tokio::time::sleep(work).await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
