//! Every input the fuzz targets (`fuzz/`) found a problem with, replayed on the stable
//! toolchain through the same entry points (`portcullis::fuzzing`): one test per target, reading
//! `tests/fixtures/fuzz/<target>/`. Each must now return without panicking, within a bound.
//! Seeds (small valid inputs) are replayed too, so every entry point runs in the normal suite.

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn replay(target: &str) {
    let run = portcullis::fuzzing::TARGETS.iter().find(|(name, _)| *name == target).expect("a target").1;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz").join(target);
    let mut inputs: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.expect("entry").path()).collect(),
        Err(_) => Vec::new(),
    };
    inputs.sort();
    for input in inputs {
        let data = std::fs::read(&input).expect("input");
        let started = Instant::now();
        run(&data);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(20), "{}: took {took:?}", input.display());
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
