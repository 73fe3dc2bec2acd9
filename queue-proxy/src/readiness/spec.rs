//! Decoding `SERVING_READINESS_PROBE`: the JSON of Kubernetes `core/v1.Probe`, one
//! object or (with multi-container probes) an array of them, as upstream's
//! `pkg/queue/readiness/probe_encoding.go` (`DecodeProbes`) reads it.
//!
//! The decoded [`ProbeSpec`] keeps only what the queue-proxy can act on and
//! resolves the handler the way upstream's prober picks it: `httpGet` first, then
//! `tcpSocket`, `grpc`, `exec`. Ports are resolved here: Kubernetes' IntOrString
//! may carry a number or a string, and only a string of digits names a port this
//! process can dial (the reconciler replaces named ports before they get here), so
//! anything else is a configuration error rather than a probe that can never pass.

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;

/// What is wrong with `SERVING_READINESS_PROBE`. Upstream exits on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ProbeConfigError {
    /// The value is not JSON at all.
    #[error("SERVING_READINESS_PROBE: invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// Valid JSON of the wrong kind for the probe mode.
    #[error("SERVING_READINESS_PROBE: expected {expected}, got {found}")]
    Shape {
        expected: &'static str,
        found: &'static str,
    },
    /// One probe object has a field of the wrong type or an unusable value.
    #[error("SERVING_READINESS_PROBE: probe {index}: {message}")]
    Probe { index: usize, message: String },
}

/// One readiness probe, as the queue-proxy runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// What to check.
    pub handler: Handler,
    /// Decoded for completeness; upstream's queue-proxy ignores it (the kubelet
    /// applies it to the queue-proxy's own readiness probe).
    pub initial_delay_seconds: i32,
    /// The attempt timeout of a standard probe, in seconds.
    pub timeout_seconds: i32,
    /// `0` selects the aggressive mode; anything else a single attempt per round.
    pub period_seconds: i32,
    /// Consecutive successes an aggressive probe needs.
    pub success_threshold: i32,
    /// Decoded for completeness; ignored like upstream does.
    pub failure_threshold: i32,
}

impl ProbeSpec {
    /// A probe with `periodSeconds == 0` is polled every 50 ms until it passes
    /// (Knative's default); any other period means one attempt per round.
    pub fn is_aggressive(&self) -> bool {
        self.period_seconds == 0
    }
}

/// The probe's action. A probe that sets several keeps the first of
/// `httpGet`, `tcpSocket`, `grpc`, `exec`, as upstream does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    HttpGet(HttpGetAction),
    TcpSocket(TcpSocketAction),
    Grpc(GrpcAction),
    /// Never reaches a correctly reconciled queue-proxy; always fails.
    Exec(ExecAction),
    /// No action at all; always fails.
    None,
}

/// `httpGet`: a GET to `<scheme>://<host>:<port>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGetAction {
    /// Empty means loopback.
    pub host: String,
    pub port: u16,
    /// As configured: with or without a leading slash, maybe with a query.
    pub path: String,
    /// As configured (`HTTP`, `HTTPS`, ...); matched case-insensitively when used.
    pub scheme: String,
    pub http_headers: Vec<HttpHeader>,
}

/// One entry of `httpGet.httpHeaders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// `tcpSocket`: a connect to `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocketAction {
    /// Empty means loopback.
    pub host: String,
    pub port: u16,
}

/// `grpc`: `grpc.health.v1.Health/Check` on `127.0.0.1:<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcAction {
    pub port: u16,
    /// The `service` asked about; empty means the server as a whole.
    pub service: String,
}

/// `exec`: kept only to report it; the queue-proxy cannot run commands in the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecAction {
    pub command: Vec<String>,
}

/// Decodes `SERVING_READINESS_PROBE`.
///
/// An empty value means no probes (the app is always ready). With `multi`
/// (`ENABLE_MULTI_CONTAINER_PROBES=true`) the value must be a JSON array, even of
/// one probe, and `null` decodes as no probes, as Go's decoder does; otherwise it
/// must be one object.
pub fn parse(json: &str, multi: bool) -> Result<Vec<ProbeSpec>, ProbeConfigError> {
    if json.is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_str(json).map_err(ProbeConfigError::Json)?;
    if multi {
        match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| decode_one(index, item))
                .collect(),
            Value::Null => Ok(Vec::new()),
            other => Err(ProbeConfigError::Shape {
                expected: "a JSON array of probes (multi-container probes are enabled)",
                found: kind(&other),
            }),
        }
    } else {
        match value {
            Value::Object(_) => Ok(vec![decode_one(0, value)?]),
            other => Err(ProbeConfigError::Shape {
                expected: "one probe as a JSON object (multi-container probes are disabled)",
                found: kind(&other),
            }),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn decode_one(index: usize, value: Value) -> Result<ProbeSpec, ProbeConfigError> {
    let invalid = |message: String| ProbeConfigError::Probe { index, message };
    if !value.is_object() {
        return Err(invalid(format!("expected an object, got {}", kind(&value))));
    }
    let mut raw = RawProbe::deserialize(value).map_err(|e| invalid(e.to_string()))?;
    let handler = raw.take_handler().map_err(invalid)?;
    Ok(ProbeSpec {
        handler,
        initial_delay_seconds: raw.initial_delay_seconds.unwrap_or(0),
        timeout_seconds: raw.timeout_seconds.unwrap_or(0),
        period_seconds: raw.period_seconds.unwrap_or(0),
        success_threshold: raw.success_threshold.unwrap_or(0),
        failure_threshold: raw.failure_threshold.unwrap_or(0),
    })
}

/// The wire shape. Every field is optional (zero values are omitted) and may be
/// `null`; unknown fields are ignored, as Go's decoder does.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProbe {
    exec: Option<RawExec>,
    http_get: Option<RawHttpGet>,
    tcp_socket: Option<RawTcpSocket>,
    grpc: Option<RawGrpc>,
    initial_delay_seconds: Option<i32>,
    timeout_seconds: Option<i32>,
    period_seconds: Option<i32>,
    success_threshold: Option<i32>,
    failure_threshold: Option<i32>,
}

#[derive(Deserialize)]
struct RawExec {
    command: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHttpGet {
    path: Option<String>,
    port: Option<IntOrString>,
    host: Option<String>,
    scheme: Option<String>,
    http_headers: Option<Vec<RawHeader>>,
}

#[derive(Deserialize)]
struct RawHeader {
    name: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
struct RawTcpSocket {
    port: Option<IntOrString>,
    host: Option<String>,
}

#[derive(Deserialize)]
struct RawGrpc {
    /// A plain int32 in the Kubernetes API, not IntOrString.
    port: Option<i64>,
    service: Option<String>,
}

impl RawProbe {
    fn take_handler(&mut self) -> Result<Handler, String> {
        if let Some(http) = self.http_get.take() {
            let port = resolve_port(http.port.as_ref()).map_err(|e| format!("httpGet.{e}"))?;
            return Ok(Handler::HttpGet(HttpGetAction {
                host: http.host.unwrap_or_default(),
                port,
                path: http.path.unwrap_or_default(),
                scheme: http.scheme.unwrap_or_default(),
                http_headers: http
                    .http_headers
                    .unwrap_or_default()
                    .into_iter()
                    .map(|h| HttpHeader {
                        name: h.name.unwrap_or_default(),
                        value: h.value.unwrap_or_default(),
                    })
                    .collect(),
            }));
        }
        if let Some(tcp) = self.tcp_socket.take() {
            let port = resolve_port(tcp.port.as_ref()).map_err(|e| format!("tcpSocket.{e}"))?;
            return Ok(Handler::TcpSocket(TcpSocketAction {
                host: tcp.host.unwrap_or_default(),
                port,
            }));
        }
        if let Some(grpc) = self.grpc.take() {
            let port = grpc.port.unwrap_or(0);
            let port = port_in_range(port).map_err(|e| format!("grpc.{e}"))?;
            return Ok(Handler::Grpc(GrpcAction {
                port,
                service: grpc.service.unwrap_or_default(),
            }));
        }
        if let Some(exec) = self.exec.take() {
            return Ok(Handler::Exec(ExecAction {
                command: exec.command.unwrap_or_default(),
            }));
        }
        Ok(Handler::None)
    }
}

/// Kubernetes' IntOrString: a JSON number or a JSON string.
enum IntOrString {
    Int(i64),
    String(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = IntOrString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a port number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("port {v} is out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn resolve_port(port: Option<&IntOrString>) -> Result<u16, String> {
    match port {
        None => Err("port is missing".to_owned()),
        Some(IntOrString::Int(n)) => port_in_range(*n),
        Some(IntOrString::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            // All digits: only the range can be wrong (a long string overflows).
            s.parse::<i64>().map_or_else(
                |_| Err(format!("port {s:?} is out of range (1-65535)")),
                port_in_range,
            )
        }
        Some(IntOrString::String(s)) => Err(format!(
            "port {s:?} is a named port, which the queue-proxy cannot resolve; use a number"
        )),
    }
}

fn port_in_range(port: i64) -> Result<u16, String> {
    match u16::try_from(port) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("port {port} is out of range (1-65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> ProbeSpec {
        let mut probes = parse(json, false).unwrap();
        assert_eq!(probes.len(), 1);
        probes.remove(0)
    }

    #[test]
    fn empty_means_no_probes() {
        assert!(parse("", false).unwrap().is_empty());
        assert!(parse("", true).unwrap().is_empty());
    }

    #[test]
    fn default_revision_probe() {
        let p = one(r#"{"tcpSocket":{"port":8080,"host":"127.0.0.1"},"successThreshold":1}"#);
        assert_eq!(
            p,
            ProbeSpec {
                handler: Handler::TcpSocket(TcpSocketAction {
                    host: "127.0.0.1".into(),
                    port: 8080
                }),
                initial_delay_seconds: 0,
                timeout_seconds: 0,
                period_seconds: 0,
                success_threshold: 1,
                failure_threshold: 0,
            }
        );
        assert!(p.is_aggressive());
    }

    #[test]
    fn http_probe_with_every_field() {
        let p = one(
            r#"{"httpGet":{"path":"health?foo=bar","port":"8080","host":"127.0.0.1","scheme":"HTTP",
                "httpHeaders":[{"name":"K-Kubelet-Probe","value":"queue"},{"name":"X","value":""}]},
                "initialDelaySeconds":2,"timeoutSeconds":3,"periodSeconds":4,"successThreshold":5,
                "failureThreshold":6,"terminationGracePeriodSeconds":7}"#,
        );
        assert_eq!(
            p.handler,
            Handler::HttpGet(HttpGetAction {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "health?foo=bar".into(),
                scheme: "HTTP".into(),
                http_headers: vec![
                    HttpHeader {
                        name: "K-Kubelet-Probe".into(),
                        value: "queue".into()
                    },
                    HttpHeader {
                        name: "X".into(),
                        value: String::new()
                    },
                ],
            })
        );
        assert_eq!(
            (
                p.initial_delay_seconds,
                p.timeout_seconds,
                p.period_seconds,
                p.success_threshold,
                p.failure_threshold
            ),
            (2, 3, 4, 5, 6)
        );
        assert!(!p.is_aggressive());
    }

    #[test]
    fn port_is_int_or_string_of_digits() {
        for json in [
            r#"{"tcpSocket":{"port":8080}}"#,
            r#"{"tcpSocket":{"port":"8080"}}"#,
            r#"{"tcpSocket":{"port":"08080"}}"#,
        ] {
            assert_eq!(
                one(json).handler,
                Handler::TcpSocket(TcpSocketAction {
                    host: String::new(),
                    port: 8080
                }),
                "{json}"
            );
        }
    }

    #[test]
    fn unusable_ports_are_errors() {
        for (json, needle) in [
            (r#"{"tcpSocket":{"port":"http"}}"#, "named port"),
            (
                r#"{"httpGet":{"port":"http"}}"#,
                "httpGet.port \"http\" is a named port",
            ),
            (r#"{"tcpSocket":{"port":""}}"#, "named port"),
            (r#"{"tcpSocket":{"port":0}}"#, "port 0 is out of range"),
            (r#"{"tcpSocket":{"port":65536}}"#, "out of range"),
            (
                r#"{"tcpSocket":{"port":"99999999999999999999"}}"#,
                "out of range",
            ),
            (r#"{"tcpSocket":{"port":-1}}"#, "out of range"),
            (r#"{"tcpSocket":{}}"#, "tcpSocket.port is missing"),
            (
                r#"{"tcpSocket":{"port":80.5}}"#,
                "a port number or a string",
            ),
            (r#"{"grpc":{"port":"8080"}}"#, "invalid type"),
            (
                r#"{"grpc":{"port":70000}}"#,
                "grpc.port 70000 is out of range",
            ),
        ] {
            let err = parse(json, false).unwrap_err();
            assert!(
                matches!(err, ProbeConfigError::Probe { index: 0, .. }),
                "{json}: {err:?}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with("SERVING_READINESS_PROBE: probe 0: "),
                "{text}"
            );
            assert!(text.contains(needle), "{json}: {text}");
        }
    }

    #[test]
    fn grpc_exec_and_empty_handlers() {
        assert_eq!(
            one(r#"{"grpc":{"port":9000,"service":"svc"},"periodSeconds":1}"#).handler,
            Handler::Grpc(GrpcAction {
                port: 9000,
                service: "svc".into()
            })
        );
        assert_eq!(
            one(r#"{"grpc":{"port":9000,"service":null}}"#).handler,
            Handler::Grpc(GrpcAction {
                port: 9000,
                service: String::new()
            })
        );
        assert_eq!(
            one(r#"{"exec":{"command":["echo","hello"]}}"#).handler,
            Handler::Exec(ExecAction {
                command: vec!["echo".into(), "hello".into()]
            })
        );
        assert_eq!(one("{}").handler, Handler::None);
        assert_eq!(
            one(r#"{"httpGet":null,"periodSeconds":3}"#).handler,
            Handler::None
        );
    }

    #[test]
    fn handler_precedence_follows_upstream() {
        let p = one(
            r#"{"exec":{"command":["x"]},"grpc":{"port":1},"tcpSocket":{"port":2},"httpGet":{"port":3}}"#,
        );
        assert!(matches!(
            p.handler,
            Handler::HttpGet(HttpGetAction { port: 3, .. })
        ));
        let p = one(r#"{"exec":{"command":["x"]},"grpc":{"port":1},"tcpSocket":{"port":2}}"#);
        assert!(matches!(
            p.handler,
            Handler::TcpSocket(TcpSocketAction { port: 2, .. })
        ));
        let p = one(r#"{"exec":{"command":["x"]},"grpc":{"port":1}}"#);
        assert!(matches!(
            p.handler,
            Handler::Grpc(GrpcAction { port: 1, .. })
        ));
    }

    #[test]
    fn multi_is_always_an_array() {
        let probes = parse(
            r#"[{"tcpSocket":{"port":8080}},{"httpGet":{"port":8090,"scheme":"HTTP"},"periodSeconds":1}]"#,
            true,
        )
        .unwrap();
        assert_eq!(probes.len(), 2);
        assert!(matches!(probes[0].handler, Handler::TcpSocket(_)));
        assert!(matches!(probes[1].handler, Handler::HttpGet(_)));

        let probes = parse(r#"[{"tcpSocket":{"port":8080}}]"#, true).unwrap();
        assert_eq!(probes.len(), 1);
        assert!(parse("[]", true).unwrap().is_empty());
        assert!(parse("null", true).unwrap().is_empty());

        let err = parse(r#"{"tcpSocket":{"port":8080}}"#, true).unwrap_err();
        assert!(matches!(
            err,
            ProbeConfigError::Shape {
                found: "an object",
                ..
            }
        ));
        assert!(
            err.to_string()
                .starts_with("SERVING_READINESS_PROBE: expected a JSON array")
        );

        let err = parse(r#"[{"tcpSocket":{"port":8080}},null]"#, true).unwrap_err();
        assert!(
            matches!(err, ProbeConfigError::Probe { index: 1, .. }),
            "{err:?}"
        );
        let err = parse(r#"[{},{"tcpSocket":{"port":"x"}}]"#, true).unwrap_err();
        assert!(
            matches!(err, ProbeConfigError::Probe { index: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn single_must_be_an_object() {
        for (json, found) in [
            (r#"[{"tcpSocket":{"port":8080}}]"#, "an array"),
            ("null", "null"),
            ("8080", "a number"),
            (r#""x""#, "a string"),
        ] {
            let err = parse(json, false).unwrap_err();
            assert!(
                matches!(err, ProbeConfigError::Shape { found: f, .. } if f == found),
                "{json}: {err:?}"
            );
            assert!(
                err.to_string()
                    .starts_with("SERVING_READINESS_PROBE: expected one probe")
            );
        }
    }

    #[test]
    fn invalid_json_and_wrong_field_types() {
        for json in ["{", "{\"tcpSocket\":", "not json", " ", "{} {}"] {
            let err = parse(json, false).unwrap_err();
            assert!(
                matches!(err, ProbeConfigError::Json(_)),
                "{json:?}: {err:?}"
            );
            assert!(
                err.to_string()
                    .starts_with("SERVING_READINESS_PROBE: invalid JSON: "),
                "{err}"
            );
        }
        for json in [
            r#"{"periodSeconds":"1"}"#,
            r#"{"periodSeconds":1.5}"#,
            r#"{"periodSeconds":4294967296}"#,
            r#"{"httpGet":{"port":80,"httpHeaders":{"name":"x"}}}"#,
            r#"{"exec":{"command":"echo"}}"#,
            r#"{"tcpSocket":[]}"#,
        ] {
            let err = parse(json, false).unwrap_err();
            assert!(
                matches!(err, ProbeConfigError::Probe { index: 0, .. }),
                "{json}: {err:?}"
            );
        }
    }
}
