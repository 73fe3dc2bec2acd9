//! Micro-benchmarks of the queue-proxy's hot paths live in `benches/hot_paths.rs`
//! (run them with `cargo bench -p benches`); this library is empty.
//!
//! `baseline.txt` holds a committed run of them. Compare a new run with
//! `cargo bench -p benches > new.txt; cargo run -p loadtest -- bench-diff
//! benches/baseline.txt new.txt`, which prints each benchmark's median and its
//! change. Both runs should come from the same machine, and on a shared
//! machine a change under ~10 % is noise.
