#![no_main]
//! libFuzzer driver for `fuzz_targets::http_request` (what it checks is documented there).
//!
//! libFuzzer's C `main` skips Rust's runtime set-up, which ignores SIGPIPE; without
//! it, the proxy's `writev` to a client that already left kills the process.

libfuzzer_sys::fuzz_target!(
    init: {
        // SAFETY: set once, before any thread of the target exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    },
    |data: &[u8]| fuzz_targets::http_request::run(data)
);
