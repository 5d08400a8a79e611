//! Fuzzing in CI: each target of [`targets`] replays its regression inputs, then runs on random
//! bytes for a few seconds. Long, coverage-guided runs of the same targets: `loadtests/run fuzz`.
//!
//! Knobs (environment):
//! - `OSB_FUZZ_SECS`: seconds of random inputs per target (default 5; 0 replays regressions only);
//! - `OSB_FUZZ_SEED`: the random seed (default fixed per target, so CI is repeatable).
//!
//! A failing input is written to `target/tmp/fuzz-failures/<target>/<hash>`; copy it to
//! `gateway/tests/fuzz/regressions/<target>/` with a name that says what it was, fix the bug, and
//! it is replayed by every later run (libFuzzer's crash files go the same way).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod targets;

/// Seconds of random inputs per target when `OSB_FUZZ_SECS` is not set.
const DEFAULT_SECS: f64 = 5.0;

/// splitmix64: small, fast, good enough to make bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn regressions(name: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/regressions")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.retain(|f| f.is_file());
    files.sort();
    files
}

/// Runs `name`: regressions first, then random inputs until the time budget is spent.
fn run(name: &str) {
    let Some((_, target)) = targets::TARGETS.iter().find(|(n, _)| *n == name) else {
        panic!("no fuzz target {name}");
    };
    for file in regressions(name) {
        let bytes = std::fs::read(&file).unwrap();
        if catch_unwind(AssertUnwindSafe(|| target(&bytes))).is_err() {
            panic!("fuzz target {name} fails again on {}", file.display());
        }
    }

    let secs: f64 = std::env::var("OSB_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS);
    let seed = std::env::var("OSB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fnv1a(name.as_bytes()));
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
    let mut runs = 0u64;
    let mut bytes = Vec::new();
    while Instant::now() < deadline {
        // Mostly short inputs (a few mutations of a seed), sometimes long raw documents.
        let len = match rng.below(20) {
            0 => rng.below(8192),
            1..=5 => rng.below(1024),
            _ => rng.below(96),
        };
        bytes.clear();
        bytes.extend((0..len).map(|_| rng.next().to_le_bytes()[0]));
        runs += 1;
        if catch_unwind(AssertUnwindSafe(|| target(&bytes))).is_err() {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join("fuzz-failures")
                .join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{:016x}", fnv1a(&bytes)));
            std::fs::write(&file, &bytes).unwrap();
            panic!(
                "fuzz target {name} failed after {runs} inputs (seed {seed}); the input is {} \
                 (copy it to gateway/tests/fuzz/regressions/{name}/ once fixed)",
                file.display()
            );
        }
    }
    eprintln!("fuzz target {name}: {runs} random inputs in {secs} s (seed {seed}), no failure");
}

#[test]
fn catalog() {
    run("catalog");
}

#[test]
fn merge() {
    run("merge");
}

#[test]
fn request() {
    run("request");
}

#[test]
fn policy() {
    run("policy");
}

#[test]
fn config() {
    run("config");
}

/// Every target has a test above and a cargo-fuzz binary, and every regression folder a target.
#[test]
fn targets_are_wired() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in targets::TARGETS {
        let binary = root.join("fuzz/fuzz_targets").join(format!("{name}.rs"));
        assert!(binary.exists(), "{} is missing", binary.display());
    }
    let regressions = root.join("tests/fuzz/regressions");
    for entry in std::fs::read_dir(regressions).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_dir() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                targets::TARGETS.iter().any(|(n, _)| *n == name),
                "regressions for unknown target {name}"
            );
        }
    }
}
