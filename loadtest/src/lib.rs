//! Test tools for the data plane: nothing here ships in an image.
//!
//! - [`demo`]: the README's run command. A sample [`app`] behind an in-process
//!   queue-proxy and activator on loopback, scaled from zero and back by a
//!   stand-in [`autoscaler`] (a test tool, small on purpose), with a cold
//!   start, a steady phase, an idle phase and a printed [`demo::DemoReport`].
//! - [`run`]: side-by-side load runs of the real binaries against nginx with
//!   wrk and hey: targets in alternation, medians, pairwise ratios, CPU per
//!   request and RSS from /proc, a constant-rate run in the manner of
//!   upstream's dataplane-probe, and a Markdown report with an SVG chart.
//! - [`soak`]: a long run at half capacity through activator and queue-proxy,
//!   sampling RSS and file descriptors (issue 9, item 4).
//!
//! - [`bench_diff`]: compares two saved `cargo bench -p benches` outputs.
//!
//! Shared pieces: [`client`] (a small HTTP/1.1 client), [`procs`] (child
//! processes, nginx, /proc readers), [`tools`] (wrk and hey: install, run,
//! parse), [`svg`] (hand-written charts) and [`summary`] (medians, percentiles).
//!
//! Performance is measured here and reported as ratios of targets measured
//! side by side on the same machine in the same minutes; nothing here asserts
//! a timing.

pub mod app;
pub mod autoscaler;
pub mod bench_diff;
pub mod client;
pub mod demo;
pub mod pod;
pub mod procs;
pub mod run;
pub mod soak;
pub mod summary;
pub mod svg;
pub mod tools;
