//! A small mutation fuzzer for plain `cargo test` runs: what libFuzzer does,
//! without coverage feedback, for a bounded number of inputs.
//!
//! Each input is a corpus entry put through one to four random edits (bit flips,
//! interesting bytes, inserted, deleted and duplicated ranges, dictionary tokens,
//! splices with another entry). The random seed is printed when a body panics,
//! with the failing input, and `FUZZ_SEED=<n>` replays that run.

use fastrand::Rng;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::Duration;
use tokio::time::Instant;

/// Inputs never grow past this.
const MAX_LEN: usize = 64 * 1024;

const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'\r', b'\n', b' ',
    b'\t', b'%', b'-', b'0', b'9',
];

/// Mutates `input` in place, drawing from `dictionary` and `corpus`.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, dictionary: &[&[u8]], corpus: &[Vec<u8>]) {
    for _ in 0..rng.usize(1..=4) {
        match rng.u8(0..7) {
            0 if !input.is_empty() => {
                let i = rng.usize(..input.len());
                input[i] ^= 1 << rng.u8(0..8);
            }
            1 if !input.is_empty() => {
                let i = rng.usize(..input.len());
                input[i] = INTERESTING[rng.usize(..INTERESTING.len())];
            }
            2 => {
                let at = rng.usize(..=input.len());
                let bytes: Vec<u8> = (0..rng.usize(1..=8)).map(|_| rng.u8(..)).collect();
                input.splice(at..at, bytes);
            }
            3 if !input.is_empty() => {
                let start = rng.usize(..input.len());
                let end = rng.usize(start..=input.len().min(start + 32));
                input.drain(start..end);
            }
            4 if !input.is_empty() => {
                let start = rng.usize(..input.len());
                let end = rng.usize(start..=input.len().min(start + 64));
                let copy = input[start..end].to_vec();
                let at = rng.usize(..=input.len());
                input.splice(at..at, copy);
            }
            5 if !dictionary.is_empty() => {
                let token = dictionary[rng.usize(..dictionary.len())];
                let at = rng.usize(..=input.len());
                input.splice(at..at, token.iter().copied());
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.usize(..corpus.len())];
                let from = rng.usize(..=other.len());
                let to = rng.usize(from..=other.len());
                let at = rng.usize(..=input.len());
                input.truncate(at.max(input.len() / 2));
                input.extend_from_slice(&other[from..to]);
            }
            _ => {}
        }
    }
    input.truncate(MAX_LEN);
}

/// Runs `target` over `corpus` (every entry as is), then over mutations of it
/// until `iterations` inputs or `budget` is spent. Returns how many inputs ran.
pub fn run(
    target: &crate::Target,
    corpus: &[Vec<u8>],
    iterations: usize,
    budget: Duration,
) -> usize {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let started = Instant::now();
    for input in corpus {
        execute(target, input, seed);
    }
    let mut rng = Rng::with_seed(seed);
    let mut ran = corpus.len();
    let empty = [Vec::new()];
    let seeds = if corpus.is_empty() {
        &empty[..]
    } else {
        corpus
    };
    for _ in 0..iterations {
        if started.elapsed() >= budget {
            break;
        }
        let mut input = seeds[rng.usize(..seeds.len())].clone();
        mutate(&mut rng, &mut input, target.dictionary, corpus);
        execute(target, &input, seed);
        ran += 1;
    }
    ran
}

fn execute(target: &crate::Target, input: &[u8], seed: u64) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (target.run)(input))) {
        eprintln!(
            "fuzz target {} failed (FUZZ_SEED={seed}) on input {:?}",
            target.name,
            input.escape_ascii().to_string()
        );
        resume_unwind(panic);
    }
}
