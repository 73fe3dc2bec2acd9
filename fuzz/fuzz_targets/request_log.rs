#![no_main]
//! libFuzzer driver for `fuzz_targets::request_log` (what it checks is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::request_log::run(data));
