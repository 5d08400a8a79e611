//! [`Browser`]: a real headless Chromium (Debian's `chromium`), driven through `chromedriver` over
//! the W3C WebDriver protocol: six JSON commands over the reqwest client the tests already use.
//! (`fantoccini` would bring a second HTTP stack and TLS backend for what these tests need.)
//!
//! Admin credentials are sent as a header on every request the page makes (Chromium's DevTools
//! `Network.setExtraHTTPHeaders`), as a browser that has answered the Basic challenge does.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::ports::on_a_free_port;

/// The WebDriver element key (W3C).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One headless Chromium session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: String,
    /// Killed on drop; its Chromium goes with it.
    _chromedriver: Child,
    _profile: tempfile::TempDir,
}

/// Whether the browser tests can run here (`chromium` and `chromedriver` installed, as `.ci/run`
/// does).
pub fn available() -> bool {
    ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .iter()
        .all(|p| Path::new(p).exists())
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session, 1280×900.
    pub async fn start() -> Browser {
        Self::start_with(true).await
    }

    /// As [`Browser::start`], with JavaScript turned off for every page.
    pub async fn start_without_javascript() -> Browser {
        Self::start_with(false).await
    }

    async fn start_with(javascript: bool) -> Browser {
        let http = reqwest::Client::new();
        let (chromedriver, driver) = on_a_free_port("chromedriver", |port| {
            let http = http.clone();
            async move {
                let mut child = Command::new("/usr/bin/chromedriver")
                    .arg(format!("--port={port}"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| {
                        format!("chromedriver (apt install chromium-driver, as .ci/run does): {e}")
                    })?;
                let driver = format!("http://127.0.0.1:{port}");
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                loop {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(format!("chromedriver exited: {status}"));
                    }
                    let ready = async {
                        let status = http.get(format!("{driver}/status")).send().await.ok()?;
                        status.json::<Value>().await.ok()?["value"]["ready"].as_bool()
                    };
                    if ready.await == Some(true) {
                        return Ok((child, driver));
                    }
                    if tokio::time::Instant::now() > deadline {
                        return Err("chromedriver not ready in 20 s".to_owned());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--hide-scrollbars", "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {"profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 }},
            },
        }}});
        let created: Value = http
            .post(format!("{driver}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        Browser {
            http,
            session,
            driver,
            _chromedriver: chromedriver,
            _profile: profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.driver, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            answer["value"].get("error").is_none(),
            "WebDriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    /// Sends `Authorization: Basic user:password` with every request from now on (`None`: stop).
    pub async fn sign_in(&self, credentials: Option<(&str, &str)>) {
        let headers = match credentials {
            Some((user, password)) => {
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                json!({"Authorization": format!("Basic {token}")})
            }
            None => json!({}),
        };
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Network.enable", "params": {}}),
        )
        .await;
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Network.setExtraHTTPHeaders", "params": {"headers": headers}}),
        )
        .await;
    }

    /// Opens `url` and waits for the page to load.
    pub async fn open(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn title(&self) -> String {
        self.get("/title").await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or_default().to_owned()
    }

    /// The rendered text of the page's body.
    pub async fn text(&self) -> String {
        self.text_of("body").await.unwrap_or_default()
    }

    /// The rendered text of the first element `css` selects, if any.
    pub async fn text_of(&self, css: &str) -> Option<String> {
        let element = self.find(css).await?;
        let text = self.get(&format!("/element/{element}/text")).await;
        text.as_str().map(str::to_owned)
    }

    /// The text of the first element `css` selects once there is one (after a click that
    /// navigates, say); panics after 10 s.
    pub async fn wait_for(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(text) = self.text_of(css).await {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing matches {css} on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first element `css` selects (its WebDriver id).
    pub async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        found
            .as_array()?
            .first()
            .and_then(|e| e[ELEMENT].as_str())
            .map(str::to_owned)
    }

    /// Clicks the first element `css` selects.
    pub async fn click(&self, css: &str) {
        let element = self
            .find(css)
            .await
            .unwrap_or_else(|| panic!("nothing matches {css}"));
        self.post(&format!("/element/{element}/click"), json!({})).await;
    }

    /// Types `text` into the first element `css` selects.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self
            .find(css)
            .await
            .unwrap_or_else(|| panic!("nothing matches {css}"));
        self.post(&format!("/element/{element}/value"), json!({"text": text}))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns what it returns,
    /// awaiting a promise.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({
            "script": format!("const done = arguments[arguments.length - 1]; Promise.resolve((async () => {{ {script} }})()).then(done, e => done('error: ' + e));"),
            "args": args,
        }))
        .await
    }

    /// A PNG of the whole page (the window resized to the page's height first).
    pub async fn screenshot(&self, path: &Path) {
        let height = self
            .run("return document.documentElement.scrollHeight;", json!([]))
            .await
            .as_u64()
            .unwrap_or(900)
            .clamp(400, 4000);
        self.post("/window/rect", json!({"width": 1280, "height": height + 90}))
            .await;
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
        self.post("/window/rect", json!({"width": 1280, "height": 900}))
            .await;
    }
}
