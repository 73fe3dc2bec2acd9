#![no_main]
//! libFuzzer driver for `fuzz_targets::metrics_proto` (what it checks is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::metrics_proto::run(data));
