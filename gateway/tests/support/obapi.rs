//! [`ObapiBroker`]: a real upstream broker built on the third-party Python `openbrokerapi` package
//! (`gateway/tests/brokers/obapi_broker.py`, run from the venv `.ci/setup-python` creates).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BROKER_USER: &str = "broker";
pub const BROKER_PASSWORD: &str = "upstream-secret-3c9e";

fn python() -> PathBuf {
    if let Ok(python) = std::env::var("OSB_TEST_PYTHON") {
        return python.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run .ci/setup-python (or .ci/run) first",
        venv.display()
    );
    venv
}

/// A running `openbrokerapi` broker.
pub struct ObapiBroker {
    pub port: u16,
    catalog: PathBuf,
    async_polls: u32,
    tls: Option<BrokerTls>,
    child: Option<Child>,
}

/// How a broker serves https: its certificate and key files, and the CA file its clients'
/// certificates must be signed by (a client certificate is then required).
#[derive(Clone, Debug)]
pub struct BrokerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl ObapiBroker {
    /// Starts a broker serving the catalog file at `catalog` on a free port.
    pub async fn start(catalog: &Path) -> ObapiBroker {
        Self::start_on(catalog, 0, 1, None).await
    }

    /// Starts a broker whose async operations stay "in progress" for `polls` polls.
    pub async fn start_with_polls(catalog: &Path, polls: u32) -> ObapiBroker {
        Self::start_on(catalog, 0, polls, None).await
    }

    /// Starts a broker serving https (see [`BrokerTls`]).
    pub async fn start_tls(catalog: &Path, tls: BrokerTls) -> ObapiBroker {
        Self::start_on(catalog, 0, 1, Some(tls)).await
    }

    async fn start_on(catalog: &Path, port: u16, async_polls: u32, tls: Option<BrokerTls>) -> ObapiBroker {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/brokers/obapi_broker.py");
        let mut command = Command::new(python());
        command
            .arg(script)
            .args(["--catalog", catalog.to_str().unwrap()])
            .args(["--username", BROKER_USER, "--password", BROKER_PASSWORD])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--async-polls", &async_polls.to_string()]);
        if let Some(tls) = &tls {
            command
                .arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key);
            if let Some(client_ca) = &tls.client_ca {
                command.arg("--tls-client-ca").arg(client_ca);
            }
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("openbrokerapi broker did not start in 30 s")
            .unwrap()
            .expect("openbrokerapi broker exited before listening");
        let port = line.strip_prefix("LISTENING ").unwrap().trim().parse().unwrap();
        ObapiBroker {
            port,
            catalog: catalog.to_path_buf(),
            async_polls,
            tls,
            child: Some(child),
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The `brokers[]` YAML entry for this broker.
    pub fn config_entry(&self, name: &str) -> String {
        format!(
            "  - name: {name}\n    url: {}\n    username: {BROKER_USER}\n    password: {BROKER_PASSWORD}\n",
            self.url()
        )
    }

    /// Kills the process (like a crash: no goodbye).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts the broker again on the same port.
    pub async fn restart(&mut self) {
        self.kill().await;
        let again = Self::start_on(&self.catalog, self.port, self.async_polls, self.tls.clone()).await;
        *self = again;
    }

    /// The catalog exactly as this broker serves it.
    pub async fn catalog(&self) -> serde_json::Value {
        super::http()
            .get(format!("{}/v2/catalog", self.url()))
            .basic_auth(BROKER_USER, Some(BROKER_PASSWORD))
            .header("X-Broker-API-Version", "2.17")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Requests this broker received (`GET /__recorded`).
    pub async fn recorded(&self) -> Vec<serde_json::Value> {
        let value: serde_json::Value = super::http()
            .get(format!("{}/__recorded", self.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        value.as_array().cloned().unwrap_or_default()
    }
}
