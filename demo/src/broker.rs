//! [`DemoBroker`]: a complete, in-memory OSB 2.17 upstream broker on a loopback port.
//!
//! It serves one catalog (`GET /v2/catalog` with ETag/304) and every instance and binding endpoint,
//! keeping instances, bindings and async operations in memory (see `resources` for the state
//! machine). The demo runs three of them; the integration tests use it as a stateful upstream that
//! can be inspected ([`DemoBroker::instances`], [`DemoBroker::bindings`],
//! [`DemoBroker::requests`]); the benchmarks use it as a fast stub ([`Behaviour::fast`]).
//!
//! Each call is checked here, top to bottom: count it, basic auth (401), `X-Broker-API-Version`
//! (412), query and body (400, with the service and plan checked against the catalog), then one
//! short critical section in `resources`, then the configured latency, then the answer. The state
//! changes *before* the latency, as when a real broker starts work on arrival: a platform that
//! gives up or dies mid-call leaves the effect behind, which is what orphan-mitigation and crash
//! tests need to see.
//!
//! Its catalog says every service is `instances_retrievable` and `bindings_retrievable` (it
//! implements both fetches for all). Deliberately not done: persistence, `bindable`/`plan_updateable` checks,
//! `maintenance_info`, failed operations, `Retry-After`. Errors are OSB JSON (`{"description"}`,
//! plus `"error": "ConcurrencyError"` on 422) built right here: this is an upstream, not the
//! gateway, so it does not go through `ApiError`.

mod resources;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::{StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use osb_routing::cache::strong_etag;
use osb_routing::headers::{API_VERSION, REQUEST_IDENTITY};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use self::resources::{Attributes, Reply, Resources, Update};

// === Behaviour ===

/// How a [`DemoBroker`] answers instance and binding calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// Added to every instance and binding call (not to the catalog), after the state changed.
    pub latency: Duration,
    /// Answer 202 with an `operation` when the call has `accepts_incomplete=true` (provision,
    /// update, deprovision, bind, unbind). Without `accepts_incomplete` calls stay synchronous.
    pub async_operations: bool,
    /// `last_operation` answers "in progress" this many times, then "succeeded".
    pub async_polls: u32,
    /// actix worker threads.
    pub workers: usize,
}

impl Default for Behaviour {
    /// No latency, synchronous, one poll, one worker.
    fn default() -> Self {
        Behaviour {
            latency: Duration::ZERO,
            async_operations: false,
            async_polls: 1,
            workers: 1,
        }
    }
}

impl Behaviour {
    /// A stub for benchmarks: synchronous, no latency, one worker per available core.
    pub fn fast() -> Self {
        Behaviour {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            ..Behaviour::default()
        }
    }

    /// Async operations (when the platform accepts them) that finish after `polls` "in progress"
    /// answers.
    pub fn asynchronous(polls: u32) -> Self {
        Behaviour {
            async_operations: true,
            async_polls: polls,
            ..Behaviour::default()
        }
    }

    /// The same, with `latency` added to every instance and binding call.
    #[must_use]
    pub fn with_latency(self, latency: Duration) -> Self {
        Behaviour { latency, ..self }
    }

    /// The same, on `workers` worker threads (at least one).
    #[must_use]
    pub fn with_workers(self, workers: usize) -> Self {
        Behaviour { workers, ..self }
    }
}

// === Endpoint ===

/// The kinds of call a [`DemoBroker`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    Catalog,
    Provision,
    Update,
    Deprovision,
    FetchInstance,
    InstanceLastOperation,
    Bind,
    Unbind,
    FetchBinding,
    BindingLastOperation,
}

impl Endpoint {
    /// Every kind, in declaration order.
    pub const ALL: [Endpoint; 10] = [
        Endpoint::Catalog,
        Endpoint::Provision,
        Endpoint::Update,
        Endpoint::Deprovision,
        Endpoint::FetchInstance,
        Endpoint::InstanceLastOperation,
        Endpoint::Bind,
        Endpoint::Unbind,
        Endpoint::FetchBinding,
        Endpoint::BindingLastOperation,
    ];

    /// The OSB name of the call: `provision`, `instance_last_operation`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Catalog => "catalog",
            Endpoint::Provision => "provision",
            Endpoint::Update => "update",
            Endpoint::Deprovision => "deprovision",
            Endpoint::FetchInstance => "fetch_instance",
            Endpoint::InstanceLastOperation => "instance_last_operation",
            Endpoint::Bind => "bind",
            Endpoint::Unbind => "unbind",
            Endpoint::FetchBinding => "fetch_binding",
            Endpoint::BindingLastOperation => "binding_last_operation",
        }
    }
}

// === DemoBroker ===

/// A demo broker running on loopback.
pub struct DemoBroker {
    pub name: String,
    pub addr: SocketAddr,
    pub username: String,
    pub password: String,
    handle: ServerHandle,
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

    /// Starts a broker serving `catalog` on `127.0.0.1:0` that answers as `behaviour` says.
    ///
    /// Provisions and binds must name a service and one of its plans in `catalog`; a catalog that
    /// does not parse is still served, and then every provision is a 400.
    ///
    /// # Errors
    /// No loopback port could be bound.
    pub async fn start_with(name: &str, catalog: Bytes, behaviour: Behaviour) -> std::io::Result<Self> {
        let username = format!("{name}-broker");
        let password = uuid::Uuid::new_v4().simple().to_string();
        let catalog = announce_fetching(catalog);
        let plans = PlanIndex::from_catalog(&catalog);
        if plans.is_empty() {
            tracing::warn!(broker = %name, "Demo broker catalog names no plans; every provision will be rejected.");
        }
        let workers = behaviour.workers.max(1);
        let state = web::Data::new(BrokerState {
            etag: strong_etag(&catalog),
            catalog,
            plans,
            authorization: format!("Basic {}", STANDARD.encode(format!("{username}:{password}"))),
            bearer: format!("Bearer {password}"),
            resources: Mutex::new(Resources::new(behaviour.async_polls, format!("{name}-user"))),
            behaviour,
            counts: Default::default(),
        });
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .route("/v2/catalog", web::get().to(catalog_handler))
                .service(
                    web::resource("/v2/service_instances/{instance_id}")
                        .route(web::put().to(provision))
                        .route(web::patch().to(update))
                        .route(web::delete().to(deprovision))
                        .route(web::get().to(fetch_instance)),
                )
                .route(
                    "/v2/service_instances/{instance_id}/last_operation",
                    web::get().to(instance_last_operation),
                )
                .service(
                    web::resource("/v2/service_instances/{instance_id}/service_bindings/{binding_id}")
                        .route(web::put().to(bind))
                        .route(web::delete().to(unbind))
                        .route(web::get().to(fetch_binding)),
                )
                .route(
                    "/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation",
                    web::get().to(binding_last_operation),
                )
                .default_service(web::to(no_such_endpoint))
        })
        .workers(workers)
        .backlog(4096)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("no address bound"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(DemoBroker {
            name: name.to_owned(),
            addr,
            username,
            password,
            handle,
            state,
        })
    }

    /// Stops the broker.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
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

    /// Ids of the instances that exist (provisioned or being provisioned, not yet deleted), sorted.
    pub fn instances(&self) -> Vec<String> {
        self.state.resources().instance_ids()
    }

    /// (instance id, binding id) of every binding that exists (bound or being bound), sorted.
    pub fn bindings(&self) -> Vec<(String, String)> {
        self.state.resources().binding_ids()
    }

    /// Calls received so far per kind ([`Endpoint::as_str`]), every kind present, including calls
    /// that were then rejected (401, 412, 400, …).
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

// === shared state ===

/// Which plans each service of the catalog has.
#[derive(Debug, Default)]
struct PlanIndex(HashMap<String, HashSet<String>>);

impl PlanIndex {
    /// Reads only the ids; everything else in the catalog is ignored.
    fn from_catalog(catalog: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Catalog {
            #[serde(default)]
            services: Vec<Service>,
        }
        #[derive(Deserialize)]
        struct Service {
            id: String,
            #[serde(default)]
            plans: Vec<Plan>,
        }
        #[derive(Deserialize)]
        struct Plan {
            id: String,
        }
        let services = serde_json::from_slice::<Catalog>(catalog).map_or_else(|_| Vec::new(), |c| c.services);
        PlanIndex(
            services
                .into_iter()
                .map(|s| (s.id, s.plans.into_iter().map(|p| p.id).collect()))
                .collect(),
        )
    }

    fn is_empty(&self) -> bool {
        self.0.values().all(HashSet::is_empty)
    }

    fn plans(&self, service_id: &str) -> Result<&HashSet<String>, Reply> {
        self.0
            .get(service_id)
            .ok_or_else(|| Reply::bad_request(format!("service_id {service_id} is not in the catalog")))
    }

    /// `Ok` when `plan_id` is a plan of `service_id`.
    fn check(&self, service_id: &str, plan_id: &str) -> Result<(), Reply> {
        if self.plans(service_id)?.contains(plan_id) {
            Ok(())
        } else {
            Err(Reply::bad_request(format!(
                "plan_id {plan_id} is not a plan of service {service_id}"
            )))
        }
    }
}

struct BrokerState {
    catalog: Bytes,
    etag: String,
    plans: PlanIndex,
    authorization: String,
    /// The password as a bearer token, also accepted.
    bearer: String,
    behaviour: Behaviour,
    resources: Mutex<Resources>,
    counts: [AtomicU64; Endpoint::ALL.len()],
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
            v.as_bytes() == self.authorization.as_bytes() || v.as_bytes() == self.bearer.as_bytes()
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

// === requests ===

#[derive(Deserialize)]
struct AsyncQuery {
    #[serde(default)]
    accepts_incomplete: bool,
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    accepts_incomplete: bool,
    service_id: Option<IgnoredAny>,
    plan_id: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct LastOperationQuery {
    operation: Option<String>,
}

/// A provision or bind body: the fields that matter here; unknown ones are ignored.
#[derive(Deserialize)]
struct CreateBody {
    service_id: String,
    plan_id: String,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Deserialize)]
struct UpdateBody {
    service_id: String,
    #[serde(default)]
    plan_id: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, Reply> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| Reply::bad_request(format!("bad query: {e}")))
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(bytes).map_err(|e| Reply::bad_request(format!("bad body: {e}")))
}

/// `true` when the call accepts an async answer and the broker gives them.
fn asynchronous(state: &BrokerState, accepts_incomplete: bool) -> bool {
    accepts_incomplete && state.behaviour.async_operations
}

/// A deprovision or unbind query: `service_id` and `plan_id` are required (their values are not
/// checked); answers whether the call is asynchronous.
fn delete_query(state: &BrokerState, req: &HttpRequest) -> Result<bool, Reply> {
    let DeleteQuery {
        accepts_incomplete,
        service_id,
        plan_id,
    } = query(req)?;
    let missing = |name: &str| Reply::bad_request(format!("query parameter {name} is required"));
    service_id.ok_or_else(|| missing("service_id"))?;
    plan_id.ok_or_else(|| missing("plan_id"))?;
    Ok(asynchronous(state, accepts_incomplete))
}

fn instance_id(req: &HttpRequest) -> &str {
    req.match_info().get("instance_id").unwrap_or_default()
}

fn binding_id(req: &HttpRequest) -> &str {
    req.match_info().get("binding_id").unwrap_or_default()
}

/// Checks a provision or bind body against the catalog.
fn attributes(state: &BrokerState, bytes: &[u8]) -> Result<Attributes, Reply> {
    let CreateBody {
        service_id,
        plan_id,
        parameters,
    } = body(bytes)?;
    state.plans.check(&service_id, &plan_id)?;
    Ok(Attributes {
        service_id,
        plan_id,
        parameters: parameters.unwrap_or_else(|| Value::Object(serde_json::Map::new())),
    })
}

/// `catalog` with every service saying what this broker implements for all of them: fetching
/// instances and bindings (`instances_retrievable`, `bindings_retrievable`, where the catalog does
/// not set them: OSB asks a platform not to fetch otherwise, and an asynchronous binding's
/// credentials are fetched). Unchanged if it is not a catalog.
fn announce_fetching(catalog: Bytes) -> Bytes {
    let Ok(serde_json::Value::Object(mut document)) = serde_json::from_slice(&catalog) else {
        return catalog;
    };
    if let Some(serde_json::Value::Array(services)) = document.get_mut("services") {
        for service in services.iter_mut().filter_map(serde_json::Value::as_object_mut) {
            for flag in ["instances_retrievable", "bindings_retrievable"] {
                service.entry(flag).or_insert(serde_json::Value::Bool(true));
            }
        }
    }
    serde_json::to_vec(&document).map_or(catalog, Bytes::from)
}

// === handlers ===

async fn catalog_handler(req: HttpRequest, state: web::Data<BrokerState>) -> HttpResponse {
    state.count(Endpoint::Catalog);
    if let Err(reply) = state.admit(&req) {
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

// Each call: a handler that counts and answers, and a `*_reply` with the steps, where `?` is the
// only control flow and the lock is taken in the last step.

async fn provision(req: HttpRequest, bytes: Bytes, state: web::Data<BrokerState>) -> HttpResponse {
    state.count(Endpoint::Provision);
    let reply = provision_reply(&state, &req, &bytes);
    state.answer(&req, reply).await
}

fn provision_reply(state: &BrokerState, req: &HttpRequest, bytes: &[u8]) -> Result<Reply, Reply> {
    state.admit(req)?;
    let AsyncQuery { accepts_incomplete } = query(req)?;
    let attributes = attributes(state, bytes)?;
    let asynchronous = asynchronous(state, accepts_incomplete);
    Ok(state
        .resources()
        .provision(instance_id(req), attributes, asynchronous))
}

async fn update(req: HttpRequest, bytes: Bytes, state: web::Data<BrokerState>) -> HttpResponse {
    state.count(Endpoint::Update);
    let reply = update_reply(&state, &req, &bytes);
    state.answer(&req, reply).await
}

fn update_reply(state: &BrokerState, req: &HttpRequest, bytes: &[u8]) -> Result<Reply, Reply> {
    state.admit(req)?;
    let AsyncQuery { accepts_incomplete } = query(req)?;
    let UpdateBody {
        service_id,
        plan_id,
        parameters,
    } = body(bytes)?;
    match &plan_id {
        Some(plan_id) => state.plans.check(&service_id, plan_id)?,
        None => state.plans.plans(&service_id).map(|_| ())?,
    }
    let update = Update {
        service_id,
        plan_id,
        parameters,
    };
    let asynchronous = asynchronous(state, accepts_incomplete);
    Ok(state.resources().update(instance_id(req), update, asynchronous))
}

async fn deprovision(req: HttpRequest, state: web::Data<BrokerState>) -> HttpResponse {
    state.count(Endpoint::Deprovision);
    let reply = deprovision_reply(&state, &req);
    state.answer(&req, reply).await
}

fn deprovision_reply(state: &BrokerState, req: &HttpRequest) -> Result<Reply, Reply> {
    state.admit(req)?;
    let asynchronous = delete_query(state, req)?;
    Ok(state.resources().deprovision(instance_id(req), asynchronous))
}

async fn fetch_instance(req: HttpRequest, state: web::Data<BrokerState>) -> HttpResponse {
    state.count(Endpoint::FetchInstance);
    let reply = fetch_instance_reply(&state, &req);
    state.answer(&req, reply).await
}

fn fetch_instance_reply(state: &BrokerState, req: &HttpRequest) -> Result<Reply, Reply> {
    state.admit(req)?;
    Ok(state.resources().fetch_instance(instance_id(req)))
}

async fn instance_last_operation(req: HttpRequest, state: web::Data<BrokerState>) -> HttpResponse {
    state.count(Endpoint::InstanceLastOperation);
    let reply = instance_last_operation_reply(&state, &req);
    state.answer(&req, reply).await
}

fn instance_last_operation_reply(state: &BrokerState, req: &HttpRequest) -> Result<Reply, Reply> {
    state.admit(req)?;
    let LastOperationQuery { operation } = query(req)?;
    Ok(state
        .resources()
        .instance_last_operation(instance_id(req), operation.as_deref()))
}

async fn bind(req: HttpRequest, bytes: Bytes, state: web::Data<BrokerState>) -> HttpResponse {
    state.count(Endpoint::Bind);
    let reply = bind_reply(&state, &req, &bytes);
    state.answer(&req, reply).await
}

fn bind_reply(state: &BrokerState, req: &HttpRequest, bytes: &[u8]) -> Result<Reply, Reply> {
    state.admit(req)?;
    let AsyncQuery { accepts_incomplete } = query(req)?;
    let attributes = attributes(state, bytes)?;
    let asynchronous = asynchronous(state, accepts_incomplete);
    Ok(state
        .resources()
        .bind(instance_id(req), binding_id(req), attributes, asynchronous))
}

async fn unbind(req: HttpRequest, state: web::Data<BrokerState>) -> HttpResponse {
    state.count(Endpoint::Unbind);
    let reply = unbind_reply(&state, &req);
    state.answer(&req, reply).await
}

fn unbind_reply(state: &BrokerState, req: &HttpRequest) -> Result<Reply, Reply> {
    state.admit(req)?;
    let asynchronous = delete_query(state, req)?;
    Ok(state
        .resources()
        .unbind(instance_id(req), binding_id(req), asynchronous))
}

async fn fetch_binding(req: HttpRequest, state: web::Data<BrokerState>) -> HttpResponse {
    state.count(Endpoint::FetchBinding);
    let reply = fetch_binding_reply(&state, &req);
    state.answer(&req, reply).await
}

fn fetch_binding_reply(state: &BrokerState, req: &HttpRequest) -> Result<Reply, Reply> {
    state.admit(req)?;
    Ok(state.resources().fetch_binding(instance_id(req), binding_id(req)))
}

async fn binding_last_operation(req: HttpRequest, state: web::Data<BrokerState>) -> HttpResponse {
    state.count(Endpoint::BindingLastOperation);
    let reply = binding_last_operation_reply(&state, &req);
    state.answer(&req, reply).await
}

fn binding_last_operation_reply(state: &BrokerState, req: &HttpRequest) -> Result<Reply, Reply> {
    state.admit(req)?;
    let LastOperationQuery { operation } = query(req)?;
    Ok(state
        .resources()
        .binding_last_operation(instance_id(req), binding_id(req), operation.as_deref()))
}

async fn no_such_endpoint() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type(header::ContentType::json())
        .body(r#"{"description":"no such endpoint"}"#)
}

#[cfg(test)]
mod tests;
