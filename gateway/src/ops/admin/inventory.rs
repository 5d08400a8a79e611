//! Inventory on the admin API: the instances and bindings the gateway routes, paged and filtered,
//! and one record with its bindings and its history (the audit log of its id).
//!
//! - `GET /admin/instances?broker&platform&service&plan&state&operation&limit&cursor`
//! - `GET /admin/bindings?instance&broker&platform&service&plan&state&operation&limit&cursor`
//! - `GET /admin/instances/{id}`, `GET /admin/bindings/{id}` (`?history=N`, default 50)
//!
//! Pages are in id order; `next_cursor` (the last id of the page) asks for the next one, and is
//! absent on the last page. `service` and `plan` take a gateway id or a published name (a plan
//! name needs `service`). `state` is `creating`, `ready` or `orphaned`; `operation` the operation
//! in flight (`provision`, `update`, `deprovision`, `bind`, `unbind`) or `none`: `state=ready&
//! operation=deprovision` lists instances stuck in a deletion. Records are shown without their
//! request fingerprints; nothing in them is secret (parameters are never stored).

use actix_web::{HttpRequest, HttpResponse, web};
use osb_routing::CatalogSnapshot;
use osb_routing::audit::AuditQuery;
use osb_routing::store::RecordFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Operator;
use crate::error::ApiError;
use crate::state::AppState;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;

/// The query string of a list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub broker: Option<String>,
    pub platform: Option<String>,
    pub service: Option<String>,
    pub plan: Option<String>,
    pub state: Option<String>,
    pub operation: Option<String>,
    /// Bindings of this instance (bindings only).
    pub instance: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetailQuery {
    history: Option<usize>,
}

/// Parses a query string into `T`.
///
/// # Errors
/// [`ApiError::BadRequest`] for unknown keys or bad values.
pub fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))
}

const STATES: &[&str] = &["creating", "ready", "orphaned"];
const OPERATIONS: &[&str] = &["provision", "update", "deprovision", "bind", "unbind", "none"];

/// The store filter a list query asks for, names resolved to gateway ids.
///
/// # Errors
/// [`ApiError::BadRequest`] for an unknown state or operation.
pub fn filter(q: &ListQuery, snapshot: &CatalogSnapshot) -> Result<RecordFilter, ApiError> {
    if let Some(state) = q.state.as_deref().filter(|s| !STATES.contains(s)) {
        return Err(ApiError::BadRequest(format!(
            "state {state:?} is not one of {}",
            STATES.join(", ")
        )));
    }
    if let Some(operation) = q.operation.as_deref().filter(|o| !OPERATIONS.contains(o)) {
        return Err(ApiError::BadRequest(format!(
            "operation {operation:?} is not one of {}",
            OPERATIONS.join(", ")
        )));
    }
    let service = q.service.as_deref().map(|s| {
        snapshot
            .catalog
            .services
            .iter()
            .find(|svc| svc.name == s)
            .map_or_else(|| s.to_owned(), |svc| svc.id.clone())
    });
    let plan = match (q.plan.as_deref(), service.as_deref()) {
        (Some(plan), Some(service)) => Some(
            snapshot
                .catalog
                .services
                .iter()
                .find(|s| s.id == service)
                .and_then(|s| s.plans.iter().find(|p| p.name == plan))
                .map_or_else(|| plan.to_owned(), |p| p.id.clone()),
        ),
        (plan, _) => plan.map(str::to_owned),
    };
    Ok(RecordFilter {
        broker: q.broker.clone(),
        platform: q.platform.clone(),
        service_id: service,
        plan_id: plan,
        state: q.state.clone(),
        operation: q.operation.clone(),
        instance_id: q.instance.clone(),
    })
}

/// A record as the admin API shows it: its JSON without the fingerprint, with the published
/// service and plan names (when the catalog still has them).
pub fn view(record: &impl serde::Serialize, snapshot: &CatalogSnapshot) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    if let Some(fields) = value.as_object_mut() {
        fields.remove("fingerprint");
        let service_id = fields
            .get("service_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plan_id = fields.get("plan_id").and_then(Value::as_str).unwrap_or_default();
        let service = snapshot.catalog.services.iter().find(|s| s.id == service_id);
        let plan = service.and_then(|s| s.plans.iter().find(|p| p.id == plan_id));
        let held = snapshot.held_plan(plan_id).is_some();
        let service_name = service.map(|s| s.name.clone());
        let plan_name = plan.map(|p| p.name.clone());
        fields.insert("service_name".to_owned(), json!(service_name));
        fields.insert("plan_name".to_owned(), json!(plan_name));
        fields.insert("plan_held".to_owned(), json!(held));
        if let Some(state) = fields.get("state").cloned() {
            // `{"orphaned": {...}}` → "orphaned", with the mitigation beside it.
            if let Some(mitigation) = state.get("orphaned") {
                fields.insert("state".to_owned(), json!("orphaned"));
                fields.insert("mitigation".to_owned(), mitigation.clone());
            }
        }
    }
    value
}

/// `GET /admin/instances`
pub async fn instances(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Operator::of(&req, &state)?;
    let q: ListQuery = query(&req)?;
    if q.instance.is_some() {
        return Err(ApiError::BadRequest(
            "instance filters bindings; use GET /admin/instances/{id}".to_owned(),
        ));
    }
    let snapshot = state.catalog.snapshot();
    let filter = filter(&q, &snapshot)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let records = state
        .registry
        .store()
        .list_instances(&filter, q.cursor.as_deref(), limit)
        .await?;
    Ok(page(&records, limit, |r| &r.instance_id, &snapshot))
}

/// `GET /admin/bindings`
pub async fn bindings(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Operator::of(&req, &state)?;
    let q: ListQuery = query(&req)?;
    let snapshot = state.catalog.snapshot();
    let filter = filter(&q, &snapshot)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let records = state
        .registry
        .store()
        .list_bindings(&filter, q.cursor.as_deref(), limit)
        .await?;
    Ok(page(&records, limit, |r| &r.binding_id, &snapshot))
}

/// One page of a listing: its records as views, and the cursor of the next page when this one is
/// full (a short page is the last).
fn page<R: serde::Serialize>(
    records: &[R],
    limit: usize,
    id: impl Fn(&R) -> &String,
    snapshot: &CatalogSnapshot,
) -> HttpResponse {
    let next = (records.len() >= limit.clamp(1, osb_routing::store::MAX_PAGE))
        .then(|| records.last().map(|r| id(r).clone()))
        .flatten();
    let items: Vec<Value> = records.iter().map(|r| view(r, snapshot)).collect();
    HttpResponse::Ok().json(json!({"items": items, "next_cursor": next}))
}

/// `GET /admin/instances/{id}`: the record, its bindings, its history (newest first).
pub async fn instance(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Operator::of(&req, &state)?;
    let q: DetailQuery = query(&req)?;
    state.audit.settle().await;
    let store = state.registry.store();
    let record = store
        .instance(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance {id} is not in the registry")))?;
    let bindings = store.bindings_of(&id).await?;
    let history = store
        .audit(&AuditQuery {
            instance_id: Some(id.to_string()),
            limit: Some(q.history.unwrap_or(50)),
            ..AuditQuery::default()
        })
        .await?;
    let snapshot = state.catalog.snapshot();
    Ok(HttpResponse::Ok().json(json!({
        "instance": view(&record, &snapshot),
        "bindings": bindings.iter().map(|b| view(b, &snapshot)).collect::<Vec<_>>(),
        "history": history,
    })))
}

/// `GET /admin/bindings/{id}`: the record and its history.
pub async fn binding(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Operator::of(&req, &state)?;
    let q: DetailQuery = query(&req)?;
    state.audit.settle().await;
    let store = state.registry.store();
    let record = store
        .binding(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("binding {id} is not in the registry")))?;
    let history = store
        .audit(&AuditQuery {
            binding_id: Some(id.to_string()),
            limit: Some(q.history.unwrap_or(50)),
            ..AuditQuery::default()
        })
        .await?;
    let snapshot = state.catalog.snapshot();
    Ok(HttpResponse::Ok().json(json!({
        "binding": view(&record, &snapshot),
        "history": history,
    })))
}
