//! Every input the fuzz targets (`fuzz/`) found a problem with, replayed on the stable
//! toolchain through the same entry points (`portcullis::fuzzing`): one test per target, reading
//! `tests/fixtures/fuzz/<target>/`. Each must now return without panicking, within a bound.
//! Seeds (small valid inputs) are replayed too, so every entry point runs in the normal suite.
//! Then a short bounded fuzzing run on the stable toolchain: [`MUTANTS`] inputs per target made
//! from the seeds by a fixed-seed mutator (bit flips, byte edits, truncation, repeats, splices),
//! so the same inputs run every time and a failure names the iteration that reproduces it. The
//! coverage-guided runs stay in `fuzz/` (nightly, sanitizers; see `fuzz/README.md`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Mutated inputs per target in the test command (bounded: a few seconds in a debug build).
const MUTANTS: u64 = 2000;

/// xorshift64*: a fixed, dependency-free sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// One mutant of `seeds[..]`: a few edits of one seed, sometimes spliced with another.
fn mutant(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    const INTERESTING: &[&[u8]] = &[
        b"\0", b"\xff", b"{", b"}", b"[", b"]", b"\"", b"\\", b"*", b":", b"/", b"@", b"\n", b"- ", b"&a ", b"*a",
        b"ENC[",
    ];
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            2 => data.splice(at..at, INTERESTING[rng.below(INTERESTING.len())].iter().copied()).for_each(drop),
            3 if !data.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            4 => data.truncate(at),
            5 if !data.is_empty() => {
                let start = rng.below(data.len());
                let end = (start + 1 + rng.below(64)).min(data.len());
                let chunk = data[start..end].to_vec();
                for _ in 0..=rng.below(8) {
                    data.splice(at.min(data.len())..at.min(data.len()), chunk.iter().copied()).for_each(drop);
                }
            }
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
        }
    }
    data
}

fn replay(target: &str) {
    let run = portcullis::fuzzing::TARGETS.iter().find(|(name, _)| *name == target).expect("a target").1;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz").join(target);
    let mut inputs: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.expect("entry").path()).collect(),
        Err(_) => Vec::new(),
    };
    inputs.sort();
    let mut seeds = Vec::new();
    for input in inputs {
        let data = std::fs::read(&input).expect("input");
        let started = Instant::now();
        run(&data);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(20), "{}: took {took:?}", input.display());
        seeds.push(data);
    }
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    // The bounded run: a failure names the iteration; the same seed reproduces it.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    for iteration in 0..MUTANTS {
        let data = mutant(&mut rng, &seeds);
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(|| run(&data));
        let took = started.elapsed();
        assert!(
            outcome.is_ok(),
            "{target}: mutant {iteration} panicked; its {} bytes, escaped: {}",
            data.len(),
            data.escape_ascii()
        );
        assert!(took < Duration::from_secs(20), "{target}: mutant {iteration} took {took:?}");
    }
}

macro_rules! targets {
    ($($name:ident)*) => {$(
        #[test]
        fn $name() {
            replay(stringify!($name));
        }
    )*};
}

targets! { admission_review image_ref policy_load cel sops_decrypt dsse_statement bundle registry_response }

#[test]
fn every_target_is_replayed() {
    let names: Vec<&str> = portcullis::fuzzing::TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "admission_review",
            "image_ref",
            "policy_load",
            "cel",
            "sops_decrypt",
            "dsse_statement",
            "bundle",
            "registry_response"
        ]
    );
}
