//! The admin server on :8022 (`networking.QueueAdminPort`), for the user
//! containers' preStop hooks. Mirrors upstream's `adminHandler`:
//!
//! - `/wait-for-drain` (exact path, any method) starts or joins the drain and
//!   answers 200 with an empty body once it is over. If no SIGTERM reaches the
//!   queue-proxy within 1 s of the call, the drain is reset: the user container is
//!   being restarted by its liveness probe while the pod lives on, and probes must
//!   succeed again.
//! - Every other path is Go's 404.

use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::body::ProxyBody;
use crate::drain::Drainer;
use crate::error::not_found;
use crate::server::Handler;

/// Upstream's path for the preStop hook.
pub const WAIT_FOR_DRAIN_PATH: &str = "/wait-for-drain";
/// How long a `/wait-for-drain` call waits for SIGTERM before resetting the drain.
pub const DRAIN_RESET_DELAY: Duration = Duration::from_secs(1);

/// The admin endpoints.
pub struct Admin {
    drainer: Arc<Drainer>,
    /// Becomes `true` when the process received its first SIGTERM/SIGINT.
    terminating: watch::Receiver<bool>,
}

impl Admin {
    /// Admin endpoints driving `drainer`; `terminating` turns true on SIGTERM.
    pub fn new(drainer: Arc<Drainer>, terminating: watch::Receiver<bool>) -> Self {
        Admin {
            drainer,
            terminating,
        }
    }

    async fn respond(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        if req.uri().path() != WAIT_FOR_DRAIN_PATH {
            return not_found();
        }
        tracing::info!("attached drain handler from user container");
        let (drainer, mut terminating) = (self.drainer.clone(), self.terminating.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = terminating.wait_for(|t| *t) => {}
                () = tokio::time::sleep(DRAIN_RESET_DELAY) => drainer.reset(),
            }
        });
        self.drainer.drain().await;
        Response::new(ProxyBody::empty())
    }
}

impl Handler for Admin {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        self.respond(req)
    }
}
