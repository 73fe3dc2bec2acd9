//! The connection pool to the app on `127.0.0.1:$USER_PORT`.
//!
//! Mirrors upstream's transport (`knative.dev/pkg/network/transports.go`): HTTP/1.1
//! keep-alive with at most `max_idle` idle connections (CC, or 1000 when CC = 0),
//! one multiplexed h2c connection for HTTP/2 traffic, and a dial that retries only
//! timeouts (50 ms growing ×1.4 over 15 attempts) while a refused connect fails at
//! once.
//!
//! It goes beyond upstream on stale keep-alive connections (knative#12414): an app
//! that closes an idle connection just as we reuse it turned requests into 502s.
//! Here idle connections are dropped after [`POOL_IDLE_TIMEOUT`], shorter than
//! common app keep-alive timeouts, and a request that fails on a *reused*
//! connection before any response arrives is sent once more on a fresh connection
//! when that is safe: hyper hands back a request it never wrote, and a request with
//! an empty body and an idempotent method (Go's `isReplayable`) can be rebuilt.
//!
//! The pool is a plain mutex-guarded stack because there is exactly one
//! destination; hyper's legacy client cannot tell a reused connection from a fresh
//! one, which the retry needs.

use bytes::Bytes;
use http::{Method, Request, Response, Version};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::error::UpstreamError;

/// The body sent to the app: the client's stream, or nothing (a rebuilt retry).
pub type UpstreamBody = Either<Incoming, Empty<Bytes>>;

/// How long an idle keep-alive connection may sit in the pool. Below the 2 s of
/// gunicorn and the 5 s of Node.js and uvicorn, so we close first.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Upstream's dial schedule: the first attempt's timeout, its growth, its count.
const DIAL_FIRST_TIMEOUT: Duration = Duration::from_millis(50);
const DIAL_TIMEOUT_FACTOR: f64 = 1.4;
const DIAL_ATTEMPTS: u32 = 15;

/// How long a pooled connection may take to report ready after its last response
/// ended before we give up on it and dial a new one.
const POOLED_READY_WAIT: Duration = Duration::from_millis(100);

/// A client for the one app this proxy fronts. Cheap to clone.
#[derive(Clone)]
pub struct AppClient {
    pool: Arc<Pool>,
}

struct Pool {
    addr: SocketAddr,
    max_idle: usize,
    idle_timeout: Duration,
    /// Most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// Whether the task that closes expired idle connections runs.
    reaping: AtomicBool,
    h2: Mutex<Option<http2::SendRequest<UpstreamBody>>>,
}

struct Idle {
    sender: http1::SendRequest<UpstreamBody>,
    since: Instant,
}

/// A connection whose response is still being read. Its owner calls
/// [`Checkin::checkin`] after a clean end of body; dropping it instead closes the
/// connection once hyper is done with it.
pub struct Checkin {
    pool: Arc<Pool>,
    sender: http1::SendRequest<UpstreamBody>,
}

impl Checkin {
    /// Offers the connection for reuse.
    pub fn checkin(self) {
        self.pool.put(self.sender);
    }
}

impl AppClient {
    /// A client for `addr` keeping at most `max_idle` idle HTTP/1 connections.
    pub fn new(addr: SocketAddr, max_idle: usize) -> Self {
        Self::with_idle_timeout(addr, max_idle, POOL_IDLE_TIMEOUT)
    }

    /// As [`AppClient::new`], with another idle timeout.
    pub fn with_idle_timeout(addr: SocketAddr, max_idle: usize, idle_timeout: Duration) -> Self {
        AppClient {
            pool: Arc::new(Pool {
                addr,
                max_idle,
                idle_timeout,
                idle: Mutex::new(Vec::new()),
                reaping: AtomicBool::new(false),
                h2: Mutex::new(None),
            }),
        }
    }

    /// The app's address.
    pub fn addr(&self) -> SocketAddr {
        self.pool.addr
    }

    /// Sends `req` over HTTP/2 (h2c) when its version says so, else HTTP/1.1.
    /// Returns the response and, for HTTP/1, the connection to check in once the
    /// body has been read.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Option<Checkin>), UpstreamError> {
        // The rarer paths (h2c, dialing, retrying) are boxed: their futures are
        // large, and every request's future would otherwise carry (and copy)
        // their full size.
        if req.version() == Version::HTTP_2 {
            Box::pin(self.send_h2(req)).await.map(|resp| (resp, None))
        } else {
            self.send_h1(req).await
        }
    }

    async fn send_h1(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Option<Checkin>), UpstreamError> {
        let (mut sender, reused) = self.pool.checkout_h1().await?;
        let replay = if reused { Replay::of(&req) } else { None };
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(self.pool.finish_h1(resp, sender)),
            Err(mut err) => {
                let unsent = err.take_message();
                let err = err.into_error();
                if reused
                    && is_stale_connection(&err)
                    && let Some(retry) = unsent.or_else(|| replay.map(Replay::rebuild))
                {
                    tracing::debug!(error = %err, "retrying on a fresh connection");
                    return Box::pin(self.send_h1_fresh(retry)).await;
                }
                Err(UpstreamError::Http(err))
            }
        }
    }

    /// The one retry: a new connection, whatever happens.
    async fn send_h1_fresh(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Option<Checkin>), UpstreamError> {
        let mut fresh = self.pool.connect_h1().await?;
        match fresh.send_request(req).await {
            Ok(resp) => Ok(self.pool.finish_h1(resp, fresh)),
            Err(err) => Err(UpstreamError::Http(err)),
        }
    }

    async fn send_h2(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let (mut sender, reused) = self.pool.h2_sender().await?;
        let replay = if reused { Replay::of(&req) } else { None };
        if sender.ready().await.is_err() {
            self.pool.forget_h2(&sender);
            sender = self.pool.h2_sender().await?.0;
        }
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(mut err) => {
                let unsent = err.take_message();
                let err = err.into_error();
                self.pool.forget_h2(&sender);
                let retry = unsent.or_else(|| replay.map(Replay::rebuild));
                match retry {
                    Some(retry) if reused && is_stale_connection(&err) => {
                        let (mut fresh, _) = self.pool.h2_sender().await?;
                        fresh.send_request(retry).await.map_err(UpstreamError::Http)
                    }
                    _ => Err(UpstreamError::Http(err)),
                }
            }
        }
    }
}

impl Pool {
    /// A ready HTTP/1 connection and whether it was used before.
    async fn checkout_h1(&self) -> Result<(http1::SendRequest<UpstreamBody>, bool), UpstreamError> {
        while let Some(mut sender) = self.take_idle() {
            if sender.is_ready() {
                return Ok((sender, true));
            }
            // The last response just ended; hyper marks the connection idle in a
            // moment, unless the app is still reading the previous request body.
            if let Ok(Ok(())) = Box::pin(timeout(POOLED_READY_WAIT, sender.ready())).await {
                return Ok((sender, true));
            }
        }
        Ok((Box::pin(self.connect_h1()).await?, false))
    }

    fn take_idle(&self) -> Option<http1::SendRequest<UpstreamBody>> {
        self.drop_expired();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() {
                return Some(conn.sender);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, sender: http1::SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() >= self.max_idle {
                return;
            }
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
        if !self.reaping.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap_idle(Arc::downgrade(self), self.idle_timeout));
        }
    }

    /// Closes the connections that have been idle too long (the oldest come first).
    fn drop_expired(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let expired = idle
            .iter()
            .take_while(|c| now.saturating_duration_since(c.since) >= self.idle_timeout)
            .count();
        idle.drain(..expired);
    }

    fn finish_h1(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        sender: http1::SendRequest<UpstreamBody>,
    ) -> (Response<Incoming>, Option<Checkin>) {
        // After a 101 the connection belongs to the tunnel.
        let checkin = (resp.status() != http::StatusCode::SWITCHING_PROTOCOLS).then(|| Checkin {
            pool: self.clone(),
            sender,
        });
        (resp, checkin)
    }

    async fn connect_h1(&self) -> Result<http1::SendRequest<UpstreamBody>, UpstreamError> {
        let io = dial(self.addr).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(UpstreamError::Http)?;
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(error = %err, "app connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The shared h2c connection (dialled on first use) and whether it existed.
    async fn h2_sender(&self) -> Result<(http2::SendRequest<UpstreamBody>, bool), UpstreamError> {
        if let Some(sender) = self.h2.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && !sender.is_closed()
        {
            return Ok((sender.clone(), true));
        }
        let io = dial(self.addr).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(UpstreamError::Http)?;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "app h2c connection ended with an error");
            }
        });
        *self.h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender.clone());
        Ok((sender, false))
    }

    /// Drops the shared h2c connection if it is still `sender`'s.
    fn forget_h2(&self, sender: &http2::SendRequest<UpstreamBody>) {
        let mut h2 = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        if h2
            .as_ref()
            .is_some_and(|current| current.is_closed() || sender.is_closed())
        {
            *h2 = None;
        }
    }
}

/// Closes expired idle connections every `period` while the pool lives, so a
/// burst's connections do not stay open until the next request.
async fn reap_idle(pool: Weak<Pool>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.drop_expired(),
            None => return,
        }
    }
}

/// Connects to the app, retrying only timeouts, as upstream's dialer does.
async fn dial(addr: SocketAddr) -> Result<TcpStream, UpstreamError> {
    let started = Instant::now();
    let mut attempt_timeout = DIAL_FIRST_TIMEOUT;
    for _ in 0..DIAL_ATTEMPTS {
        match timeout(attempt_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Small writes (headers, streamed chunks) must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(source)) => return Err(UpstreamError::Connect { addr, source }),
            Err(_elapsed) => attempt_timeout = attempt_timeout.mul_f64(DIAL_TIMEOUT_FACTOR),
        }
    }
    Err(UpstreamError::ConnectTimeout {
        addr,
        waited: started.elapsed(),
    })
}

/// Whether an error on a reused connection looks like the app had closed it: the
/// connection ended or was reset before a response arrived.
fn is_stale_connection(err: &hyper::Error) -> bool {
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            );
        }
        source = s.source();
    }
    false
}

/// What is needed to send a request again: only for requests Go's transport
/// would replay (no body, and an idempotent method or an idempotency key).
struct Replay {
    method: Method,
    uri: http::Uri,
    version: Version,
    headers: http::HeaderMap,
}

impl Replay {
    fn of(req: &Request<UpstreamBody>) -> Option<Replay> {
        use http_body::Body as _;
        let idempotent = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) || req.headers().contains_key("idempotency-key")
            || req.headers().contains_key("x-idempotency-key");
        (idempotent && req.body().is_end_stream()).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        })
    }

    fn rebuild(self) -> Request<UpstreamBody> {
        let mut req = Request::new(Either::Right(Empty::new()));
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        req
    }
}
