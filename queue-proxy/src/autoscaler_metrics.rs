//! The autoscaler's stats endpoint on :9090, as upstream's
//! `ProtobufStatsReporter.ServeHTTP`: `/metrics` (exact path, any method, any
//! `Accept`) answers the last closed window's protobuf `Stat` with
//! `Content-Type: application/protobuf`; every other path is Go's 404.

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::body::ProxyBody;
use crate::error::not_found;
use crate::server::Handler;
use crate::stats::StatReporter;

/// The media type the autoscaler insists on (`http_scrape_client.go`).
pub const PROTOBUF_MIME_TYPE: &str = "application/protobuf";

/// Serves a [`StatReporter`]'s current stat.
pub struct AutoscalerMetrics {
    reporter: Arc<StatReporter>,
}

impl AutoscalerMetrics {
    /// An endpoint for `reporter`.
    pub fn new(reporter: Arc<StatReporter>) -> Self {
        AutoscalerMetrics { reporter }
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<ProxyBody> {
        if req.uri().path() != "/metrics" {
            return not_found();
        }
        let mut resp = Response::new(ProxyBody::local(self.reporter.current()));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROTOBUF_MIME_TYPE),
        );
        resp
    }
}

impl Handler for AutoscalerMetrics {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        std::future::ready(self.respond(&req))
    }
}
