#![no_main]
//! libFuzzer driver for `fuzz_targets::static_source` (what it checks is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::static_source::run(data));
