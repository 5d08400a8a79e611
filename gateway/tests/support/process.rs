//! [`GatewayProcess`]: the real `osb-gateway serve` binary as a child process (for kill -9,
//! SIGTERM, several replicas), with its listen addresses read from its stdout.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::osb::OsbClient;

/// A running gateway process.
pub struct GatewayProcess {
    pub child: Child,
    /// OSB base URL.
    pub url: String,
    /// Admin base URL (when the config has an admin listener).
    pub admin: Option<String>,
}

impl GatewayProcess {
    /// Starts `osb-gateway serve` on `config` with extra environment; stderr goes to `stderr_log`
    /// (or is discarded).
    pub async fn spawn(config: &Path, env: &[(&str, &str)], stderr_log: Option<&Path>) -> GatewayProcess {
        let stderr = match stderr_log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_osb-gateway"));
        command
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines
            .next_line()
            .await
            .unwrap()
            .expect("the gateway exited before listening");
        let url = first
            .strip_prefix("osb-gateway listening on ")
            .unwrap()
            .to_owned();
        let admin = if std::fs::read_to_string(config).unwrap().contains("admin:") {
            let line = lines.next_line().await.unwrap().unwrap();
            Some(line.strip_prefix("osb-gateway admin on ").unwrap().to_owned())
        } else {
            None
        };
        GatewayProcess { child, url, admin }
    }

    /// An OSB client for this process as the `k8s-prod` platform.
    pub fn osb(&self) -> OsbClient {
        OsbClient::new(self.url.clone())
    }

    /// A request as the `k8s-prod` platform.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.osb().request(method, path)
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}
