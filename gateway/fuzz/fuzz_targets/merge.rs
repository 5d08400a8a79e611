//! libFuzzer entry of the `merge` target (see `gateway/tests/fuzz/targets/mod.rs`): run with
//! `loadtests/run fuzz merge`.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz/targets/mod.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((_, target)) = targets::TARGETS.iter().find(|(name, _)| *name == "merge") {
        target(data);
    }
});
