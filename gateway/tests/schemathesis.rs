//! Schema-driven API test: schemathesis (PyPI, pinned in `gateway/tests/schemathesis/
//! requirements.txt`, installed by `.ci/setup-python`) generates requests from the OSB OpenAPI file
//! (`fixtures/osb-openapi-v2.17.yaml`) and checks every answer of the running gateway against it.
//!
//! The gateway runs as every other test runs it (`TestGateway`, the real `serve`), in front of
//! three in-repo demo brokers serving real catalogs (AWS, GCP, the OSB spec example; OSBA's megabyte
//! catalog is left out only because schemathesis validates the whole catalog on each of its calls).
//! The demo brokers answer asynchronously, so 202s and `last_operation` polls are exercised too;
//! `schemathesis/osb_hooks.py` gives half of the well-formed requests real catalog ids and a small
//! pool of instance ids, so they are forwarded and what one call makes the next one finds.
//!
//! Asserted: schemathesis exits 0, i.e. zero server errors (5xx), zero responses that violate the
//! file (status codes, content types, headers, bodies), auth enforced, 405s with `Allow`, missing
//! headers refused, schema-violating requests refused. Where the OSB prose spec (or a documented
//! gateway decision) differs from the file, the difference is written down in one of two places,
//! each exception with its reason: `schemathesis/amend_spec.py` (answers the prose allows that the
//! file does not list) and `schemathesis/schemathesis.toml` (checks whose assumptions the prose
//! overrides). README "Schema-driven API test" summarizes them.
//!
//! Knobs: `OSB_SCHEMATHESIS_EXAMPLES` (examples per operation, default 25),
//! `OSB_SCHEMATHESIS_SEED` (default fixed, so CI is repeatable).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use osb_demo::{Behaviour, DemoBroker};

use crate::support::fixture;
use crate::support::gateway::{PLATFORM_PASSWORD, PLATFORM_USER, TestGateway, platforms_yaml};

/// Default examples per operation: about a minute on two cores with the stateful phase.
const DEFAULT_EXAMPLES: u32 = 25;
const DEFAULT_SEED: u64 = 20_170;

fn venv_bin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run .ci/setup-python (or .ci/run) first",
        path.display()
    );
    path
}

fn here(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemathesis")
        .join(name)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_spec_violation() {
    let mut brokers = Vec::new();
    for (name, file) in [
        ("aws", "aws-servicebroker-catalog.json"),
        ("gcp", "gcp-service-broker-catalog.json"),
        ("spec", "osbapi-spec-example-catalog.json"),
    ] {
        let broker = DemoBroker::start_with(name, Bytes::from(fixture(file)), Behaviour::asynchronous(1))
            .await
            .unwrap();
        brokers.push(broker);
    }
    let mut yaml = format!("{}brokers:\n", platforms_yaml());
    for broker in &brokers {
        yaml.push_str(&broker.config_entry());
    }
    let mut gateway = TestGateway::start(&yaml).await;
    let catalog = gateway.ready_catalog().await;
    // Real (service_id, plan_id) pairs for `osb_hooks.py`: the first plan of every fourth bindable
    // service (ten or so, across the three brokers).
    let plans: Vec<[&str; 2]> = catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|service| service["bindable"] == true)
        .step_by(4)
        .map(|service| {
            [
                service["id"].as_str().unwrap(),
                service["plans"][0]["id"].as_str().unwrap(),
            ]
        })
        .collect();
    assert!(plans.len() >= 3, "too few bindable services: {}", plans.len());

    // The OpenAPI file with the prose spec's amendments (each one explained in the script).
    let spec = gateway.dir.path().join("osb-openapi-amended.yaml");
    let status = tokio::process::Command::new(venv_bin("python"))
        .arg(here("amend_spec.py"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/osb-openapi-v2.17.yaml"))
        .arg(&spec)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "amend_spec.py failed");

    let examples: u32 = env_or("OSB_SCHEMATHESIS_EXAMPLES", DEFAULT_EXAMPLES);
    let seed: u64 = env_or("OSB_SCHEMATHESIS_SEED", DEFAULT_SEED);
    let started = Instant::now();
    let run = tokio::process::Command::new(venv_bin("schemathesis"))
        .arg("--no-color")
        .arg("--config-file")
        .arg(here("schemathesis.toml"))
        .arg("run")
        .arg(&spec)
        .args(["--url", &gateway.url("")])
        .args(["--auth", &format!("{PLATFORM_USER}:{PLATFORM_PASSWORD}")])
        .args(["--header", "X-Broker-API-Version: 2.17"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--workers", "2"])
        .arg("--no-shrink")
        // Half of the positive cases get real ids, so calls reach the upstreams (see the hooks).
        .env("SCHEMATHESIS_HOOKS", "osb_hooks")
        .env("PYTHONPATH", here(""))
        .env("OSB_SCHEMATHESIS_PLANS", serde_json::to_string(&plans).unwrap())
        .env(
            "OSB_SCHEMATHESIS_AUTHORIZATION",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{PLATFORM_USER}:{PLATFORM_PASSWORD}"))
            ),
        )
        // Hypothesis keeps its example database in the working directory: the temp folder.
        .current_dir(gateway.dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("schemathesis did not finish in 240 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "schemathesis: {examples} examples per operation, seed {seed}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    gateway.stop().await;
    for broker in &brokers {
        broker.stop().await;
    }
    // The summary (phases, checks, how many cases) goes to the test's output either way.
    if let Some(summary) = stdout.find("SUMMARY") {
        eprintln!("{}", stdout.get(summary..).unwrap_or_default());
    }
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}):\n{stdout}\n{stderr}",
        output.status.code()
    );
    // The run really tested something: every operation of the file.
    assert!(
        stdout.contains("Tested: 10"),
        "not every operation was tested:\n{stdout}"
    );
}
