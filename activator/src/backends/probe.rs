//! The activator's health probe of a queue-proxy (or of a private Service's
//! ClusterIP), as upstream's `revisionWatcher.probe` in
//! `pkg/activator/net/revision_backends.go` builds it on
//! `knative.dev/networking/pkg/prober`.
//!
//! `GET http://<dest>/healthz` over HTTP/1.1 with `K-Network-Probe: queue` and
//! `User-Agent: Knative-Activator-Probe`. Healthy iff the answer is 200 with a
//! body of exactly `queue`. Failures are split the way the ClusterIP fallback
//! needs: a 502 or 503, or no answer at all, could be a service mesh refusing
//! pod-addressed traffic ("possibly mesh"); any other answer proves the pod was
//! reached ("not mesh").
//!
//! Each probe opens its own connection and closes it when done: a probe only
//! runs while a pod is not yet healthy, so there is little to reuse, and the
//! proxy's pool stays free of connections made before the pod was admitted.

use bytes::Bytes;
use http::header::{HOST, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The path probed.
pub const PROBE_PATH: &str = "/healthz";
/// `K-Network-Probe`, and the value a queue-proxy expects in it.
pub const PROBE_HEADER: &str = "k-network-probe";
pub const PROBE_HEADER_VALUE: &str = "queue";
/// The user agent that makes a queue-proxy treat the request as a health check.
pub const PROBE_USER_AGENT: &str = "Knative-Activator-Probe";
/// Asks a mesh's ingress to pass the request to the addressed pod.
pub const PASSTHROUGH_LB_HEADER: &str = "k-passthrough-lb";
/// The only healthy body.
const HEALTHY_BODY: &[u8] = b"queue";
/// Bodies longer than this are not `queue`; no need to read them.
const BODY_LIMIT: usize = 64;

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// 200 with body `queue`.
    Healthy,
    /// Anything else. `possibly_mesh` is set for a 502, a 503 and for every
    /// failure to get an answer (refused, reset, timed out): what a mesh that
    /// blocks pod addressing would produce.
    NotHealthy { possibly_mesh: bool },
}

impl ProbeOutcome {
    pub fn is_healthy(self) -> bool {
        matches!(self, ProbeOutcome::Healthy)
    }

    /// The destination answered with something a mesh would not send, so pods
    /// are reachable directly (upstream sets its `notMesh` for successes too).
    pub fn rules_out_mesh(self) -> bool {
        !matches!(
            self,
            ProbeOutcome::NotHealthy {
                possibly_mesh: true
            }
        )
    }
}

/// Probes the queue-proxy at `dest` (`ip:port`), giving up after `timeout`.
pub async fn probe_queue_proxy(dest: &str, timeout: Duration) -> ProbeOutcome {
    probe(dest, None, Instant::now() + timeout).await
}

/// Probes `dest`, giving up at `deadline` (shared by the probes of one round).
/// With `passthrough_host`, the request carries that `Host` and
/// `K-Passthrough-Lb: true`, as upstream does when mesh pod addressability is on.
pub(crate) async fn probe(
    dest: &str,
    passthrough_host: Option<&str>,
    deadline: Instant,
) -> ProbeOutcome {
    let outcome = match tokio::time::timeout_at(deadline, exchange(dest, passthrough_host)).await {
        Ok(Ok(answer)) => answer.outcome(),
        Ok(Err(error)) => {
            tracing::debug!(dest, %error, "probe failed");
            ProbeOutcome::NotHealthy {
                possibly_mesh: true,
            }
        }
        Err(_) => {
            tracing::debug!(dest, "probe timed out");
            ProbeOutcome::NotHealthy {
                possibly_mesh: true,
            }
        }
    };
    tracing::trace!(dest, ?outcome, "probed");
    outcome
}

/// Why no answer was obtained.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
    #[error("invalid destination: {0}")]
    Request(#[source] http::Error),
    #[error("{0}")]
    Http(#[source] hyper::Error),
}

/// The parts of an answer the verdict depends on.
struct Answer {
    status: StatusCode,
    body_is_queue: bool,
}

impl Answer {
    fn outcome(&self) -> ProbeOutcome {
        if self.status == StatusCode::OK && self.body_is_queue {
            ProbeOutcome::Healthy
        } else {
            ProbeOutcome::NotHealthy {
                possibly_mesh: matches!(
                    self.status,
                    StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
                ),
            }
        }
    }
}

async fn exchange(dest: &str, passthrough_host: Option<&str>) -> Result<Answer, ExchangeError> {
    let mut request = Request::get(PROBE_PATH)
        .header(HOST, passthrough_host.unwrap_or(dest))
        .header(PROBE_HEADER, PROBE_HEADER_VALUE)
        .header(USER_AGENT, PROBE_USER_AGENT);
    if passthrough_host.is_some() {
        request = request.header(PASSTHROUGH_LB_HEADER, "true");
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(ExchangeError::Request)?;

    let stream = TcpStream::connect(dest)
        .await
        .map_err(ExchangeError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ExchangeError::Http)?;
    let ask = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(ExchangeError::Http)?;
        let status = response.status();
        let mut body = response.into_body();
        let mut read = Vec::with_capacity(HEALTHY_BODY.len());
        while read.len() <= BODY_LIMIT {
            let Some(frame) = body.frame().await else {
                break;
            };
            if let Ok(data) = frame.map_err(ExchangeError::Http)?.into_data() {
                read.extend_from_slice(&data);
            }
        }
        Ok(Answer {
            status,
            body_is_queue: read == HEALTHY_BODY,
        })
    };
    // The connection is driven here rather than on a task of its own: it ends
    // with the probe, and dropping it closes the socket. If it finishes first,
    // the answer may still sit in the body's buffer, or fail for good.
    tokio::pin!(conn, ask);
    tokio::select! {
        answer = &mut ask => answer,
        _ = &mut conn => ask.await,
    }
}
