//! Go's limits on reading a request head, where hyper's own are not exact.
//!
//! Upstream's servers set `ReadHeaderTimeout` (60 s) and leave `MaxHeaderBytes`
//! at Go's 1 MiB (its reader stops 4 KiB past that, answering 431). hyper's
//! equivalents leave two gaps, closed here:
//!
//! - **Size.** hyper stops reading at its buffer limit only when a head is still
//!   incomplete, so a head whose last read crosses the limit is parsed anyway
//!   (1.2 MiB heads got through). [`head_too_large`] measures the parsed head
//!   the way Go counts the raw one, and the server answers Go's 431.
//! - **Time.** hyper's header timer starts once the protocol is known, but the
//!   server first waits for the bytes that tell HTTP/1 from h2c's preface, with
//!   no limit: a client that sends nothing, or the first bytes of the preface,
//!   held its connection forever. [`HeadDeadline`] gives those bytes the same
//!   timeout Go gives the whole head.

use http::{Request, Version};
use pin_project_lite::pin_project;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::server::MAX_HEADER_BYTES;

/// Whether an HTTP/1 request's head, as it was on the wire, was longer than Go
/// reads ([`MAX_HEADER_BYTES`]): the request line, each `Name: value` line and
/// the blank line, with their CRLFs. HTTP/2 heads are limited by the
/// connection's `SETTINGS_MAX_HEADER_LIST_SIZE` instead.
pub fn head_too_large<B>(req: &Request<B>) -> bool {
    if req.version() >= Version::HTTP_2 {
        return false;
    }
    let uri = req.uri();
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    let target = match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            scheme.len() + "://".len() + authority.as_str().len() + path
        }
        (None, Some(authority)) => authority.as_str().len(),
        _ => path,
    };
    let mut size = req.method().as_str().len() + " ".len() + target + " HTTP/1.1\r\n".len();
    for (name, value) in req.headers() {
        size += name.as_str().len() + ": ".len() + value.len() + "\r\n".len();
        if size > MAX_HEADER_BYTES {
            return true;
        }
    }
    size + "\r\n".len() > MAX_HEADER_BYTES
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pin_project! {
    /// A connection that fails its reads once `timeout` has passed without the
    /// bytes that tell HTTP/1 from HTTP/2: the first byte that strays from the
    /// HTTP/2 preface, or the whole preface. From then on it is the connection
    /// itself; hyper's header timer covers the rest of the head.
    pub struct HeadDeadline<I> {
        #[pin]
        io: I,
        // Boxed so the wrapper stays `Unpin`; `None` once the protocol is known.
        deadline: Option<Pin<Box<Sleep>>>,
        matched: usize,
    }
}

impl<I> HeadDeadline<I> {
    /// Wraps a just-accepted connection; a zero `timeout` means no limit.
    pub fn new(io: I, timeout: Duration) -> Self {
        HeadDeadline {
            io,
            deadline: (!timeout.is_zero()).then(|| Box::pin(tokio::time::sleep(timeout))),
            matched: 0,
        }
    }
}

impl<I: AsyncRead> AsyncRead for HeadDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let Some(deadline) = this.deadline.as_mut() else {
            return this.io.poll_read(cx, buf);
        };
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request head within the header read timeout",
            )));
        }
        let before = buf.filled().len();
        let read = this.io.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            for &byte in &buf.filled()[before..] {
                if H2_PREFACE.get(*this.matched) != Some(&byte) {
                    *this.deadline = None;
                    break;
                }
                *this.matched += 1;
                if *this.matched == H2_PREFACE.len() {
                    *this.deadline = None;
                    break;
                }
            }
        }
        read
    }
}

impl<I: AsyncWrite> AsyncWrite for HeadDeadline<I> {
    crate::write_through::write_through!(io);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn get_with(headers: &[(&str, String)]) -> Request<()> {
        let mut req = Request::get("/path?q=1");
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn head_size_counts_what_go_reads() {
        // "GET /path?q=1 HTTP/1.1\r\n" + "x: <v>\r\n" + "\r\n"
        let fixed = "GET /path?q=1 HTTP/1.1\r\n".len() + "x: \r\n".len() + "\r\n".len();
        let fits = get_with(&[("x", "v".repeat(MAX_HEADER_BYTES - fixed))]);
        assert!(!head_too_large(&fits));
        let over = get_with(&[("x", "v".repeat(MAX_HEADER_BYTES - fixed + 1))]);
        assert!(head_too_large(&over));
        let mut h2 = over;
        *h2.version_mut() = Version::HTTP_2;
        assert!(!head_too_large(&h2));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_and_a_partial_preface_time_out() {
        for sent in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
            let (client, server) = tokio::io::duplex(64);
            let mut server = HeadDeadline::new(server, Duration::from_secs(60));
            let mut client = client;
            client.write_all(sent).await.unwrap();
            let mut buf = vec![0u8; sent.len()];
            server.read_exact(&mut buf).await.unwrap();
            let err = server.read(&mut [0u8; 8]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_once_the_protocol_is_known() {
        for first in [&b"G"[..], H2_PREFACE] {
            let (mut client, server) = tokio::io::duplex(64);
            let mut server = HeadDeadline::new(server, Duration::from_secs(60));
            client.write_all(first).await.unwrap();
            let mut buf = vec![0u8; first.len()];
            server.read_exact(&mut buf).await.unwrap();
            // Long after the deadline, a later byte still arrives.
            tokio::time::sleep(Duration::from_secs(120)).await;
            client.write_all(b"x").await.unwrap();
            assert_eq!(server.read(&mut [0u8; 1]).await.unwrap(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_no_limit() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = HeadDeadline::new(server, Duration::ZERO);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        client.write_all(b"P").await.unwrap();
        assert_eq!(server.read(&mut [0u8; 1]).await.unwrap(), 1);
    }
}
