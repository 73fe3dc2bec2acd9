//! The autoscaler's wire messages, as `knative/serving`'s
//! `pkg/autoscaler/metrics/stat.proto` (package `metrics`) defines them.
//!
//! - [`Stat`] is what every queue-proxy serves on `:9090/metrics` and what the
//!   autoscaler scrapes once a second.
//! - [`WireStatMessages`] is what the activator pushes over its websocket to the
//!   autoscaler, one [`WireStatMessage`] per revision.
//!
//! The messages are derived by hand with prost instead of generated, so the build
//! needs no `protoc`. stat.proto is plain proto3 without gogoproto options, so the
//! standard encoding is what upstream's gogo-generated code produces: `double` is
//! fixed64 little-endian, `int64` is a varint, and zero values are omitted. The
//! tests check every golden vector in `shared/golden/` byte for byte.

/// One pod's (or one activator's, per revision) statistics over a reporting window.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Stat {
    /// Identifies the reporter. The queue-proxy sends `SERVING_POD`; the autoscaler
    /// deduplicates scrapes by it.
    #[prost(string, tag = "1")]
    pub pod_name: String,
    /// Time-weighted average number of requests in flight (queued ones included).
    #[prost(double, tag = "2")]
    pub average_concurrent_requests: f64,
    /// The same, for requests that came through the activator only.
    #[prost(double, tag = "3")]
    pub average_proxied_concurrent_requests: f64,
    /// Requests that arrived in the window, per second.
    #[prost(double, tag = "4")]
    pub request_count: f64,
    /// Arrivals through the activator, per second.
    #[prost(double, tag = "5")]
    pub proxied_request_count: f64,
    /// Seconds since the reporter started; the autoscaler treats young pods specially.
    #[prost(double, tag = "6")]
    pub process_uptime: f64,
    /// Unix seconds. The queue-proxy never sets it; the autoscaler stamps scraped stats.
    #[prost(int64, tag = "7")]
    pub timestamp: i64,
}

/// A [`Stat`] addressed to one revision, as the activator sends it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireStatMessage {
    #[prost(string, tag = "1")]
    pub namespace: String,
    /// The revision's name.
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, optional, tag = "3")]
    pub stat: Option<Stat>,
}

/// One websocket frame from the activator to the autoscaler.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireStatMessages {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<WireStatMessage>,
}

pub use prost::Message;
