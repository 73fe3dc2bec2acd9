//! Knative Serving's activator, in Rust: a drop-in for upstream's
//! `cmd/activator` (spec: `activator.md`). It holds requests for revisions
//! that have no ready pods, reports that demand to the autoscaler at once, and
//! releases the requests to pods as they become ready, under upstream's
//! per-revision capacity and load-balancing rules.
//!
//! A request's way through (outermost first):
//!
//! - [`early_hold`]: a new connection's first request, when it must wait, waits
//!   here before hyper takes the connection (beyond upstream: a few KiB each);
//! - [`handler`]: kubelet health and probes ([`probe`]), the revision
//!   ([`resolve`]), demand reporting ([`reporter`]), the revision's timeouts,
//!   the [`throttler`] (capacity, activator subsetting, the [`lb`] policies,
//!   the opt-in [`held`] cap), then [`forward`] to the chosen pod through the
//!   queue-proxy crate's proxy;
//! - [`metrics`] and [`spans`] observe it; the request log is the
//!   queue-proxy's.
//!
//! Where revisions and pods come from: a [`source`] publishes snapshots
//! (Kubernetes watches, or a static file), [`backends`] probes each pod and
//! tells the throttler which are ready. [`server`] binds the ports, wires the
//! pieces together and shuts down as upstream does; [`config`] reads the
//! environment.
//!
//! Shared with the queue-proxy, not copied: the breaker, stats accounting,
//! proxying, probe headers, timeouts, telemetry and the HTTP server.

pub mod backends;
pub mod config;
pub mod early_hold;
pub mod forward;
pub mod handler;
pub mod held;
pub mod lb;
pub mod metrics;
pub mod probe;
pub mod reporter;
pub mod resolve;
pub mod revision;
pub mod server;
pub mod source;
pub mod spans;
pub mod throttler;
