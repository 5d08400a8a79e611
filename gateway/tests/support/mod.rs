//! Test harness: the real gateway on port 0, real upstream brokers on loopback, helpers to wait and
//! to look at what was logged.
//!
//! - [`gateway::TestGateway`] runs `osb_gateway::serve` (what `main` runs) on a config written to a
//!   temp folder, and can restart on the same store.
//! - [`fake_broker::FakeBroker`]: an in-repo scripted broker that records what it received.
//! - [`obapi::ObapiBroker`]: a real third-party OSB implementation (Python `openbrokerapi`).
//! - [`logs`]: captures everything the gateway logs, to assert what is (not) in it.
//! - [`otlp::OtlpReceiver`]: a real OTLP/HTTP trace receiver.
//! - [`process::GatewayProcess`]: the real binary as a child process; [`postgres`]: databases.
//! - [`osb::OsbClient`]: the one OSB client (a platform's calls, answers read whole, polling).
//! - [`small_catalog`]: the scripted brokers' usual catalog and a gateway in front of one of them.
//! - [`raw`]: bytes on a socket, for requests no HTTP library would send.
//! - [`ports`]: loopback ports without the bind-then-release race.
//! - [`browser::Browser`]: a real headless Chromium, driven over WebDriver (the console's tests).

#![allow(dead_code)]

pub mod browser;
pub mod certs;
pub mod fake_broker;
pub mod gateway;
pub mod logs;
pub mod obapi;
pub mod osb;
pub mod otlp;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod raw;
pub mod reset_broker;
pub mod small_catalog;

use std::future::Future;
use std::time::Duration;

/// Path of a fixture file in the repository.
pub fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/catalogs")
        .join(name)
}

/// Bytes of a fixture catalog.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP client for tests (no connection reuse surprises across restarts).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}
