//! A small HTTP/1.1 client for the demo and the soak: one request per
//! connection ([`get`]) or a kept-alive connection ([`Conn`]) that redials
//! after a failure.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP exchange with {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
}

/// A GET of `/` for `host` with extra headers.
pub fn request(host: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get("/").header(http::header::HOST, host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Full::new(Bytes::new()))
        .expect("static request parts are valid")
}

/// Sends `req` over a fresh connection and reads the whole response.
pub async fn get(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<StatusCode, ClientError> {
    Conn::new(addr).send(req).await
}

/// Like [`get`], and keeps the body.
pub async fn fetch(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), ClientError> {
    Conn::new(addr).exchange(req).await
}

/// A kept-alive connection to one address.
pub struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Conn { addr, sender: None }
    }

    /// Sends `req` and reads the whole response; on any failure the
    /// connection is dropped and the next call dials again.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<StatusCode, ClientError> {
        Ok(self.exchange(req).await?.0)
    }

    /// [`Conn::send`], keeping the body.
    pub async fn exchange(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let addr = self.addr;
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|source| ClientError::Connect { addr, source })?;
                let _ = stream.set_nodelay(true);
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|source| ClientError::Http { addr, source })?;
                tokio::spawn(conn);
                sender
            }
        };
        let http = |source| ClientError::Http { addr, source };
        sender.ready().await.map_err(http)?;
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(http)?.to_bytes();
        self.sender = Some(sender);
        Ok((status, body))
    }
}
