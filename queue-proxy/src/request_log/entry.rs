//! What one request-log line is made from: the request as it arrived, the response's code,
//! size and latency, and the revision's static identity. These mirror upstream's
//! `RequestLogTemplateInput` pieces (`pkg/http/request_log.go`): `*http.Request`,
//! `RequestLogResponse{Code, Size, Latency}` and `RequestLogRevision`.
//!
//! The request is captured when it arrives ([`RequestInfo::from_parts`]), because by the time
//! the line is written the request has been forwarded to the app. Capturing clones the
//! method, URI and header map; header values and the URI are reference-counted bytes, so
//! that is a few small allocations, paid only when request logging is on.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, Method, Uri, Version};

/// The revision's identity, fixed for the process (upstream's `RequestLogRevision`, filled
/// from the `SERVING_*` environment).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionInfo {
    /// `SERVING_REVISION`.
    pub name: String,
    /// `SERVING_NAMESPACE`.
    pub namespace: String,
    /// `SERVING_SERVICE`.
    pub service: String,
    /// `SERVING_CONFIGURATION`.
    pub configuration: String,
    /// `SERVING_POD`.
    pub pod_name: String,
    /// `SERVING_POD_IP`.
    pub pod_ip: String,
}

/// The request as the server received it: everything a template can ask of Go's
/// `*http.Request`.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// The method.
    pub method: Method,
    /// The request target as hyper parsed it (origin-form for HTTP/1.1, scheme and authority
    /// filled in for HTTP/2).
    pub uri: Uri,
    /// The protocol version (`Proto`, `ProtoMajor`, `ProtoMinor`).
    pub version: Version,
    /// The request headers as received.
    pub headers: HeaderMap,
    /// The peer (`RemoteAddr`); `None` prints as an empty string.
    pub remote_addr: Option<SocketAddr>,
    /// Go's `ContentLength`: the declared body length, 0 for no body, -1 when unknown
    /// (chunked, or an HTTP/2 stream without `content-length`). See
    /// [`content_length_from_hint`].
    pub content_length: i64,
    /// Whether the request came over TLS (Go's `TLS != nil`).
    pub tls: bool,
}

impl RequestInfo {
    /// Captures a request's head. `content_length` is Go's value (see
    /// [`content_length_from_hint`]); `tls` is false.
    pub fn from_parts(
        parts: &http::request::Parts,
        remote_addr: Option<SocketAddr>,
        content_length: i64,
    ) -> Self {
        RequestInfo {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            remote_addr,
            content_length,
            tls: false,
        }
    }

    /// Marks the request as received over TLS.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }
}

/// Go's `Request.ContentLength` from a body's size hint, as hyper reports it for a server
/// request: an exact size (from `content-length`, or 0 for a body that is known to be empty,
/// which is what Go reports for a request without body) is that size; anything else
/// (chunked HTTP/1.1, HTTP/2 without `content-length`) is -1, "unknown".
pub fn content_length_from_hint(hint: &http_body::SizeHint) -> i64 {
    hint.exact()
        .and_then(|n| i64::try_from(n).ok())
        .unwrap_or(-1)
}

/// The response side of a line (upstream's `RequestLogResponse`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResponseInfo {
    /// The status code written (200 when the handler wrote none; 500 after a panic).
    pub code: i64,
    /// Response body bytes written (0 after a panic).
    pub size: i64,
    /// Seconds from the request's arrival to the end of the handler.
    pub latency: f64,
}

impl ResponseInfo {
    /// A response of `code` with `size` body bytes, `latency` after the request arrived.
    /// The latency is converted as Go's `Duration.Seconds()` does.
    pub fn new(code: u16, size: u64, latency: Duration) -> Self {
        ResponseInfo {
            code: i64::from(code),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            latency: latency.as_secs_f64(),
        }
    }
}

/// One line's worth of data.
#[derive(Clone, Copy, Debug)]
pub struct LogEntry<'r> {
    /// The request as it arrived.
    pub request: &'r RequestInfo,
    /// How it was answered.
    pub response: ResponseInfo,
    /// Whether the request is a probe (kubelet, network or activator probe): logged only
    /// when probe request logging is enabled.
    pub is_probe: bool,
}
