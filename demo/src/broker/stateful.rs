//! [`Answers::Stateful`](super::Answers::Stateful): every instance and binding call checked and
//! applied to the broker's memory, as a real broker would.
//!
//! Query and body are checked here (400, with the service and plan checked against the catalog:
//! [`PlanIndex`]), then one short critical section in `resources` changes the state and says what
//! to answer. [`announce_fetching`] is what the served catalog says this broker implements.

use std::collections::{HashMap, HashSet};

use actix_web::{HttpRequest, web};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::resources::{Attributes, Reply, Update};
use super::{BrokerState, Call, Endpoint};

// === the catalog ===

/// Which plans each service of the catalog has.
#[derive(Debug, Default)]
pub(super) struct PlanIndex(HashMap<String, HashSet<String>>);

impl PlanIndex {
    /// Reads only the ids; everything else in the catalog is ignored.
    pub fn from_catalog(catalog: &[u8]) -> Self {
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

    pub fn is_empty(&self) -> bool {
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
pub(super) fn announce_fetching(catalog: Bytes) -> Bytes {
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

// === calls ===

/// The answer to one instance or binding call, auth and version already admitted. Each `*_reply`
/// lists the steps, where `?` is the only control flow and the lock is taken in the last step.
pub(super) fn reply(
    state: &BrokerState,
    call: &Call<'_>,
    req: &HttpRequest,
    bytes: &[u8],
) -> Result<Reply, Reply> {
    let (iid, bid) = (call.instance_id.as_ref(), call.binding_id.as_ref());
    match call.endpoint {
        Endpoint::Provision => provision_reply(state, req, iid, bytes),
        Endpoint::Update => update_reply(state, req, iid, bytes),
        Endpoint::Deprovision => deprovision_reply(state, req, iid),
        Endpoint::FetchInstance => Ok(state.resources().fetch_instance(iid)),
        Endpoint::InstanceLastOperation => instance_last_operation_reply(state, req, iid),
        Endpoint::Bind => bind_reply(state, req, iid, bid, bytes),
        Endpoint::Unbind => unbind_reply(state, req, iid, bid),
        Endpoint::FetchBinding => Ok(state.resources().fetch_binding(iid, bid)),
        Endpoint::BindingLastOperation => binding_last_operation_reply(state, req, iid, bid),
        Endpoint::Catalog => Err(Reply::bad_request(
            "the catalog is not an instance call".to_owned(),
        )),
    }
}

fn provision_reply(state: &BrokerState, req: &HttpRequest, iid: &str, bytes: &[u8]) -> Result<Reply, Reply> {
    let AsyncQuery { accepts_incomplete } = query(req)?;
    let attributes = attributes(state, bytes)?;
    let asynchronous = asynchronous(state, accepts_incomplete);
    Ok(state.resources().provision(iid, attributes, asynchronous))
}

fn update_reply(state: &BrokerState, req: &HttpRequest, iid: &str, bytes: &[u8]) -> Result<Reply, Reply> {
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
    Ok(state.resources().update(iid, update, asynchronous))
}

fn deprovision_reply(state: &BrokerState, req: &HttpRequest, iid: &str) -> Result<Reply, Reply> {
    let asynchronous = delete_query(state, req)?;
    Ok(state.resources().deprovision(iid, asynchronous))
}

fn instance_last_operation_reply(state: &BrokerState, req: &HttpRequest, iid: &str) -> Result<Reply, Reply> {
    let LastOperationQuery { operation } = query(req)?;
    Ok(state
        .resources()
        .instance_last_operation(iid, operation.as_deref()))
}

fn bind_reply(
    state: &BrokerState,
    req: &HttpRequest,
    iid: &str,
    bid: &str,
    bytes: &[u8],
) -> Result<Reply, Reply> {
    let AsyncQuery { accepts_incomplete } = query(req)?;
    let attributes = attributes(state, bytes)?;
    let asynchronous = asynchronous(state, accepts_incomplete);
    Ok(state.resources().bind(iid, bid, attributes, asynchronous))
}

fn unbind_reply(state: &BrokerState, req: &HttpRequest, iid: &str, bid: &str) -> Result<Reply, Reply> {
    let asynchronous = delete_query(state, req)?;
    Ok(state.resources().unbind(iid, bid, asynchronous))
}

fn binding_last_operation_reply(
    state: &BrokerState,
    req: &HttpRequest,
    iid: &str,
    bid: &str,
) -> Result<Reply, Reply> {
    let LastOperationQuery { operation } = query(req)?;
    Ok(state
        .resources()
        .binding_last_operation(iid, bid, operation.as_deref()))
}
