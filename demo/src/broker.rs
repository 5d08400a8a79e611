//! [`DemoBroker`]: the workspace's stub OSB 2.17 upstream broker on a loopback port.
//!
//! One broker, three ways to answer ([`Answers`]):
//! - [`Answers::Stateful`]: a complete in-memory broker. It serves one catalog and every instance
//!   and binding endpoint, keeping instances, bindings and async operations in memory (see
//!   `stateful` for the checks, `resources` for the state machine). The demo runs three; the
//!   integration tests use it as an upstream that can be inspected ([`DemoBroker::instances`],
//!   [`DemoBroker::bindings`], [`DemoBroker::requests`]).
//! - [`Answers::Fast`]: fixed answers, no body parsed, only counters (see `fast`): the load tests'
//!   stub (`osb-loadtests stub`).
//! - [`Answers::Script`]: only the replies scripted with [`DemoBroker::on`]; every request recorded
//!   ([`DemoBroker::recorded`]): the fault tests' scripted upstream (see `script`).
//!
//! Every request goes through one handler, top to bottom: record it (with [`Behaviour::record`]);
//! a reply scripted for its method and path answers it as scripted, unchecked; route it to an
//! [`Endpoint`] (404, or 405 for a known path) and count it; basic auth (401) and
//! `X-Broker-API-Version` (412); the catalog answers with its ETag (or 304); the
//! [`Behaviour::error_rate`] share of instance and binding calls other than polls fails (500,
//! nothing changed); then the call is answered as [`Answers`] says; then the configured latency,
//! then the answer. The state changes *before* the latency, as when a real broker starts work on
//! arrival: a platform that gives up or dies mid-call leaves the effect behind, which is what
//! orphan-mitigation and crash tests need to see.
//!
//! A stateful broker's catalog says every service is `instances_retrievable` and
//! `bindings_retrievable` (it implements both fetches for all); a fast one serves its catalog's
//! bytes as given. Deliberately not done: persistence, `bindable`/`plan_updateable` checks,
//! `maintenance_info`, failed operations, `Retry-After`. Errors are OSB JSON (`{"description"}`,
//! plus `"error": "ConcurrencyError"` on 422) built right here: this is an upstream, not the
//! gateway, so it does not go through `ApiError`.

mod behaviour;
mod fast;
mod reply;
mod resources;
mod route;
pub mod script;
mod stateful;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use actix_web::dev::ServerHandle;
use actix_web::http::{KeepAlive, StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use osb_routing::cache::strong_etag;
use osb_routing::headers::{API_VERSION, REQUEST_IDENTITY};

pub use self::behaviour::{Answers, Behaviour, Endpoint};
use self::resources::{Reply, Resources};
use self::route::{Call, route};
use self::script::{Recorded, Script};
use self::stateful::{PlanIndex, announce_fetching};

// === DemoBroker ===

/// A demo broker running on loopback.
pub struct DemoBroker {
    pub name: String,
    pub addr: SocketAddr,
    pub username: String,
    pub password: String,
    /// `None` once stopped.
    handle: Mutex<Option<ServerHandle>>,
    state: web::Data<BrokerState>,
}

impl std::fmt::Debug for DemoBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoBroker")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("behaviour", &self.state.behaviour)
            .finish_non_exhaustive()
    }
}

impl DemoBroker {
    /// Starts a broker serving `catalog` on `127.0.0.1:0` with the default [`Behaviour`].
    ///
    /// # Errors
    /// No loopback port could be bound.
    pub async fn start(name: &str, catalog: Bytes) -> std::io::Result<Self> {
        Self::start_with(name, catalog, Behaviour::default()).await
    }

    /// Starts a broker serving `catalog` on `127.0.0.1:0` that answers as `behaviour` says, with a
    /// random password.
    ///
    /// A stateful broker's provisions and binds must name a service and one of its plans in
    /// `catalog`; a catalog that does not parse is still served, and then every provision is a 400.
    ///
    /// # Errors
    /// No loopback port could be bound.
    pub async fn start_with(name: &str, catalog: Bytes, behaviour: Behaviour) -> std::io::Result<Self> {
        let password = uuid::Uuid::new_v4().simple().to_string();
        Self::start_as(name, &password, catalog, behaviour).await
    }

    /// [`DemoBroker::start_with`], with this password (the user is `<name>-broker`).
    ///
    /// # Errors
    /// No loopback port could be bound.
    pub async fn start_as(
        name: &str,
        password: &str,
        catalog: Bytes,
        behaviour: Behaviour,
    ) -> std::io::Result<Self> {
        let username = format!("{name}-broker");
        let (catalog, plans) = match behaviour.answers {
            Answers::Stateful => {
                let catalog = announce_fetching(catalog);
                let plans = PlanIndex::from_catalog(&catalog);
                if plans.is_empty() {
                    tracing::warn!(broker = %name, "Demo broker catalog names no plans; every provision will be rejected.");
                }
                (catalog, plans)
            }
            Answers::Fast | Answers::Script => (catalog, PlanIndex::default()),
        };
        let state = web::Data::new(BrokerState {
            etag: strong_etag(&catalog),
            catalog,
            plans,
            accepted: RwLock::new(accepted_headers(&username, &[password])),
            resources: Mutex::new(Resources::new(behaviour.async_polls, format!("{name}-user"))),
            counters: fast::Counters::new(),
            script: Script::default(),
            behaviour,
            counts: Default::default(),
            sequence: AtomicU64::new(0),
        });
        let (addr, handle) = serve(state.clone(), SocketAddr::from(([127, 0, 0, 1], 0)))?;
        Ok(DemoBroker {
            name: name.to_owned(),
            addr,
            username,
            password: password.to_owned(),
            handle: Mutex::new(Some(handle)),
            state,
        })
    }

    fn take_handle(&self) -> Option<ServerHandle> {
        self.handle.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Stops the broker, letting calls in flight finish (at most a second).
    pub async fn stop(&self) {
        if let Some(handle) = self.take_handle() {
            handle.stop(true).await;
        }
    }

    /// Stops the broker at once, dropping calls in flight: connections are refused until
    /// [`DemoBroker::restart`].
    pub async fn kill(&self) {
        if let Some(handle) = self.take_handle() {
            handle.stop(false).await;
        }
    }

    /// Tells the broker to stop at once, without waiting (for `Drop`).
    pub fn kill_now(&self) {
        if let Some(handle) = self.take_handle() {
            drop(handle.stop(false));
        }
    }

    /// Listens again on the same port, with the same state, script and record.
    ///
    /// # Errors
    /// The port could not be bound again.
    pub async fn restart(&self) -> std::io::Result<()> {
        self.kill().await;
        let (_, handle) = serve(self.state.clone(), self.addr)?;
        *self.handle.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(())
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `http://` and where it listens.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The broker's `brokers[]` entry for a gateway configuration.
    pub fn config_entry(&self) -> String {
        format!(
            "  - name: {}\n    url: http://{}\n    username: {}\n    password: {}\n",
            self.name, self.addr, self.username, self.password
        )
    }

    /// How the broker answers.
    pub fn behaviour(&self) -> &Behaviour {
        &self.state.behaviour
    }

    /// From now on, accepts exactly these passwords (with the broker's user name, or as bearer
    /// tokens): a credential rotation on the broker's side.
    pub fn accept_passwords(&self, passwords: &[&str]) {
        *self
            .state
            .accepted
            .write()
            .unwrap_or_else(PoisonError::into_inner) = accepted_headers(&self.username, passwords);
    }

    /// Scripts `reply` for `method` + `path` (exact, or a prefix ending in `*`), replacing an
    /// earlier script for the same pair. It answers before any check, whatever [`Answers`] says.
    pub fn on(&self, method: &str, path: &str, reply: script::Reply) {
        self.state.script.on(method, path, reply);
    }

    /// Every request received so far, in order (only with [`Behaviour::record`]).
    pub fn recorded(&self) -> Vec<Recorded> {
        self.state.script.recorded()
    }

    /// The recorded requests with this method whose path starts with `prefix`.
    pub fn received(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.recorded()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }

    /// Ids of the instances that exist (provisioned or being provisioned, not yet deleted), sorted.
    pub fn instances(&self) -> Vec<String> {
        self.state.resources().instance_ids()
    }

    /// (instance id, binding id) of every binding that exists (bound or being bound), sorted.
    pub fn bindings(&self) -> Vec<(String, String)> {
        self.state.resources().binding_ids()
    }

    /// (instances, bindings) the broker holds: those that exist for a stateful broker, created
    /// minus deleted for a fast one (so a run can check that nothing leaked).
    pub fn held(&self) -> (i64, i64) {
        match self.state.behaviour.answers {
            Answers::Fast => self.state.counters.balance(),
            Answers::Stateful | Answers::Script => {
                let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                (count(self.instances().len()), count(self.bindings().len()))
            }
        }
    }

    /// Calls received so far per kind ([`Endpoint::as_str`]), every kind present, including calls
    /// that were then rejected (401, 412, 400, 500, …).
    pub fn requests(&self) -> BTreeMap<&'static str, u64> {
        Endpoint::ALL
            .into_iter()
            .map(|endpoint| (endpoint.as_str(), self.request_count(endpoint)))
            .collect()
    }

    /// Calls of one kind received so far.
    pub fn request_count(&self, endpoint: Endpoint) -> u64 {
        self.state
            .counts
            .get(endpoint as usize)
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }
}

/// Starts the HTTP server of `state` on `addr`.
fn serve(state: web::Data<BrokerState>, addr: SocketAddr) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let workers = state.behaviour.workers.max(1);
    // The load tests' stub keeps idle connections open as long as the client does (as the hyper
    // stub it replaced did); the others close them after actix's 5 s.
    let keep_alive = match state.behaviour.answers {
        Answers::Fast => KeepAlive::Os,
        Answers::Stateful | Answers::Script => KeepAlive::default(),
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .default_service(web::to(handle))
    })
    .workers(workers)
    .keep_alive(keep_alive)
    .backlog(4096)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(addr)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("no address bound"))?;
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((addr, handle))
}

// === shared state ===

/// The `Authorization` values that `username` with any of `passwords` sends.
fn accepted_headers(username: &str, passwords: &[&str]) -> Vec<String> {
    passwords
        .iter()
        .flat_map(|password| {
            [
                format!("Basic {}", STANDARD.encode(format!("{username}:{password}"))),
                format!("Bearer {password}"),
            ]
        })
        .collect()
}

struct BrokerState {
    catalog: Bytes,
    etag: String,
    plans: PlanIndex,
    /// The `Authorization` values accepted: Basic with each password, and each password as a
    /// bearer token.
    accepted: RwLock<Vec<String>>,
    behaviour: Behaviour,
    /// [`Answers::Stateful`]'s memory.
    resources: Mutex<Resources>,
    /// [`Answers::Fast`]'s memory.
    counters: fast::Counters,
    script: Script,
    counts: [AtomicU64; Endpoint::ALL.len()],
    /// Numbers the calls that may fail ([`Behaviour::error_rate`]).
    sequence: AtomicU64,
}

impl BrokerState {
    /// The lock around the resources. A panic elsewhere cannot leave them half-changed (every
    /// method of `Resources` changes them in one step), so a poisoned lock is used as it is.
    fn resources(&self) -> MutexGuard<'_, Resources> {
        self.resources.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, endpoint: Endpoint) {
        if let Some(count) = self.counts.get(endpoint as usize) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Basic auth, or the password as a bearer token (401), and `X-Broker-API-Version` (412).
    fn admit(&self, req: &HttpRequest) -> Result<(), Reply> {
        let authorized = req.headers().get(header::AUTHORIZATION).is_some_and(|v| {
            self.accepted
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|accepted| accepted.as_bytes() == v.as_bytes())
        });
        if !authorized {
            return Err(Reply::error(
                StatusCode::UNAUTHORIZED,
                None,
                "bad credentials".to_owned(),
            ));
        }
        if !req.headers().contains_key(API_VERSION) {
            return Err(Reply::error(
                StatusCode::PRECONDITION_FAILED,
                None,
                "X-Broker-API-Version required".to_owned(),
            ));
        }
        Ok(())
    }

    /// A 500 for the [`Behaviour::error_rate`] share of the calls that may fail (not polls).
    fn inject_failure(&self, endpoint: Endpoint) -> Result<(), Reply> {
        let rate = self.behaviour.error_rate;
        if rate <= 0.0 || endpoint.is_poll() {
            return Ok(());
        }
        // A low-discrepancy sequence: exactly the configured share over any long run.
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        if (n as f64 * 0.618_033_988_749_895).fract() < rate {
            Err(Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "injected failure (error rate)".to_owned(),
            ))
        } else {
            Ok(())
        }
    }

    /// Waits the configured latency, then sends `reply`.
    async fn answer(&self, req: &HttpRequest, reply: Result<Reply, Reply>) -> HttpResponse {
        if !self.behaviour.latency.is_zero() {
            tokio::time::sleep(self.behaviour.latency).await;
        }
        let reply = reply.unwrap_or_else(|rejected| rejected);
        let mut response = HttpResponse::build(reply.status);
        if let Some(identity) = req.headers().get(REQUEST_IDENTITY) {
            response.insert_header((REQUEST_IDENTITY, identity.clone()));
        }
        response
            .content_type(header::ContentType::json())
            .body(reply.body)
    }
}

// === the handler ===

async fn handle(req: HttpRequest, body: Bytes, state: web::Data<BrokerState>) -> HttpResponse {
    if state.behaviour.record {
        state.script.record(&req, &body);
    }
    if let Some(reply) = state.script.reply_for(req.method().as_str(), req.path()) {
        return reply.respond().await;
    }
    if state.behaviour.answers == Answers::Script {
        return fixed(StatusCode::NOT_FOUND, r#"{"description":"not scripted"}"#);
    }
    let Some(route) = route(req.path()) else {
        return fixed(StatusCode::NOT_FOUND, r#"{"description":"no such endpoint"}"#);
    };
    let Some(call) = Call::of(route, req.method()) else {
        return fixed(StatusCode::METHOD_NOT_ALLOWED, "{}");
    };
    state.count(call.endpoint);
    if call.endpoint == Endpoint::Catalog {
        return catalog(&req, &state);
    }
    let reply = state
        .admit(&req)
        .and_then(|()| state.inject_failure(call.endpoint))
        .and_then(|()| match state.behaviour.answers {
            Answers::Stateful => stateful::reply(&state, &call, &req, &body),
            Answers::Fast | Answers::Script => {
                let deferred = state.behaviour.async_operations
                    && req
                        .query_string()
                        .split('&')
                        .any(|kv| kv == "accepts_incomplete=true");
                Ok(state.counters.reply(
                    call.endpoint,
                    call.resource_id(),
                    deferred,
                    state.behaviour.async_polls,
                ))
            }
        });
    state.answer(&req, reply).await
}

fn catalog(req: &HttpRequest, state: &BrokerState) -> HttpResponse {
    if let Err(reply) = state.admit(req) {
        return HttpResponse::build(reply.status)
            .content_type(header::ContentType::json())
            .body(reply.body);
    }
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == state.etag.as_bytes());
    if matches {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, state.etag.clone()))
            .finish();
    }
    HttpResponse::Ok()
        .insert_header((header::ETAG, state.etag.clone()))
        .content_type(header::ContentType::json())
        .body(state.catalog.clone())
}

fn fixed(status: StatusCode, body: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(header::ContentType::json())
        .body(body)
}

#[cfg(test)]
mod tests;
