//! The gRPC probe: `grpc.health.v1.Health/Check` over h2c.
//!
//! Mirrors upstream's `health.GRPCProbe` (`pkg/queue/health/probe.go`), which
//! dials `127.0.0.1:<port>` without TLS and asks about `grpc.service` (empty for
//! the server as a whole) with the `kube-probe//` user agent. The probe passes
//! only when the call ends with status OK and the answer is `SERVING`.
//!
//! No gRPC library is involved: the unary call is an HTTP/2 POST whose body is
//! one length-prefixed protobuf message, and whose status arrives in the
//! `grpc-status` trailer (or in the headers, for a trailers-only answer). The two
//! messages of `grpc/health/v1/health.proto` are derived with prost below.
//!
//! Not mirrored: upstream (like the kubelet) sets `SO_LINGER` to 1 s on the probe
//! socket; a lingering close would block a tokio worker, so the socket is closed
//! normally.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, TE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use std::time::Duration;

use super::error::{CODE_UNIMPLEMENTED, GrpcError, ProbeError};
use super::http::{KUBE_PROBE_UA, drive};
use super::tcp;

/// The health service's unary method.
const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    /// Only the streaming `Watch` uses it.
    ServiceUnknown = 3,
}

impl ServingStatus {
    /// The proto name, as grpc-go prints it.
    fn name(status: i32) -> &'static str {
        match ServingStatus::try_from(status) {
            Ok(ServingStatus::Unknown) => "UNKNOWN",
            Ok(ServingStatus::Serving) => "SERVING",
            Ok(ServingStatus::NotServing) => "NOT_SERVING",
            Ok(ServingStatus::ServiceUnknown) => "SERVICE_UNKNOWN",
            Err(_) => "UNRECOGNIZED",
        }
    }
}

/// gRPC status codes used below.
const CODE_UNKNOWN: u32 = 2;
const CODE_PERMISSION_DENIED: u32 = 7;
const CODE_INTERNAL: u32 = 13;
const CODE_UNAVAILABLE: u32 = 14;
const CODE_UNAUTHENTICATED: u32 = 16;

/// One gRPC probe attempt against `127.0.0.1:<port>`.
pub(super) async fn probe(port: u16, service: &str, timeout: Duration) -> Result<(), ProbeError> {
    let status = |code: u32, message: String| GrpcError::Status {
        code,
        message,
        timeout,
    };
    let call = async {
        let stream = tcp::connect(tcp::LOOPBACK, port).await.map_err(|e| {
            status(
                CODE_UNAVAILABLE,
                format!("connection error: desc = \"transport: Error while dialing: {e}\""),
            )
        })?;
        let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| {
                status(
                    CODE_UNAVAILABLE,
                    format!("connection error: desc = \"{e}\""),
                )
            })?;
        drive(conn, async {
            let response = sender
                .send_request(request(port, service, timeout))
                .await
                .map_err(|e| status(CODE_UNAVAILABLE, e.to_string()))?;
            let serving = evaluate(response)
                .await
                .map_err(|(code, message)| status(code, message))?;
            match serving {
                s if s == ServingStatus::Serving as i32 => Ok(()),
                s => Err(GrpcError::Unhealthy(ServingStatus::name(s))),
            }
        })
        .await
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(ProbeError::from),
        Err(_) => Err(GrpcError::Timeout { timeout }.into()),
    }
}

fn request(port: u16, service: &str, timeout: Duration) -> Request<Full<Bytes>> {
    let message = HealthCheckRequest {
        service: service.to_owned(),
    }
    .encode_to_vec();
    let mut body = BytesMut::with_capacity(5 + message.len());
    body.put_u8(0); // not compressed
    body.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    body.put_slice(&message);

    let mut request = Request::new(Full::new(body.freeze()));
    *request.method_mut() = Method::POST;
    *request.version_mut() = Version::HTTP_2;
    *request.uri_mut() = Uri::try_from(format!("http://{}:{port}{CHECK_PATH}", tcp::LOOPBACK))
        .unwrap_or_else(|_| Uri::from_static(CHECK_PATH));
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
    headers.insert(USER_AGENT, HeaderValue::from_static(KUBE_PROBE_UA));
    // The deadline, as grpc-go sends it (at most 8 digits; milliseconds fit).
    let millis = timeout.as_millis().clamp(1, 99_999_999);
    if let Ok(value) = HeaderValue::try_from(format!("{millis}m")) {
        headers.insert("grpc-timeout", value);
    }
    request
}

/// Reads the answer: the serving status on success, or a gRPC status code and
/// message for a failed call.
async fn evaluate(response: http::Response<Incoming>) -> Result<i32, (u32, String)> {
    let http_status = response.status();
    if http_status != StatusCode::OK {
        return Err((
            code_for_http_status(http_status),
            format!(
                "unexpected HTTP status code received from server: {} ({})",
                http_status.as_u16(),
                http_status.canonical_reason().unwrap_or("unknown")
            ),
        ));
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/grpc") {
        return Err((
            CODE_UNKNOWN,
            format!("transport: received unexpected content-type {content_type:?}"),
        ));
    }
    // A trailers-only answer carries the status in the headers and has no body.
    if response.headers().contains_key("grpc-status") {
        check_status(response.headers())?;
        return Err((
            CODE_INTERNAL,
            "server closed the stream without sending a response message".to_owned(),
        ));
    }
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| (CODE_UNAVAILABLE, e.to_string()))?;
    let trailers = collected.trailers().cloned().ok_or((
        CODE_INTERNAL,
        "server closed the stream without sending trailers".to_owned(),
    ))?;
    check_status(&trailers)?;
    let body = collected.to_bytes();
    let message = first_message(&body)?;
    HealthCheckResponse::decode(message)
        .map(|r| r.status)
        .map_err(|e| {
            (
                CODE_INTERNAL,
                format!("grpc: failed to unmarshal the received message: {e}"),
            )
        })
}

/// `Ok` when `grpc-status` is 0.
fn check_status(headers: &HeaderMap) -> Result<(), (u32, String)> {
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or((CODE_INTERNAL, "transport: malformed grpc-status".to_owned()))?;
    if code == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
        .unwrap_or_default();
    Err((code, message))
}

/// The payload of the first length-prefixed message of a body.
fn first_message(body: &[u8]) -> Result<&[u8], (u32, String)> {
    let internal = |m: &str| (CODE_INTERNAL, m.to_owned());
    let Some((&[flag, a, b, c, d], rest)) = body.split_first_chunk::<5>() else {
        return Err(internal(
            "server closed the stream without sending a response message",
        ));
    };
    if flag & 1 == 1 {
        return Err(internal(
            "grpc: compressed message received without grpc-encoding support",
        ));
    }
    let len = usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
    rest.get(..len)
        .ok_or_else(|| internal("grpc: truncated response message"))
}

/// grpc-go's mapping of a non-200 HTTP status to a gRPC code.
fn code_for_http_status(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => CODE_INTERNAL,
        401 => CODE_UNAUTHENTICATED,
        403 => CODE_PERMISSION_DENIED,
        404 => CODE_UNIMPLEMENTED,
        429 | 502 | 503 | 504 => CODE_UNAVAILABLE,
        _ => CODE_UNKNOWN,
    }
}

/// `grpc-message` is percent-encoded.
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if raw[i] == b'%'
            && let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_a_framed_health_check() {
        let request = request(9000, "svc", Duration::from_millis(100));
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.uri(),
            "http://127.0.0.1:9000/grpc.health.v1.Health/Check"
        );
        let h = request.headers();
        assert_eq!(h[CONTENT_TYPE], "application/grpc");
        assert_eq!(h[TE], "trailers");
        assert_eq!(h[USER_AGENT], "kube-probe//");
        assert_eq!(h["grpc-timeout"], "100m");
    }

    #[test]
    fn messages_match_the_health_proto_wire_format() {
        // field 1, wire type 2, length 3, "svc"
        assert_eq!(
            HealthCheckRequest {
                service: "svc".into()
            }
            .encode_to_vec(),
            b"\x0a\x03svc"
        );
        assert!(HealthCheckRequest::default().encode_to_vec().is_empty());
        // field 1, varint, 1 = SERVING
        assert_eq!(
            HealthCheckResponse::decode(&b"\x08\x01"[..])
                .unwrap()
                .status,
            ServingStatus::Serving as i32
        );
        assert_eq!(ServingStatus::name(2), "NOT_SERVING");
        assert_eq!(ServingStatus::name(7), "UNRECOGNIZED");
    }

    #[test]
    fn framing_and_status_parsing() {
        assert_eq!(
            first_message(b"\x00\x00\x00\x00\x02\x08\x01rest").unwrap(),
            b"\x08\x01"
        );
        assert_eq!(first_message(b"\x00\x00\x00\x00\x00").unwrap(), b"");
        assert!(first_message(b"").is_err());
        assert!(first_message(b"\x00\x00\x00\x00\x05\x08").is_err());
        assert!(first_message(b"\x01\x00\x00\x00\x00").is_err());

        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(check_status(&headers).is_ok());
        headers.insert("grpc-status", HeaderValue::from_static("12"));
        headers.insert("grpc-message", HeaderValue::from_static("no%20health%3F"));
        assert_eq!(
            check_status(&headers).unwrap_err(),
            (12, "no health?".to_owned())
        );
        headers.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(check_status(&headers).unwrap_err().0, CODE_INTERNAL);
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(
            code_for_http_status(StatusCode::NOT_FOUND),
            CODE_UNIMPLEMENTED
        );
    }
}
