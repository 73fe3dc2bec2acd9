//! Every fuzz target, as a plain test: the committed corpus (`fuzz/corpus/<target>/`,
//! minimised by `cargo fuzz cmin`, regressions included), then a short random
//! mutation run. Long coverage-guided runs use `fuzz/` (see its README section).
//!
//! `FUZZ_ITERATIONS` raises the mutation count (default 3000 per target, capped at
//! a few seconds each so CI stays fast); `FUZZ_SEED` replays a printed seed.

use fuzz_targets::{TARGETS, Target, mutate};
use std::path::PathBuf;
use std::time::Duration;

/// Wall-clock cap on each target's mutation run.
const BUDGET: Duration = Duration::from_secs(4);

fn corpus(target: &Target) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target.name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    let corpus: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("corpus file"))
        .collect();
    assert!(!corpus.is_empty(), "{} has no corpus", target.name);
    corpus
}

fn fuzz(name: &str) -> usize {
    let target = TARGETS
        .iter()
        .find(|t| t.name == name)
        .expect("a target of that name");
    let iterations = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    mutate::run(target, &corpus(target), iterations, BUDGET)
}

#[test]
fn env_config() {
    fuzz("env_config");
}

#[test]
fn readiness_probe() {
    fuzz("readiness_probe");
}

#[test]
fn observability_config() {
    fuzz("observability_config");
}

#[test]
fn forwarded() {
    fuzz("forwarded");
}

#[test]
fn request_log() {
    fuzz("request_log");
}

#[test]
fn static_source() {
    fuzz("static_source");
}

#[test]
fn metrics_proto() {
    fuzz("metrics_proto");
}

#[test]
fn http_request() {
    let ran = fuzz("http_request");
    assert!(ran > 0);
    fuzz_targets::http_request::assert_idle(Duration::from_secs(10));
}

#[test]
fn every_target_has_a_test_and_a_libfuzzer_wrapper() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let tests = std::fs::read_to_string(root.join("fuzz-targets/tests/corpora.rs")).unwrap();
    for target in TARGETS {
        assert!(
            tests.contains(&format!("fuzz(\"{}\")", target.name)),
            "{} has no test here",
            target.name
        );
        let wrapper = root
            .join("fuzz/fuzz_targets")
            .join(format!("{}.rs", target.name));
        assert!(wrapper.exists(), "{} is missing", wrapper.display());
    }
}
