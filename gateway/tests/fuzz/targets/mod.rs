//! The fuzz targets: one function of raw bytes per parser or merger the gateway trusts input to.
//!
//! Shared, file for file, by two runners:
//! - CI: `gateway/tests/fuzz.rs` replays `gateway/tests/fuzz/regressions/<target>/*` and then
//!   feeds each target random bytes for a few seconds (part of `cargo nextest run --workspace`);
//! - long runs: the cargo-fuzz crate `gateway/fuzz` (libFuzzer, coverage-guided), started with
//!   `loadtests/run fuzz`.
//!
//! | target    | what it feeds                                   | seeds                          |
//! |-----------|-------------------------------------------------|--------------------------------|
//! | `catalog` | one upstream catalog body → validate → merge    | `fixtures/catalogs/*.json`     |
//! | `merge`   | 2–4 brokers' catalogs → merge (ids, names)      | `fixtures/catalogs/*.json`     |
//! | `request` | request bodies, query strings, ids, auth and version headers | real OSB bodies   |
//! | `policy`  | a policy file → compile → every decision, limiters | `config/examples/policy.yaml` |
//! | `config`  | a config file + environment → load and validate | `config/examples/gateway.yaml` |
//!
//! A target panics (assertion or bug) when a property fails; any input returns otherwise. See
//! [`input`] for how bytes become documents.

pub mod catalog;
pub mod config;
pub mod input;
pub mod policy;
pub mod request;

/// A fuzz target: any bytes in, a panic when a property fails.
pub type Target = fn(&[u8]);

/// Every target by name (the names of `gateway/fuzz/fuzz_targets/*.rs` and of the regression
/// folders).
pub const TARGETS: &[(&str, Target)] = &[
    ("catalog", catalog::catalog),
    ("merge", catalog::merge_target),
    ("request", request::request),
    ("policy", policy::policy),
    ("config", config::config),
];
