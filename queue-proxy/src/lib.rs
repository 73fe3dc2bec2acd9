//! Knative Serving's queue-proxy, in Rust.
//!
//! (Crate docs are written once the modules below are in place.)

pub mod admin;
pub mod autoscaler_metrics;
pub mod body;
pub mod breaker;
pub mod config;
pub mod error;
pub mod forwarded;
pub mod handler;
pub mod headers;
pub mod logging;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod sidecar;
pub mod stats;

pub use sidecar::{Sidecar, run};
