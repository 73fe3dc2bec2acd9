#![no_main]
//! libFuzzer driver for `fuzz_targets::readiness_probe` (what it checks is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::readiness_probe::run(data));
