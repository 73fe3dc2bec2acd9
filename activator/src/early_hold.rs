//! The early hold (beyond upstream): a new connection's first request waits
//! for capacity before hyper takes the connection.
//!
//! Why: hyper keeps about 19 KiB for an HTTP/1 connection once it has read a
//! request (8 KiB read and write buffers, the dispatcher's state, the task),
//! and the handler's future adds ~3 KiB while it waits, so 10,000 requests
//! held that way cost 220 MiB, and
//! upstream's activator is OOM-killed under that kind of backpressure
//! (knative#13583). Held here, a request costs its socket, the bytes it sent
//! and one small task: ~3 KiB (benches/activator_held_rss.py).
//!
//! How: [`EarlyHold`] is the activator's [`Accept`] step on its plain ports.
//! It reads what the client sent first (one read of at most [`FIRST_READ`]
//! bytes, within the header read timeout). When that is a complete HTTP/1
//! request head for a known revision that is not a probe or an upgrade, it
//! takes the handler's first steps right here: the request is reported to the
//! autoscaler at once, and asks the throttler for capacity. If the answer has
//! to wait, only the bytes read are kept while it does (the head, and any body
//! bytes that came with it: no more is read). Then hyper gets the connection
//! with those bytes replayed ([`Prefixed`]), and the handler gets, with the
//! request, what was decided ([`EarlyAdmission`]): when the request arrived
//! (timeouts, metrics, spans and the request log count from there) and its
//! lease.
//!
//! Everything else goes to hyper untouched, as before: the HTTP/2 preface,
//! heads split over reads (hyper's header timer then starts after the first
//! read) or longer than [`FIRST_READ`], probes, upgrades, unknown revisions. A
//! request the throttler refuses, one over the held cap and one whose deadline
//! passes while it waits go to hyper without a lease: the handler then asks
//! again and answers as it always does (503, 504, or 404 for a revision
//! removed meanwhile, as for one held by the handler). A client that closes its connection while held frees its place
//! at once. A later request on a kept-alive connection is held by the handler
//! (~3 KiB on top of what hyper keeps for the open connection).

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Version, header};
use parking_lot::Mutex;
use queue_proxy::headers::is_probe;
use queue_proxy::prefixed::Prefixed;
use queue_proxy::request_log::{LogGuard, RequestInfo};
use queue_proxy::server::{Accept, Accepted, Shutdown};
use queue_proxy::timeout::RequestTimeouts;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::handler::{ActivatorHandler, request_log_revision, request_timeouts};
use crate::metrics::Queued;
use crate::reporter::InFlight;
use crate::resolve::revision_key;
use crate::revision::{Revision, RevisionKey};
use crate::throttler::Lease;

/// The most the early hold reads before deciding; longer heads go to hyper.
pub const FIRST_READ: usize = 4096;
/// Heads with more header fields go to hyper.
const MAX_HEADERS: usize = 64;

/// The activator's [`Accept`] step for its plain ports.
pub struct EarlyHold {
    handler: Arc<ActivatorHandler>,
    header_read_timeout: Duration,
    shutdown: Shutdown,
}

impl EarlyHold {
    /// Holds early for `handler`. A connection that sends nothing within
    /// `header_read_timeout` (zero: no limit), or before the server's
    /// `shutdown`, is closed, as hyper closes an idle one.
    pub fn new(
        handler: Arc<ActivatorHandler>,
        header_read_timeout: Duration,
        shutdown: Shutdown,
    ) -> Self {
        EarlyHold {
            handler,
            header_read_timeout,
            shutdown,
        }
    }
}

impl Accept for EarlyHold {
    type Io = Prefixed<TcpStream>;

    fn accept(
        &self,
        stream: TcpStream,
    ) -> impl Future<Output = io::Result<Accepted<Self::Io>>> + Send + 'static {
        let (handler, shutdown) = (self.handler.clone(), self.shutdown.clone());
        let header_read_timeout = self.header_read_timeout;
        // The steps' futures are made inside, so that the read's and the
        // hold's share their space in the task.
        async move {
            let (stream, first) = first_read(stream, header_read_timeout, shutdown).await?;
            accept(handler, stream, first).await
        }
    }
}

/// The connection's first bytes, read within the header read timeout and
/// before shutdown (graceful shutdown waits for every connection still in its
/// accept step, and one that never sends would hold it up for the timeout).
async fn first_read(
    mut stream: TcpStream,
    header_read_timeout: Duration,
    shutdown: Shutdown,
) -> io::Result<(TcpStream, BytesMut)> {
    let mut first = BytesMut::with_capacity(FIRST_READ);
    let read = async {
        let read = stream.read_buf(&mut first);
        if header_read_timeout.is_zero() {
            return read.await;
        }
        tokio::time::timeout(header_read_timeout, read)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request head in time"))?
    };
    let read = tokio::select! {
        read = read => read?,
        () = shutdown.fired() => {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "shutting down"));
        }
    };
    if read == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok((stream, first))
}

async fn accept(
    handler: Arc<ActivatorHandler>,
    stream: TcpStream,
    first: BytesMut,
) -> io::Result<Accepted<Prefixed<TcpStream>>> {
    let Some((key, timeouts)) = parse_head(&first).and_then(|req| holdable(&handler, &req)) else {
        return Ok(Accepted::new(Prefixed::new(first.freeze(), stream)));
    };
    // Only the bytes read, not the buffer they were read into, wait.
    let head = Bytes::copy_from_slice(&first);
    drop(first);
    let admitted = match hold(&handler, key, timeouts, &stream).await {
        Ok(admitted) => admitted,
        Err(Abandoned { started }) => {
            log_abandoned(&handler, &head, stream.peer_addr().ok(), started);
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "client left while held",
            ));
        }
    };
    Ok(Accepted {
        io: Prefixed::new(head, stream),
        first_request: Some(EarlyAdmission::extensions(admitted)),
    })
}

/// `head` as a request, when it is a complete HTTP/1 request head with a Host.
fn parse_head(head: &[u8]) -> Option<Request<()>> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    if !parsed.parse(head).ok()?.is_complete() {
        return None;
    }
    let version = match parsed.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut req = Request::builder()
        .method(parsed.method?)
        .uri(parsed.path?)
        .version(version)
        .body(())
        .ok()?;
    let headers = req.headers_mut();
    headers.reserve(parsed.headers.len());
    for field in parsed.headers.iter() {
        headers.append(
            HeaderName::from_bytes(field.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(field.value).ok()?,
        );
    }
    req.headers().contains_key(header::HOST).then_some(req)
}

/// The revision `req` is for (by the handler's rules), when it is known.
fn revision_of(handler: &ActivatorHandler, req: &Request<()>) -> Option<Revision> {
    let host = req.headers().get(header::HOST)?.to_str().ok()?;
    let key = revision_key(req.headers(), Some(host), &handler.cluster_domain);
    let revisions = handler.revisions.borrow();
    revisions.get(&key).map(|s| s.revision.clone())
}

/// The revision `req` is for and its timeouts, when the early hold may act on
/// it: not a probe, not an upgrade, for a known revision.
fn holdable(
    handler: &ActivatorHandler,
    req: &Request<()>,
) -> Option<(RevisionKey, RequestTimeouts)> {
    if is_probe(req.headers()) || req.headers().contains_key(header::UPGRADE) {
        return None;
    }
    // A bad Content-Length is hyper's 400 at once; it need not wait first.
    let bad_length = req.headers().get(header::CONTENT_LENGTH).is_some_and(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_none()
    });
    if bad_length {
        return None;
    }
    let revision = revision_of(handler, req)?;
    // As the handler does: a revision just created may not be synced yet.
    handler.throttler.upsert_revision(&revision);
    Some((revision.key.clone(), request_timeouts(&revision)))
}

/// A held request whose client went away, and when it had arrived.
struct Abandoned {
    started: Instant,
}

/// The request-log line of a request whose client left while it was held
/// here: the one the handler writes when hyper drops a request it holds (code
/// 200, Go's when nothing was written, as upstream logs a canceled request).
fn log_abandoned(
    handler: &ActivatorHandler,
    head: &[u8],
    peer: Option<SocketAddr>,
    started: Instant,
) {
    let Some(logger) = handler.request_log.as_ref().filter(|l| l.should_log(false)) else {
        return;
    };
    let Some(req) = parse_head(head) else { return };
    let revision = revision_of(handler, &req);
    let (parts, ()) = req.into_parts();
    let info = RequestInfo::from_parts(&parts, peer, body_length(&parts.headers));
    let log = LogGuard::new(logger.clone(), info, false, started);
    drop(match revision {
        Some(revision) => log.for_revision(Arc::new(request_log_revision(&revision))),
        None => log,
    });
}

/// The request's ContentLength as Go reports it: the header's value, -1 for a
/// chunked body, else 0.
fn body_length(headers: &HeaderMap) -> i64 {
    match headers.get(header::CONTENT_LENGTH) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1),
        None if headers.contains_key(header::TRANSFER_ENCODING) => -1,
        None => 0,
    }
}

/// Reports the request and asks the throttler; a request that has to wait
/// does so here until it gets a lease, is refused, reaches its deadline (all
/// three go on to hyper) or its client goes away (the connection is dropped).
async fn hold(
    handler: &ActivatorHandler,
    key: RevisionKey,
    timeouts: RequestTimeouts,
    stream: &TcpStream,
) -> Result<Admitted, Abandoned> {
    let started = Instant::now();
    let deadline = timeouts.head_deadline(started);
    let mut admitted = Admitted {
        started,
        started_at: SystemTime::now(),
        reported: handler.reporter.track(&key),
        queued: None,
        lease: None,
    };
    let key = &key;
    let acquire = handler.throttler.acquire(key);
    let mut acquire = std::pin::pin!(acquire);
    let first = std::future::poll_fn(|cx| Poll::Ready(acquire.as_mut().poll(cx))).await;
    let answer = match first {
        Poll::Ready(answer) => answer,
        Poll::Pending => {
            let Some(_held) = handler.held.enter(key) else {
                return Ok(admitted);
            };
            admitted.queued = handler.metrics.as_ref().map(|m| m.queued(key));
            tokio::select! {
                biased;
                answer = acquire => answer,
                () = tokio::time::sleep_until(deadline) => return Ok(admitted),
                () = client_gone(stream) => return Err(Abandoned { started }),
            }
        }
    };
    admitted.lease = answer.ok();
    Ok(admitted)
}

/// Completes when the client closes or resets its side. Bytes after the head
/// (a body still coming) leave that unknowable without reading them, and the
/// early hold never reads a body: then this never completes.
async fn client_gone(stream: &TcpStream) {
    // poll_peek keeps no state of its own, unlike `peek`'s 264-byte future.
    let peeked = std::future::poll_fn(|cx| {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        stream.poll_peek(cx, &mut buf)
    })
    .await;
    match peeked {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// What the early hold decided for a request.
pub(crate) struct Admitted {
    /// When the request arrived.
    pub started: Instant,
    /// The same moment on the wall clock (span start times).
    pub started_at: SystemTime,
    /// The request counted in the autoscaler's stats since then.
    pub reported: InFlight,
    /// The wait in the activator's metrics, when it had to wait.
    pub queued: Option<Queued>,
    /// Capacity, when the throttler granted it; else the handler asks again.
    pub lease: Option<Lease>,
}

/// The request extension that carries [`Admitted`] to the handler.
#[derive(Clone)]
pub struct EarlyAdmission(Arc<Mutex<Option<Admitted>>>);

impl EarlyAdmission {
    fn extensions(admitted: Admitted) -> http::Extensions {
        let mut extensions = http::Extensions::new();
        extensions.insert(EarlyAdmission(Arc::new(Mutex::new(Some(admitted)))));
        extensions
    }

    /// Takes what the early hold decided for `extensions`' request, if it did.
    pub(crate) fn take(extensions: &mut http::Extensions) -> Option<Admitted> {
        extensions.remove::<EarlyAdmission>()?.0.lock().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::Forwarder;
    use crate::held::HeldLimit;
    use crate::probe::Health;
    use crate::reporter::ConcurrencyReporter;
    use crate::source::Snapshot;
    use crate::throttler::Throttler;
    use queue_proxy::server::READ_HEADER_TIMEOUT;
    use tokio::sync::{mpsc, watch};

    fn handler() -> Arc<ActivatorHandler> {
        let (batches, _) = mpsc::unbounded_channel();
        Arc::new(ActivatorHandler {
            health: Arc::new(Health::new(watch::channel(true).1)),
            revisions: watch::channel(Snapshot::default()).1,
            cluster_domain: "cluster.local".into(),
            reporter: Arc::new(ConcurrencyReporter::new("pod".into(), batches)),
            throttler: Arc::new(Throttler::new(None)),
            forwarder: Arc::new(Forwarder::new(1)),
            held: HeldLimit::new(None),
            passthrough_lb: false,
            metrics: None,
            request_log: None,
            tracing: None,
        })
    }

    // The connection task's state while a request waits is this future (1,256
    // bytes when written; a held request costs ~3 KiB in all, see
    // benches/activator_held_rss.py): it must not creep up unnoticed.
    #[tokio::test]
    async fn a_connection_held_early_is_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let hold = EarlyHold::new(handler(), READ_HEADER_TIMEOUT, Shutdown::new().1);
        let waiting = hold.accept(stream);
        let size = std::mem::size_of_val(&waiting);
        assert!(size <= 1408, "the early hold's future is {size} bytes");
    }
}
