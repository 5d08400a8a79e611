//! [`TestGateway`]: the real gateway (`osb_gateway::serve`) on `127.0.0.1:0`, configured by YAML
//! written to a temp folder and loaded through the real loader, with its store in that folder.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use osb_gateway::{Listeners, serve};
use reqwest::{Method, RequestBuilder};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::osb::OsbClient;

/// Platform credentials every test config declares.
pub const PLATFORM_USER: &str = "k8s";
pub const PLATFORM_PASSWORD: &str = "platform-secret-8d1f";
/// A second platform that authenticates with a bearer token.
pub const BEARER_TOKEN: &str = "bearer-secret-55aa";

/// The `platforms:` section used by tests.
pub fn platforms_yaml() -> String {
    format!(
        "platforms:\n  - name: k8s-prod\n    username: {PLATFORM_USER}\n    password: {PLATFORM_PASSWORD}\n  \
         - name: cf\n    bearer_token: {BEARER_TOKEN}\n"
    )
}

/// A running gateway.
pub struct TestGateway {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Environment the config is loaded with (`OSB_GATEWAY__…` overrides).
    env: HashMap<String, String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), osb_gateway::ApiError>>>,
}

impl TestGateway {
    /// Starts a gateway on `yaml` (which must not set `listen`, `admin` or `store`: they are added).
    pub async fn start(yaml: &str) -> TestGateway {
        Self::start_with_files(yaml, &[]).await
    }

    /// As [`TestGateway::start`], with extra files (a policy file, say) written beside the config.
    pub async fn start_with_files(yaml: &str, files: &[(&str, &str)]) -> TestGateway {
        Self::start_with_env(yaml, files, &[]).await
    }

    /// As [`TestGateway::start_with_files`], loading the config with `env` (for example
    /// `OSB_GATEWAY__ADMIN__USERNAME`, to add admin credentials to the `admin:` the harness writes).
    /// Starts a gateway whose admin section ends with `admin_extra` (lines indented under `admin:`,
    /// such as `  users:` …), on `yaml` as [`TestGateway::start_with_env`].
    pub async fn start_with_admin(admin_extra: &str, yaml: &str, env: &[(&str, &str)]) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("gateway.yaml");
        let full = format!(
            "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n{admin_extra}store:\n  path: store\nshutdown_grace_secs: 1\n{yaml}"
        );
        std::fs::write(&config_path, full).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::start_in(dir, config_path, env).await
    }

    pub async fn start_with_env(yaml: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> TestGateway {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let config_path = dir.path().join("gateway.yaml");
        let full = format!(
            "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\nstore:\n  path: store\nshutdown_grace_secs: 1\n{yaml}"
        );
        std::fs::write(&config_path, full).unwrap();
        Self::start_in(dir, config_path, env).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        config_path: PathBuf,
        env: HashMap<String, String>,
    ) -> TestGateway {
        let settings = osb_config::load_file(&config_path, &env)
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
            .settings;
        let listeners = Listeners::bind(&settings).unwrap();
        let addr = listeners.osb_addr().unwrap();
        let admin_addr = listeners.admin_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listeners, settings, async move {
            let _ = stopped.await;
        }));
        TestGateway {
            dir,
            config_path,
            addr,
            admin_addr,
            env,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the gateway and waits until it has released its store.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await.unwrap() {
                panic!("the gateway failed: {e}");
            }
        }
    }

    /// Stops and starts again on the same config and store (new ports).
    pub async fn restart(mut self) -> TestGateway {
        self.stop().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let config_path = self.config_path.clone();
        let env = std::mem::take(&mut self.env);
        Self::start_in(dir, config_path, env).await
    }

    /// Replaces a file beside the config (the policy file, say).
    pub fn write_file(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        let temporary = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(temporary, path).unwrap();
    }

    /// Opens the gateway's store (stop the gateway first: one process per store file).
    pub async fn open_store(&self) -> std::sync::Arc<dyn osb_routing::Store> {
        let store = osb_routing::store::EmbeddedStore::open(self.dir.path().join("store"))
            .await
            .unwrap();
        std::sync::Arc::new(store)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// An OSB client for this gateway as the `k8s-prod` platform (see [`OsbClient`] for the others).
    pub fn osb(&self) -> OsbClient {
        OsbClient::new(format!("http://{}", self.addr))
    }

    /// A request as the `k8s-prod` platform, with `X-Broker-API-Version: 2.17`.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.osb().request(method, path)
    }

    /// `GET /v2/catalog` as `k8s-prod`.
    pub async fn catalog(&self) -> reqwest::Response {
        self.request(Method::GET, "/v2/catalog").send().await.unwrap()
    }

    /// Waits until the catalog answers 200 and returns it.
    pub async fn ready_catalog(&self) -> serde_json::Value {
        self.osb().ready_catalog().await.body
    }

    /// `GET` an admin path, as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        super::http()
            .get(self.admin_url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET /admin/brokers`.
    pub async fn brokers(&self) -> serde_json::Value {
        self.admin_json("/admin/brokers").await
    }

    /// `GET /admin/catalog`: the served catalog's generation, ETag, counts and held plans.
    pub async fn served_catalog(&self) -> serde_json::Value {
        self.admin_json("/admin/catalog").await
    }

    /// `GET /metrics`: the exposition text.
    pub async fn metrics(&self) -> String {
        crate::support::http()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `GET /admin/registry`: counts of instances, bindings, orphans, pending intents.
    pub async fn registry(&self) -> serde_json::Value {
        self.admin_json("/admin/registry").await
    }

    /// Waits until the mitigation worker has nothing left to do.
    pub async fn wait_for_no_orphans(&self) {
        super::eventually("no orphans left", std::time::Duration::from_secs(20), || async {
            (self.registry().await["orphans"] == 0).then_some(())
        })
        .await;
    }

    /// The admin status of broker `name`.
    pub async fn broker_status(&self, name: &str) -> serde_json::Value {
        let brokers = self.brokers().await;
        brokers["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .cloned()
            .unwrap()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
