//! Knative Serving's queue-proxy, in Rust.
