//! The OTLP transport: one protobuf message POSTed to a collector, over
//! OTLP/HTTP (`http/protobuf`) or OTLP/gRPC (`grpc`, unary call over h2c).
//!
//! Upstream uses the Go OTLP exporters with `WithEndpointURL(endpoint)` when the
//! endpoint is set, else the `OTEL_EXPORTER_OTLP_*` variables, else the
//! localhost defaults (`:4318` for HTTP, `:4317` for gRPC). The same order
//! applies here. An HTTP endpoint is a URL whose path is used as given; an empty
//! path gets the signal's default (`/v1/traces`, `/v1/metrics`) where Go's
//! exporter would post to `/`, which collectors refuse. Endpoints without a
//! scheme are taken as `http://`. `https://` collectors are not supported yet
//! (no client roots are configured): such an endpoint is reported at start and
//! that exporter stays off.
//!
//! Every export dials a new connection: exports happen every few seconds at
//! most, and this keeps no state that could go stale between them.

use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long one export may take, connection included (the OTel default).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc`: OTLP/gRPC.
    Grpc,
    /// `http/protobuf`: OTLP/HTTP with binary protobuf bodies.
    HttpProtobuf,
}

impl Protocol {
    /// The protocol an `OBSERVABILITY_CONFIG` protocol name selects, if OTLP.
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// What is exported, which picks the default path and the gRPC method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }

    fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            Signal::Metrics => "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        }
    }
}

/// An endpoint that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("OTLP endpoint {0:?} is not a URL")]
    Malformed(String),
    #[error("OTLP endpoint {0:?}: https collectors are not supported")]
    Https(String),
}

/// Where and how to send one signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub protocol: Protocol,
    /// `host:port`.
    pub authority: String,
    /// The request path.
    pub path: String,
}

impl Endpoint {
    /// The endpoint for `signal`: `configured` when not empty, else from the
    /// `OTEL_EXPORTER_OTLP_*` variables read through `env`, else the default.
    pub fn resolve(
        protocol: Protocol,
        signal: Signal,
        configured: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Endpoint, EndpointError> {
        let configured = configured.trim();
        if !configured.is_empty() {
            return Self::parse(protocol, signal, configured);
        }
        let non_empty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(url) = non_empty(signal.env_var()) {
            return Self::parse(protocol, signal, &url);
        }
        if let Some(base) = non_empty("OTEL_EXPORTER_OTLP_ENDPOINT") {
            return Self::parse(protocol, signal, &base);
        }
        let default = match protocol {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf => "http://localhost:4318",
        };
        Self::parse(protocol, signal, default)
    }

    fn parse(protocol: Protocol, signal: Signal, url: &str) -> Result<Endpoint, EndpointError> {
        if url.starts_with("https://") {
            return Err(EndpointError::Https(url.to_owned()));
        }
        let with_scheme;
        let url_str = if url.contains("://") {
            url
        } else {
            with_scheme = format!("http://{url}");
            &with_scheme
        };
        let uri: Uri = url_str
            .parse()
            .map_err(|_| EndpointError::Malformed(url.to_owned()))?;
        if uri.scheme_str() != Some("http") {
            return Err(EndpointError::Malformed(url.to_owned()));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| EndpointError::Malformed(url.to_owned()))?;
        let port = authority.port_u16().unwrap_or(80);
        let path = match protocol {
            Protocol::Grpc => signal.grpc_path().to_owned(),
            Protocol::HttpProtobuf => match uri.path() {
                "" | "/" => signal.http_path().to_owned(),
                path => path.to_owned(),
            },
        };
        Ok(Endpoint {
            protocol,
            authority: format!("{}:{port}", authority.host()),
            path,
        })
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("connecting to the collector at {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("OTLP request to {0}: {1}")]
    Http(String, hyper::Error),
    #[error("collector at {0} answered {1}")]
    Status(String, StatusCode),
    #[error("collector at {0} answered grpc-status {1}")]
    GrpcStatus(String, String),
    #[error("OTLP export to {0} timed out")]
    Timeout(String),
}

/// Sends `message` (an encoded `Export*ServiceRequest`) to `endpoint`.
pub async fn export(endpoint: &Endpoint, message: Vec<u8>) -> Result<(), ExportError> {
    match tokio::time::timeout(EXPORT_TIMEOUT, send(endpoint, message)).await {
        Ok(result) => result,
        Err(_) => Err(ExportError::Timeout(endpoint.authority.clone())),
    }
}

async fn send(endpoint: &Endpoint, message: Vec<u8>) -> Result<(), ExportError> {
    let at = || endpoint.authority.clone();
    let io = TcpStream::connect(&endpoint.authority)
        .await
        .map_err(|e| ExportError::Connect(at(), e))?;
    let _ = io.set_nodelay(true);
    let io = TokioIo::new(io);
    let uri = format!("http://{}{}", endpoint.authority, endpoint.path);
    match endpoint.protocol {
        Protocol::HttpProtobuf => {
            let (mut sender, conn) = http1::handshake(io)
                .await
                .map_err(|e| ExportError::Http(at(), e))?;
            tokio::spawn(conn);
            let req = Request::post(uri.as_str())
                .header(header::HOST, endpoint.authority.as_str())
                .header(header::CONTENT_TYPE, "application/x-protobuf")
                .body(Full::new(Bytes::from(message)))
                .expect("a valid request");
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| ExportError::Http(at(), e))?;
            let status = resp.status();
            // Read the answer out so the connection closes cleanly.
            let _ = resp.into_body().collect().await;
            if !status.is_success() {
                return Err(ExportError::Status(at(), status));
            }
            Ok(())
        }
        Protocol::Grpc => {
            let (mut sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| ExportError::Http(at(), e))?;
            tokio::spawn(conn);
            let mut framed = BytesMut::with_capacity(5 + message.len());
            framed.put_u8(0); // not compressed
            framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
            framed.put_slice(&message);
            let req = Request::post(uri.as_str())
                .header(header::CONTENT_TYPE, "application/grpc")
                .header(header::TE, "trailers")
                .body(Full::new(framed.freeze()))
                .expect("a valid request");
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| ExportError::Http(at(), e))?;
            if !resp.status().is_success() {
                return Err(ExportError::Status(at(), resp.status()));
            }
            // A trailers-only answer carries grpc-status in the headers.
            let mut grpc_status = resp.headers().get("grpc-status").cloned();
            let collected = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ExportError::Http(at(), e))?;
            if let Some(trailers) = collected.trailers()
                && let Some(status) = trailers.get("grpc-status")
            {
                grpc_status = Some(status.clone());
            }
            match grpc_status {
                Some(s) if s == "0" => Ok(()),
                Some(s) => Err(ExportError::GrpcStatus(
                    at(),
                    String::from_utf8_lossy(s.as_bytes()).into_owned(),
                )),
                None => Err(ExportError::GrpcStatus(at(), "missing".to_owned())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn http_endpoint_paths() {
        let e = Endpoint::resolve(
            Protocol::HttpProtobuf,
            Signal::Traces,
            "http://otel.observability:4318/v1/traces",
            no_env,
        )
        .unwrap();
        assert_eq!(e.authority, "otel.observability:4318");
        assert_eq!(e.path, "/v1/traces");
        let e = Endpoint::resolve(
            Protocol::HttpProtobuf,
            Signal::Metrics,
            "collector:4318",
            no_env,
        )
        .unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("collector:4318", "/v1/metrics")
        );
        let e = Endpoint::resolve(Protocol::HttpProtobuf, Signal::Traces, "", no_env).unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("localhost:4318", "/v1/traces")
        );
    }

    #[test]
    fn grpc_endpoint_and_env_fallbacks() {
        let env = |name: &str| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://base:4317".to_owned())
        };
        let e = Endpoint::resolve(Protocol::Grpc, Signal::Metrics, "", env).unwrap();
        assert_eq!(e.authority, "base:4317");
        assert_eq!(
            e.path,
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        );
        let e = Endpoint::resolve(Protocol::Grpc, Signal::Traces, "", no_env).unwrap();
        assert_eq!(e.authority, "localhost:4317");
    }

    #[test]
    fn https_and_garbage_are_refused() {
        assert!(matches!(
            Endpoint::resolve(Protocol::Grpc, Signal::Traces, "https://c:4317", no_env),
            Err(EndpointError::Https(_))
        ));
        assert!(
            Endpoint::resolve(Protocol::HttpProtobuf, Signal::Traces, "ftp://x", no_env).is_err()
        );
        assert!(
            Endpoint::resolve(Protocol::HttpProtobuf, Signal::Traces, "http://", no_env).is_err()
        );
    }
}
