//! The bodies of the queue-proxy's and activator's fuzz targets, one module per
//! target, each a `pub fn run(data: &[u8])` that panics when it finds a bug.
//!
//! Two drivers call them:
//!
//! - `fuzz/` (cargo-fuzz, outside the workspace) wraps each body in a libFuzzer
//!   target for long coverage-guided runs:
//!   `RUSTC_BOOTSTRAP=1 cargo fuzz run <target>` from the repository root.
//! - `tests/corpora.rs` replays every input of `fuzz/corpus/<target>/` and then
//!   runs a short, bounded random mutation of them ([`mutate`]), so
//!   `cargo test --workspace` exercises every target cheaply on stable Rust.
//!
//! A body checks what must hold for *any* input: no panic, and the properties
//! its module docs name (a config error names its variable, a decoded message
//! re-encodes to itself, an HTTP answer is well-formed and never a 500, ...).

pub mod env_config;
pub mod forwarded;
pub mod http_request;
pub mod metrics_proto;
pub mod mutate;
pub mod observability_config;
pub mod readiness_probe;
pub mod request_log;
pub mod static_source;

/// A target as the test driver sees it.
#[derive(Clone, Copy)]
pub struct Target {
    /// The directory name under `fuzz/corpus/` and the cargo-fuzz target name.
    pub name: &'static str,
    pub run: fn(&[u8]),
    /// Tokens the mutator splices in (the target's syntax).
    pub dictionary: &'static [&'static [u8]],
}

/// Every target, in the order the driver runs them.
pub const TARGETS: &[Target] = &[
    env_config::TARGET,
    readiness_probe::TARGET,
    observability_config::TARGET,
    forwarded::TARGET,
    request_log::TARGET,
    static_source::TARGET,
    metrics_proto::TARGET,
    http_request::TARGET,
];

/// Lines of `data`, split on `\n`, for targets whose input is a list.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
}

/// `data` as `str`, lossily: most parsers under test take text, and what they
/// see of invalid UTF-8 is what an env var or a file decoded that way gives.
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}
