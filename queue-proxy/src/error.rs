//! The typed errors of the request path, and the one place that turns them into
//! HTTP responses.
//!
//! Each error knows which side caused it ([`Fault`]: the client, the app, or us),
//! in the manner of pingora's error sources, so status codes are decided here and
//! nowhere else. Bodies and headers mirror Go's `http.Error`, which is what
//! upstream uses for every locally generated answer: the message plus a newline,
//! `Content-Type: text/plain; charset=utf-8` and `X-Content-Type-Options: nosniff`.

use http::{HeaderValue, Response, StatusCode, header};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::body::ProxyBody;
use crate::breaker::BreakerError;

/// Which side of the proxy a fault came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client: it sent something we cannot serve, or went away.
    Downstream,
    /// The app behind the proxy: it refused, reset, or broke the protocol.
    Upstream,
    /// The proxy itself: a limit it enforces on purpose.
    Internal,
}

/// A failure to get a response from the app. Displays as Go's error text would,
/// because upstream puts that text in the 502 body and operators grep for it.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connect failed, e.g. `dial tcp 127.0.0.1:8080: connect: connection refused`.
    #[error("dial tcp {addr}: connect: {}", go_errno_text(.source))]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Every connect attempt timed out.
    #[error("dial tcp {addr}: i/o timeout")]
    ConnectTimeout { addr: SocketAddr, waited: Duration },
    /// The HTTP exchange failed after the connection was made.
    #[error("{}", go_http_error_text(.0))]
    Http(#[source] hyper::Error),
}

/// Everything the request path can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The breaker's queue is full.
    #[error(transparent)]
    Breaker(#[from] BreakerError),
    /// The app could not be reached or broke the exchange.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A revision timer fired before the response started; the body to answer.
    #[error("{0}")]
    Timeout(&'static str),
}

impl ProxyError {
    /// Which side caused it.
    pub fn fault(&self) -> Fault {
        match self {
            ProxyError::Breaker(_) => Fault::Internal,
            ProxyError::Upstream(_) | ProxyError::Timeout(_) => Fault::Upstream,
        }
    }

    /// The status upstream answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Breaker(BreakerError::QueueFull) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The response the client gets, exactly as upstream writes it.
    pub fn into_response(self) -> Response<ProxyBody> {
        match self.fault() {
            Fault::Upstream => tracing::warn!(error = %self, "error reverse proxying request"),
            Fault::Internal | Fault::Downstream => {
                tracing::debug!(error = %self, "request refused")
            }
        }
        match self {
            // Go's TimeoutHandler writes the bare message: no newline, no nosniff,
            // and the sniffed content type.
            ProxyError::Timeout(_) => {
                let mut resp = Response::new(ProxyBody::local(self.to_string()));
                *resp.status_mut() = self.status();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                resp
            }
            _ => go_http_error(self.status(), &self.to_string()),
        }
    }
}

/// A response as Go's `http.Error(w, message, status)` writes it.
pub fn go_http_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut body = String::with_capacity(message.len() + 1);
    body.push_str(message);
    body.push('\n');
    let mut response = Response::new(ProxyBody::local(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// What Go's server writes, and then closes the connection, when a request
/// head is longer than it reads (`MaxHeaderBytes`): a bare text, no nosniff.
pub fn request_header_fields_too_large() -> Response<ProxyBody> {
    const TEXT: &str = "431 Request Header Fields Too Large";
    let mut response = Response::new(ProxyBody::local(TEXT));
    *response.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Go's `http.NotFound`, used by the admin and metrics servers for unknown paths.
pub fn not_found() -> Response<ProxyBody> {
    go_http_error(StatusCode::NOT_FOUND, "404 page not found")
}

/// The text Go's syscall errors print (`connection refused`), without Rust's
/// ` (os error 111)` suffix or capital letter. Used wherever an error message
/// must read like upstream's (502 bodies, readiness probe failures).
pub fn go_errno_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".to_owned(),
        io::ErrorKind::AddrNotAvailable => "cannot assign requested address".to_owned(),
        io::ErrorKind::TimedOut => "connection timed out".to_owned(),
        _ => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text);
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text.to_owned(),
            }
        }
    }
}

/// What Go's transport reports for the same failure, where there is a clear match.
fn go_http_error_text(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        return "EOF".to_owned();
    }
    if e.is_parse() || e.is_parse_status() {
        return "net/http: HTTP/1.x transport connection broken: malformed HTTP response"
            .to_owned();
    }
    if let Some(io) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>()) {
        return format!("read tcp: {}", go_errno_text(io));
    }
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn connect_refused_reads_like_go() {
        let err = UpstreamError::Connect {
            addr: "127.0.0.1:8080".parse().unwrap(),
            source: io::Error::from_raw_os_error(111),
        };
        assert_eq!(
            err.to_string(),
            "dial tcp 127.0.0.1:8080: connect: connection refused"
        );
    }

    #[test]
    fn other_errno_text_is_lowercased_without_suffix() {
        let text = go_errno_text(&io::Error::from_raw_os_error(113)); // EHOSTUNREACH
        assert_eq!(text, "no route to host");
    }

    #[tokio::test]
    async fn queue_full_is_503_with_go_body_and_headers() {
        let resp = ProxyError::from(BreakerError::QueueFull).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"pending request queue full\n");
    }
}
