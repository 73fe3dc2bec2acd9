#![no_main]
//! libFuzzer driver for `fuzz_targets::env_config` (what it checks is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::env_config::run(data));
