//! Knative Serving's activator, in Rust.
//!
//! (Crate docs are written once the modules below are in place.)

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
