//! The gateway's integration tests: one binary (one link), modules per capability.
//!
//! Every test starts the real gateway on port 0 and real upstream brokers on loopback: Python
//! `openbrokerapi` brokers for interop (venv made by `.ci/setup-python`) and in-repo scripted fake
//! brokers for faults. See `support/` for the harness.

// The harness panics on purpose: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

mod admin;
mod catalog;
mod catalog_gzip;
mod check_config;
mod console;
mod corpus;
mod crash;
mod demo;
mod failover;
mod faults;
mod fuzz;
mod lifecycle;
mod manifests;
mod ownership;
mod policies;
mod prometheus;
mod quotas;
mod reload;
mod replicas;
mod rotation;
mod schemathesis;
mod store_file;
mod telemetry;
mod tls;
mod trust;
