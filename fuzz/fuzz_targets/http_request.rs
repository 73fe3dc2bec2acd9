#![no_main]
//! libFuzzer driver for `fuzz_targets::http_request` (what it checks is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::http_request::run(data));
