//! Why a probe attempt or a probe failed.
//!
//! The texts follow what upstream prints to stderr for the same failure (Go's
//! `net` and `net/http` errors, grpc-go's status errors, and the prober's own
//! wording), so operators who grep pod logs for them find them here too.

use std::fmt;
use std::io;
use std::time::Duration;

/// A failed probe attempt, or a failed probe after all its attempts.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe's action is `exec`, which only the kubelet can run.
    #[error("exec probe not supported")]
    ExecNotSupported,
    /// The probe has no action.
    #[error("no probe found")]
    NoHandler,
    /// A TCP probe could not connect.
    #[error(transparent)]
    Tcp(#[from] DialError),
    /// The HTTP probe's configuration can never produce a request.
    #[error(transparent)]
    HttpSetup(#[from] HttpSetupError),
    /// The HTTP request failed before a status arrived.
    #[error("Get \"{url}\": {error}")]
    HttpRequest {
        url: String,
        error: HttpRequestError,
    },
    /// The app answered outside 200–399.
    #[error("HTTP probe did not respond Ready, got status code: {0}")]
    HttpStatus(u16),
    /// HTTP/2 auto-detection: the h2c attempt failed and the HTTP/1.1 one too.
    #[error("failed to run HTTP protocol probe with error: {0}")]
    ProtocolDetection(Box<ProbeError>),
    /// The gRPC health check did not report `SERVING`.
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    /// An aggressive probe did not reach its success threshold in time.
    #[error("{}", gave_up_text(*.failures, .last.as_deref(), *.successes, *.threshold, *.after))]
    GaveUp {
        /// Failed attempts in this round.
        failures: u32,
        /// The last failure of this round, if any.
        last: Option<Box<ProbeError>>,
        /// Consecutive successes when it gave up.
        successes: u32,
        threshold: u32,
        after: Duration,
    },
}

fn gave_up_text(
    failures: u32,
    last: Option<&ProbeError>,
    successes: u32,
    threshold: u32,
    after: Duration,
) -> String {
    match last {
        Some(last) => format!("aggressive probe error (failed {failures} times): {last}"),
        None => format!(
            "aggressive probe timed out after {}: {successes} of {threshold} consecutive successes",
            go_duration(after)
        ),
    }
}

/// A failed TCP connect, worded like Go's `net.Dial` errors.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The host name did not resolve.
    #[error("dial tcp: lookup {host}: {}", crate::error::go_errno_text(.source))]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    /// The connect itself failed, e.g. `connection refused`.
    #[error("dial tcp {addr}: connect: {}", crate::error::go_errno_text(.source))]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The connect did not complete within the attempt's timeout.
    #[error("dial tcp {addr}: i/o timeout")]
    Timeout { addr: String },
}

/// An HTTP probe that can never send a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpSetupError {
    #[error("error constructing probe url: missing protocol scheme")]
    MissingScheme,
    #[error("Get \"{url}\": unsupported protocol scheme \"{scheme}\"")]
    UnsupportedScheme { url: String, scheme: String },
    /// This queue-proxy has no TLS client; see the module docs.
    #[error("Get \"{url}\": HTTPS readiness probes are not supported by this queue-proxy")]
    Https { url: String },
    #[error("error constructing probe url: invalid URL escape {0:?}")]
    InvalidEscape(String),
    #[error("error constructing probe url: {0}")]
    InvalidUrl(String),
    #[error("net/http: invalid header field name {0:?}")]
    InvalidHeaderName(String),
    #[error("net/http: invalid header field value for {0:?}")]
    InvalidHeaderValue(String),
}

/// Why an HTTP request produced no status.
#[derive(Debug, thiserror::Error)]
pub enum HttpRequestError {
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The exchange broke (reset, malformed answer, no h2c support, ...).
    #[error("{0}")]
    Protocol(#[source] hyper::Error),
    #[error("context deadline exceeded (Client.Timeout exceeded while awaiting headers)")]
    Timeout,
}

/// A failed gRPC health check, worded like upstream's `GRPCProbe`.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The call ended with a non-OK status.
    #[error("{}", grpc_status_text(*.code, .message, *.timeout))]
    Status {
        code: u32,
        message: String,
        timeout: Duration,
    },
    /// No answer within the attempt's timeout.
    #[error(
        "health rpc did not complete within {}: rpc error: code = DeadlineExceeded desc = context deadline exceeded",
        go_duration(*.timeout)
    )]
    Timeout { timeout: Duration },
    /// The call succeeded but the service is not `SERVING`.
    #[error("service unhealthy (responded with \"{0}\")")]
    Unhealthy(&'static str),
}

/// Unimplemented: the app speaks gRPC but has no health service.
pub(super) const CODE_UNIMPLEMENTED: u32 = 12;
const CODE_DEADLINE_EXCEEDED: u32 = 4;

fn grpc_status_text(code: u32, message: &str, timeout: Duration) -> String {
    let status = format!("rpc error: code = {} desc = {message}", GrpcCode(code));
    match code {
        CODE_UNIMPLEMENTED => format!(
            "this server does not implement the grpc health protocol (grpc.health.v1.Health) {status}"
        ),
        CODE_DEADLINE_EXCEEDED => format!(
            "health rpc did not complete within {}: {status}",
            go_duration(timeout)
        ),
        _ => format!("health rpc probe failed: {status}"),
    }
}

/// A gRPC status code, displayed by name as grpc-go does.
struct GrpcCode(u32);

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 17] = [
            "OK",
            "Canceled",
            "Unknown",
            "InvalidArgument",
            "DeadlineExceeded",
            "NotFound",
            "AlreadyExists",
            "PermissionDenied",
            "ResourceExhausted",
            "FailedPrecondition",
            "Aborted",
            "OutOfRange",
            "Unimplemented",
            "Internal",
            "Unavailable",
            "DataLoss",
            "Unauthenticated",
        ];
        match usize::try_from(self.0).ok().and_then(|i| NAMES.get(i)) {
            Some(name) => f.write_str(name),
            None => write!(f, "Code({})", self.0),
        }
    }
}

/// A duration as Go's `time.Duration.String` prints the round values used here.
pub(super) fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_nanos().is_multiple_of(1_000_000) && d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_read_like_upstream() {
        let refused = DialError::Connect {
            addr: "127.0.0.1:8080".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(
            refused.to_string(),
            "dial tcp 127.0.0.1:8080: connect: connection refused"
        );
        let http = ProbeError::HttpRequest {
            url: "http://127.0.0.1:8080/".into(),
            error: HttpRequestError::Timeout,
        };
        assert_eq!(
            http.to_string(),
            "Get \"http://127.0.0.1:8080/\": context deadline exceeded \
             (Client.Timeout exceeded while awaiting headers)"
        );
        let gave_up = ProbeError::GaveUp {
            failures: 200,
            last: Some(Box::new(refused.into())),
            successes: 0,
            threshold: 1,
            after: Duration::from_secs(10),
        };
        assert_eq!(
            gave_up.to_string(),
            "aggressive probe error (failed 200 times): dial tcp 127.0.0.1:8080: connect: connection refused"
        );
        let unimplemented = GrpcError::Status {
            code: 12,
            message: "unknown service grpc.health.v1.Health".into(),
            timeout: Duration::from_millis(100),
        };
        assert_eq!(
            unimplemented.to_string(),
            "this server does not implement the grpc health protocol (grpc.health.v1.Health) \
             rpc error: code = Unimplemented desc = unknown service grpc.health.v1.Health"
        );
        assert_eq!(
            GrpcError::Timeout {
                timeout: Duration::from_millis(100)
            }
            .to_string(),
            "health rpc did not complete within 100ms: rpc error: code = DeadlineExceeded \
             desc = context deadline exceeded"
        );
        assert_eq!(
            GrpcError::Unhealthy("NOT_SERVING").to_string(),
            "service unhealthy (responded with \"NOT_SERVING\")"
        );
        assert_eq!(GrpcCode(99).to_string(), "Code(99)");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
