//! `deploy/`'s container image and Kubernetes manifests, offline (no Docker engine, no cluster).
//!
//! - `deploy/validate.py` passes: hadolint accepts the Dockerfile, which agrees with the Deployment
//!   (ports, uid, config path); kustomize renders the base and both overlays; kubernetes-validate
//!   (`--strict`, oldest and newest Kubernetes checked) accepts every object, the ServiceMonitor and
//!   ClusterServiceBroker pass `deploy/kubernetes/schemas/`; and the objects agree with each other
//!   and with gateway.yaml (selectors, probes on the admin port, mounted secrets, job name, store).
//! - Each overlay's ConfigMap (gateway.yaml and policy.yaml) passes `osb-gateway check-config` with
//!   the pod's environment and mounted files (`validate.py pod` lays them out with dummy secrets).
//! - The embedded overlay's pod, run for real with its args, env and files (listeners moved to
//!   loopback), answers the probes and `/metrics` without credentials, guards `/admin/*` and the
//!   OSB API with the mounted secrets, and creates its store on the data volume.
//!
//! Needs the tools `deploy/setup-tools` installs into `.venv` (`.ci/run` runs it) and kustomize
//! (`kustomize` or `kubectl kustomize`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::osb::OsbClient;
use crate::support::{eventually, http};

const OVERLAYS: &[&str] = &["embedded", "postgres"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    if let Ok(python) = std::env::var("OSB_TEST_PYTHON") {
        return python.into();
    }
    let venv = repo().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run deploy/setup-tools (or .ci/run) first",
        venv.display()
    );
    venv
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `deploy/validate.py ARGS` with the venv's Python.
fn validate_py(args: &[&str]) -> Output {
    std::process::Command::new(python())
        .arg(repo().join("deploy/validate.py"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

/// What an overlay's container sees, laid out under a temp folder.
struct Pod {
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: HashMap<String, String>,
    config: PathBuf,
}

fn pod(overlay: &str) -> Pod {
    let dir = tempfile::tempdir().unwrap();
    let output = validate_py(&["pod", overlay, dir.path().to_str().unwrap()]);
    assert!(
        output.status.success(),
        "validate.py pod {overlay}:\n{}",
        text(&output)
    );
    let laid: Value = serde_json::from_slice(&output.stdout).unwrap();
    let args: Vec<String> = serde_json::from_value(laid["args"].clone()).unwrap();
    let env: HashMap<String, String> = serde_json::from_value(laid["env"].clone()).unwrap();
    let config = PathBuf::from(laid["config"].as_str().unwrap());
    assert!(
        config.starts_with(dir.path()),
        "{} is outside the pod folder",
        config.display()
    );
    Pod {
        dir,
        args,
        env,
        config,
    }
}

/// `osb-gateway check-config` on the pod's gateway.yaml with exactly the pod's environment.
fn check_config(pod: &Pod) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .args(["check-config", "--config", pod.config.to_str().unwrap()])
        .env_clear()
        .envs(&pod.env)
        .output()
        .unwrap()
}

#[test]
fn validate_py_accepts_the_dockerfile_and_every_rendered_manifest() {
    let output = validate_py(&[]);
    let report = text(&output);
    assert!(output.status.success(), "deploy/validate.py failed:\n{report}");
    for overlay in OVERLAYS {
        assert!(
            report.contains(&format!("overlays/{overlay}: ")),
            "validate.py did not render {overlay}:\n{report}"
        );
    }
    for mode in ["embedded", "postgres"] {
        assert!(
            report.contains(&format!("helm/{mode}: ")),
            "validate.py did not render the Helm chart's {mode} mode:\n{report}"
        );
    }
    assert!(report.contains("helm lint --strict"), "{report}");
    assert!(report.contains("deploy/: ok"), "{report}");
}

#[test]
fn helm_chart_embedded_config_and_policy_pass_check_config() {
    let pod = pod("helm-embedded");
    let output = check_config(&pod);
    let report = text(&output);
    assert!(
        output.status.success(),
        "check-config rejected the chart's embedded mode:\n{report}"
    );
    assert!(report.contains(": ok"), "{report}");
}

#[test]
fn each_overlay_lays_out_its_store_and_secrets() {
    for overlay in OVERLAYS {
        let pod = pod(overlay);
        assert_eq!(
            pod.env.get("OSB_GATEWAY__STORE__KIND").map(String::as_str),
            Some(*overlay),
            "{overlay}: {:?}",
            pod.env
        );
        assert_eq!(
            &pod.args[pod.args.len() - 3..pod.args.len() - 1],
            ["serve", "--config"],
            "{overlay}: the container must run serve --config: {:?}",
            pod.args
        );
        // Every broker credential gateway.yaml names is provided, none is a literal in the ConfigMap.
        for var in ["AZURE_BROKER_PASSWORD", "AWS_BROKER_PASSWORD", "GCP_BROKER_TOKEN"] {
            assert!(pod.env.contains_key(var), "{overlay}: ${var} is not provided");
        }
        let yaml = std::fs::read_to_string(&pod.config).unwrap();
        assert!(
            !yaml.contains("password:") && !yaml.contains("bearer_token:"),
            "{yaml}"
        );
    }
}

#[test]
fn embedded_overlay_config_and_policy_pass_check_config() {
    let pod = pod("embedded");
    let output = check_config(&pod);
    let report = text(&output);
    assert!(
        output.status.success(),
        "check-config rejected the embedded overlay:\n{report}"
    );
    assert!(report.contains(": ok"), "{report}");
    assert!(!report.contains("warning"), "check-config warned:\n{report}");
}

#[test]
fn postgres_overlay_config_and_policy_pass_check_config() {
    let pod = pod("postgres");
    let output = check_config(&pod);
    let report = text(&output);
    assert!(
        output.status.success(),
        "check-config rejected the postgres overlay:\n{report}"
    );
    assert!(report.contains(": ok"), "{report}");
    assert!(!report.contains("warning"), "check-config warned:\n{report}");
}

#[tokio::test]
async fn embedded_pod_answers_probes_and_metrics_and_guards_the_rest() {
    let pod = pod("embedded");
    let settings = osb_config::load_file(&pod.config, &pod.env).unwrap().settings;
    let admin = settings.admin.as_ref().unwrap();
    let admin_credentials = admin.credentials.as_ref().unwrap();
    let k8s = settings
        .platforms
        .iter()
        .find(|p| p.name == "k8s")
        .and_then(|p| p.basic.as_ref())
        .unwrap();
    let store = PathBuf::from(&pod.env["OSB_GATEWAY__STORE__PATH"]);
    assert!(
        store.parent().unwrap().is_dir(),
        "the data volume is not laid out"
    );

    // The container's own args and env; only the listeners move from 0.0.0.0 to loopback, on port 0
    // (no port picked here and released: the gateway binds and prints both addresses).
    let stderr = std::fs::File::create(pod.dir.path().join("stderr.log")).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_osb-gateway"))
        .args(&pod.args)
        .env_clear()
        .envs(&pod.env)
        .env("OSB_GATEWAY__LISTEN", "127.0.0.1:0")
        .env("OSB_GATEWAY__ADMIN__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .ok()
            .and_then(|line| line.ok().flatten())
            .unwrap_or_else(|| {
                panic!(
                    "the gateway did not start:\n{}",
                    std::fs::read_to_string(pod.dir.path().join("stderr.log")).unwrap_or_default()
                )
            })
    };
    let line = next_line().await;
    let osb = line.strip_prefix("osb-gateway listening on ").unwrap().to_owned();
    let line = next_line().await;
    let admin_url = line.strip_prefix("osb-gateway admin on ").unwrap().to_owned();
    let client = http();

    // Liveness and metrics: open, as the kubelet and Prometheus call them.
    let status = eventually("GET /healthz answers 200", Duration::from_secs(20), || async {
        let r = client.get(format!("{admin_url}/healthz")).send().await.ok()?;
        (r.status() == 200).then_some(r.status())
    })
    .await;
    assert_eq!(status, 200);
    let metrics = client.get(format!("{admin_url}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("osb_gateway_"));
    // Readiness: open too; the brokers' cluster addresses do not exist here, so 503 (not ready) is
    // what a pod whose brokers are unreachable answers, and 200 once its start-up grace has run out.
    let ready = client
        .get(format!("{admin_url}/readyz"))
        .send()
        .await
        .unwrap()
        .status();
    assert!(ready == 200 || ready == 503, "GET /readyz: {ready}");

    // The mounted admin password guards /admin/*.
    let open = client
        .get(format!("{admin_url}/admin/brokers"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 401);
    let authorized = client
        .get(format!("{admin_url}/admin/brokers"))
        .basic_auth(
            &admin_credentials.username,
            Some(admin_credentials.password.expose()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(authorized.status(), 200);

    // The k8s platform's mounted password (the ClusterServiceBroker's Secret) opens the OSB API:
    // the catalog is not in yet (503), but the call got past authentication.
    let catalog = |password: &str| OsbClient::new(osb.clone()).basic(&k8s.username, password);
    assert_eq!(catalog("wrong").catalog().await.status, 401);
    let status = catalog(k8s.password.expose()).catalog().await.status;
    assert!(status == 503 || status == 200, "GET /v2/catalog as k8s: {status}");

    // The embedded store lives on the data volume.
    assert!(store.is_dir(), "no store at {}", store.display());
    child.kill().await.unwrap();
}
