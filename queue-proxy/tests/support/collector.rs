//! An OTLP collector stand-in on 127.0.0.1:0: accepts OTLP/HTTP protobuf POSTs
//! on `/v1/traces` and `/v1/metrics` and OTLP/gRPC `Export` calls (h2c), decodes
//! them with the opentelemetry-proto types and keeps what arrived.

use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the collector received, and how.
#[derive(Default)]
pub struct Received {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    /// `(path, content-type)` of every request.
    pub requests: Vec<(String, String)>,
}

pub struct Collector {
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    arrived: Arc<Notify>,
}

type Body = BoxBody<Bytes, Infallible>;

impl Collector {
    pub async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let arrived = Arc::new(Notify::new());
        let (r, a) = (received.clone(), arrived.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (r, a) = (r.clone(), a.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (r, a) = (r.clone(), a.clone());
                        async move { Ok::<_, Infallible>(handle(req, &r, &a).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector {
            addr,
            received,
            arrived,
        }
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        let received = self.received.lock().unwrap();
        received
            .traces
            .iter()
            .flat_map(|t| &t.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.clone())
            .collect()
    }

    pub fn with<T>(&self, f: impl FnOnce(&Received) -> T) -> T {
        f(&self.received.lock().unwrap())
    }

    /// Waits (up to 10 s) until `done` holds for what was received.
    pub async fn wait_for(&self, done: impl Fn(&Received) -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = self.arrived.notified();
                if self.with(&done) {
                    return;
                }
                notified.await;
            }
        })
        .await
        .expect("the collector received what was expected");
    }
}

async fn handle(
    req: Request<Incoming>,
    received: &Mutex<Received>,
    arrived: &Notify,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let grpc = content_type == "application/grpc";
    let mut body = req.into_body().collect().await.unwrap().to_bytes();
    if grpc {
        assert_eq!(body.get_u8(), 0, "uncompressed gRPC message");
        let len = body.get_u32() as usize;
        assert_eq!(len, body.len());
    }
    {
        let mut r = received.lock().unwrap();
        r.requests.push((path.clone(), content_type));
        match path.as_str() {
            "/v1/traces" | "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => r
                .traces
                .push(ExportTraceServiceRequest::decode(body).unwrap()),
            "/v1/metrics" | "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => r
                .metrics
                .push(ExportMetricsServiceRequest::decode(body).unwrap()),
            _ => {
                let mut resp = Response::new(Full::new(Bytes::new()).boxed());
                *resp.status_mut() = StatusCode::NOT_FOUND;
                return resp;
            }
        }
    }
    arrived.notify_waiters();
    if !grpc {
        return Response::new(Full::new(Bytes::new()).boxed());
    }
    // An empty Export*ServiceResponse, then `grpc-status: 0` in the trailers.
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut resp = Response::new(StreamBody::new(tokio_stream::iter(frames)).boxed());
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    resp
}
