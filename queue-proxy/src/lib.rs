//! Knative Serving's queue-proxy, in Rust: the sidecar that runs beside every
//! user container, proxies `:8012` (HTTP/1.1 and h2c) to the app on
//! `127.0.0.1:$USER_PORT`, enforces `containerConcurrency`, and publishes the
//! per-second stats the autoscaler scrapes on `:9090`.
//!
//! # Layout
//!
//! One module per concern, named after what it mirrors upstream:
//!
//! - [`config`]: the env contract (envconfig semantics), read from a key→value
//!   source so tests never touch the process env; [`runtime`] sizes tokio from
//!   the cgroup CPU quota; [`logging`] sets up JSON logs on stderr.
//! - [`sidecar`]: binds the listeners and wires everything; [`run`] is what the
//!   binary calls. [`server`] owns listeners and connection serving.
//! - [`handler`]: the main port's request chain, in upstream's order.
//! - [`forwarded`], [`breaker`], [`stats`], [`proxy`]: the steps of that chain.
//!   The breaker, the stats, the proxy client and the header rules are public
//!   because the activator reuses them.
//! - [`body`]: the response body that holds a request's breaker slot and stats
//!   until the response has been delivered.
//! - [`error`]: typed errors that know which side caused them, and the one place
//!   that turns them into 502/503/504 responses shaped like upstream's.
//! - [`read_limits`]: Go's request-head size and time limits where hyper's are
//!   not exact.
//! - Lifecycle: [`probes`] answers kubelet, activator and network probes from
//!   [`readiness`] (probing the app) and [`drain`] (the quiet period, and the
//!   in-flight tracking shutdown waits on); [`timeout`] enforces the revision's
//!   total, response-start and idle timeouts.
//! - [`h2c`]: the HTTP/1.1 `Upgrade: h2c` path to HTTP/2 on the main port;
//!   [`prefixed`] replays bytes already read from a connection (also used by
//!   the activator's early hold).
//! - [`autoscaler_metrics`] (`:9090`), [`request_metrics`] (`:9091`, when
//!   Prometheus is configured) and [`admin`] (`:8022`): the side ports.
//! - [`telemetry`]: OpenTelemetry tracing (W3C propagation, OTLP or stdout
//!   export) and the OTLP push of the request metrics, shared with the
//!   activator; [`proxy_spans`] are the proxy step's spans.
//!
//! # Tests
//!
//! The integration tests in `tests/` start the real server in-process on
//! ephemeral ports ([`Sidecar::bind`] then [`Sidecar::run`]) in front of a
//! scriptable app, and speak HTTP/1.1, h2c and raw TCP over loopback.

pub mod admin;
pub mod autoscaler_metrics;
pub mod body;
pub mod breaker;
pub mod config;
pub mod drain;
pub mod error;
pub mod forwarded;
pub mod h2c;
pub mod handler;
pub mod headers;
pub mod logging;
pub mod observability;
pub mod prefixed;
pub mod probes;
pub mod proxy;
pub mod proxy_spans;
pub mod read_limits;
pub mod readiness;
pub mod request_log;
pub mod request_metrics;
pub mod route_tag;
pub mod runtime;
pub mod server;
pub mod sidecar;
pub mod signals;
pub mod stats;
pub mod telemetry;
pub mod timefmt;
pub mod timeout;
pub mod tls;
mod write_through;

pub use sidecar::{Sidecar, run};
