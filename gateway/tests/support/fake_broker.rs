//! [`FakeBroker`]: an in-repo scripted upstream broker for faults. It answers each request with the
//! reply scripted for its method and path (exact, or a prefix ending in `*`), records everything it
//! received, and can be stopped and restarted on the same port ("killed", then "back").

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            body: body.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            delay: Duration::ZERO,
        }
    }
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(status, serde_json::to_vec(value).unwrap())
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// One request the broker received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Script {
    routes: Vec<(String, String, Reply)>,
    recorded: Vec<Recorded>,
}

/// See the module docs.
pub struct FakeBroker {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    handle: Option<ServerHandle>,
}

impl FakeBroker {
    /// Starts an empty broker (every request → 404) on a free loopback port.
    pub async fn start() -> FakeBroker {
        let script = Arc::new(Mutex::new(Script::default()));
        let (addr, handle) = serve(script.clone(), "127.0.0.1:0".parse().unwrap());
        FakeBroker {
            addr,
            script,
            handle: Some(handle),
        }
    }

    /// Starts a broker serving `catalog` at `GET /v2/catalog`.
    pub async fn with_catalog(catalog: impl Into<Vec<u8>>) -> FakeBroker {
        let broker = Self::start().await;
        broker.on("GET", "/v2/catalog", Reply::new(200, catalog));
        broker
    }

    /// Scripts `reply` for `method` + `path` (replacing an earlier script for the same pair).
    pub fn on(&self, method: &str, path: &str, reply: Reply) {
        let mut script = self.script.lock().unwrap();
        script.routes.retain(|(m, p, _)| !(m == method && p == path));
        script.routes.push((method.to_owned(), path.to_owned(), reply));
    }

    /// Everything received so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.script.lock().unwrap().recorded.clone()
    }

    /// What was received for requests whose path starts with `prefix`.
    pub fn received(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.recorded()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening: connections are refused until [`FakeBroker::restart`].
    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop(false).await;
        }
    }

    /// Listens again on the same port with the same script.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (_, handle) = serve(self.script.clone(), self.addr);
        self.handle = Some(handle);
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            drop(handle.stop(false));
        }
    }
}

fn serve(script: Arc<Mutex<Script>>, addr: SocketAddr) -> (SocketAddr, ServerHandle) {
    let data = web::Data::from(script);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(answer)))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(addr)
        .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (addr, handle)
}

async fn answer(req: HttpRequest, body: web::Bytes, script: web::Data<Mutex<Script>>) -> HttpResponse {
    let reply = {
        let mut script = script.lock().unwrap();
        script.recorded.push(Recorded {
            method: req.method().to_string(),
            path: req.path().to_owned(),
            query: req.query_string().to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
                .collect(),
            body: body.to_vec(),
        });
        script
            .routes
            .iter()
            .rev()
            .find(|(m, p, _)| {
                m == req.method().as_str()
                    && match p.strip_suffix('*') {
                        Some(prefix) => req.path().starts_with(prefix),
                        None => req.path() == p,
                    }
            })
            .map(|(_, _, reply)| reply.clone())
    };
    let Some(reply) = reply else {
        return HttpResponse::NotFound().json(serde_json::json!({"description": "not scripted"}));
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    for (name, value) in &reply.headers {
        response.insert_header((name.as_str(), value.as_str()));
    }
    response.body(reply.body)
}
