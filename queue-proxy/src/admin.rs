//! The admin server on :8022 (`networking.QueueAdminPort`). Upstream serves only
//! `/wait-for-drain` there, for the user containers' preStop hooks; every other
//! path is Go's 404. The drain endpoint arrives with the drain module; until then
//! every path answers 404, as upstream does for unknown paths.

use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::body::ProxyBody;
use crate::error::not_found;
use crate::server::Handler;

/// The admin endpoints.
pub struct Admin;

impl Handler for Admin {
    fn handle(
        self: Arc<Self>,
        _req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        std::future::ready(not_found())
    }
}
