//! Listeners and connection serving, as upstream's `sharedmain/servers.go` sets
//! them up: every server binds `:<port>` on all interfaces, dual-stack, and reads
//! request headers within 60 s and 1 MiB ([`crate::read_limits`] holds hyper to
//! both exactly). The main port speaks HTTP/1.1 and h2c (prior knowledge, and
//! `Upgrade: h2c` via [`crate::h2c`]); admin and metrics speak HTTP/1.1 only.
//! HTTP/2 announces Go's header list limit. The TLS port ([`crate::tls`]) serves like the main port once
//! its [`Accept`] step has done the handshake.

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use socket2::{Domain, Protocol, Socket, Type};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::body::ProxyBody;
use crate::error::request_header_fields_too_large;
use crate::h2c;
use crate::read_limits::{HeadDeadline, head_too_large};

/// Go's `http.Server.ReadHeaderTimeout` as upstream sets it on every server
/// (`QUEUE_PROXY_HEADER_READ_TIMEOUT_MS` overrides it for tests).
pub const READ_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// x/net/http2's default concurrent streams per connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 250;
/// Go's default request header limit (1 MiB) plus the 4 KiB of slack its HTTP/1
/// reader allows; beyond it the client gets 431.
pub const MAX_HEADER_BYTES: usize = (1 << 20) + 4096;
/// x/net/http2's `SETTINGS_MAX_HEADER_LIST_SIZE` for Go's default
/// `MaxHeaderBytes`: 1 MiB plus 32 bytes of overhead for ten typical fields
/// (hyper's default is 16 MiB).
pub const H2_MAX_HEADER_LIST_SIZE: u32 = (1 << 20) + 10 * 32;

/// Something that answers requests on a listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `peer`. Never fails: errors are responses.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static;
}

/// Which protocols a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 and h2c with prior knowledge (the main and TLS ports).
    Http1AndH2c,
    /// HTTP/1.1 only (admin and metrics).
    Http1Only,
}

/// Why the queue-proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `SERVING_READINESS_PROBE` is not a valid probe (the message names it).
    #[error(transparent)]
    Probe(#[from] crate::readiness::ProbeConfigError),
    /// `OBSERVABILITY_CONFIG` is not valid JSON of its shape (the message names it).
    #[error(transparent)]
    Observability(#[from] crate::observability::ObservabilityConfigError),
    #[error("listen tcp :{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: io::Error,
    },
    /// Certificates exist but TLS cannot be served (the message names the
    /// variable or file at fault).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The tracing settings cannot be used (the message names the key).
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
}

/// What turns an accepted TCP connection into the stream HTTP is spoken over:
/// nothing for the plain ports, a TLS handshake for the TLS port.
pub trait Accept: Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Runs in the connection's own task, so a slow client does not hold up the
    /// accept loop; an error drops the connection.
    fn accept(
        &self,
        stream: TcpStream,
    ) -> impl Future<Output = io::Result<Accepted<Self::Io>>> + Send + 'static;
}

/// A connection ready for HTTP, as an [`Accept`] step hands it over.
pub struct Accepted<Io> {
    pub io: Io,
    /// Put into the extensions of the connection's first request: what a step
    /// that already looked at that request (the activator's early hold) tells
    /// the handler.
    pub first_request: Option<http::Extensions>,
}

impl<Io> Accepted<Io> {
    /// A connection with nothing known about its requests yet.
    pub fn new(io: Io) -> Self {
        Accepted {
            io,
            first_request: None,
        }
    }
}

/// Plain TCP: the connection as accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainTcp;

impl Accept for PlainTcp {
    type Io = TcpStream;

    fn accept(
        &self,
        stream: TcpStream,
    ) -> impl Future<Output = io::Result<Accepted<TcpStream>>> + Send + 'static {
        std::future::ready(Ok(Accepted::new(stream)))
    }
}

/// Binds `[::]:port` accepting IPv4 too, or `0.0.0.0:port` where the host has no
/// IPv6. Port 0 picks a free port (tests).
pub fn bind_dual_stack(port: u16) -> Result<TcpListener, ServeError> {
    let bind = |addr: SocketAddr| -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(false)?;
        }
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    };
    bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
        .or_else(|_| bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))))
        .map_err(|source| ServeError::Bind { port, source })
}

/// A signal that tells servers to stop accepting and finish their connections.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending side of [`Shutdown`].
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A new signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Completes once the trigger fired (or was dropped).
    pub async fn fired(mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}

impl ShutdownTrigger {
    /// Tells every server holding the matching [`Shutdown`] to stop.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

/// Accepts connections on `listener` and serves them with `handler` until
/// `shutdown` fires; then stops accepting and waits for open connections to end
/// gracefully (idle keep-alive connections close at once, in-flight requests
/// finish). A connection that has not sent a request's headers within
/// `header_read_timeout` is closed ([`READ_HEADER_TIMEOUT`] upstream; zero
/// means no limit, as Go's zero `ReadHeaderTimeout` does).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    protocols: Protocols,
    header_read_timeout: Duration,
    shutdown: Shutdown,
) {
    serve_with(
        listener,
        PlainTcp,
        handler,
        protocols,
        header_read_timeout,
        shutdown,
    )
    .await;
}

/// [`serve`], with `acceptor` run on each connection before HTTP is spoken.
/// Shutdown also waits for connections still in their `acceptor` step.
pub async fn serve_with<A: Accept, H: Handler>(
    listener: TcpListener,
    acceptor: A,
    handler: Arc<H>,
    protocols: Protocols,
    header_read_timeout: Duration,
    shutdown: Shutdown,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout((!header_read_timeout.is_zero()).then_some(header_read_timeout))
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_SIZE);
    if protocols == Protocols::Http1Only {
        builder = builder.http1_only();
    }
    let settings = Arc::new(ConnectionSettings {
        builder,
        header_read_timeout,
    });
    let h2c_upgrades = protocols == Protocols::Http1AndH2c;
    let respond: Respond =
        Arc::new(move |req, peer| respond(handler.clone(), req, peer, h2c_upgrades));
    let graceful = GracefulShutdown::new();
    let stop = shutdown.fired();
    tokio::pin!(stop);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        serve_connection(stream, peer, &acceptor, &settings, &respond, &graceful);
    }
    drop(listener);
    graceful.shutdown().await;
}

/// How a listener's connections are served.
struct ConnectionSettings {
    builder: auto::Builder<TokioExecutor>,
    header_read_timeout: Duration,
}

/// A response on its way.
type Responding = Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>;

/// A listener's handler as its connections call it. Behind a pointer, every
/// listener's connections run the same service type: hyper's server is
/// compiled once, not once per handler.
type Respond = Arc<dyn Fn(Request<Incoming>, SocketAddr) -> Responding + Send + Sync>;

/// The answer to one request: the handler's, unless the head is too large or
/// the request asks to continue as h2c (`h2c_upgrades`: the main and TLS ports).
/// Not `async`: the chosen future is boxed as it is, with nothing around it.
fn respond<H: Handler>(
    handler: Arc<H>,
    req: Request<Incoming>,
    peer: SocketAddr,
    h2c_upgrades: bool,
) -> Responding {
    if head_too_large(&req) {
        return Box::pin(std::future::ready(request_header_fields_too_large()));
    }
    // RFC 7540 §3.2: an HTTP/1.1 request may ask to continue as h2c.
    if h2c_upgrades && req.version() == Version::HTTP_11 && h2c::is_h2c_upgrade(req.headers()) {
        return Box::pin(h2c::upgrade(req, peer, handler));
    }
    Box::pin(handler.handle(req, peer))
}

fn serve_connection<A: Accept>(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: &A,
    settings: &Arc<ConnectionSettings>,
    respond: &Respond,
    graceful: &GracefulShutdown,
) {
    let _ = stream.set_nodelay(true);
    let respond = respond.clone();
    let settings = settings.clone();
    let accepting = acceptor.accept(stream);
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        let accepted = match accepting.await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::debug!(error = %err, %peer, "connection setup failed");
                return;
            }
        };
        // Boxed: while the accept step waits (the activator holds requests
        // there), the task is the size of that step, not of an HTTP connection.
        let Accepted { io, first_request } = accepted;
        let io = HeadDeadline::new(io, settings.header_read_timeout);
        let io: Box<dyn ConnectionIo> = Box::new(io);
        Box::pin(serve_http(
            io,
            first_request,
            peer,
            settings,
            respond,
            watcher,
        ))
        .await;
    });
}

/// A connection's bytes, whatever carries them (TCP, TLS, bytes replayed):
/// hyper's and h2's server code is compiled once, not once for each kind of
/// connection (100 KB of binary each).
trait ConnectionIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ConnectionIo for T {}

async fn serve_http(
    io: Box<dyn ConnectionIo>,
    first_request: Option<http::Extensions>,
    peer: SocketAddr,
    settings: Arc<ConnectionSettings>,
    respond: Respond,
    watcher: Watcher,
) {
    // Only connections an accept step looked at carry a lock to take from.
    let first_request = first_request.map(|e| Mutex::new(Some(e)));
    let service = service_fn(move |mut req: Request<Incoming>| {
        let first = first_request.as_ref().and_then(|m| m.lock().ok()?.take());
        if let Some(extensions) = first {
            req.extensions_mut().extend(extensions);
        }
        let responding = respond(req, peer);
        async move { Ok::<_, Infallible>(responding.await) }
    });
    let conn = settings
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    if let Err(err) = watcher.watch(conn).await {
        tracing::debug!(error = %err, %peer, "connection ended with an error");
    }
}
