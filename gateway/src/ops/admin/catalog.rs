//! The served catalog on the admin API: what the catalog guard holds, the dry-run diff of a
//! catalog change, and the operator's confirmation of a held removal.
//!
//! - `GET /admin/catalog`: counts, availability, the held plans (broker, service, plan, live
//!   instances, since when) and the confirmed removals.
//! - `GET /admin/catalog/diff`: fetches every broker's catalog now (nothing is applied or saved),
//!   merges them as a refresh would, and compares with the served catalog.
//! - `POST /admin/catalog/diff` with a merged catalog (`{"services": […]}`, for example what
//!   `osb-gateway catalog --config NEW` prints): what serving it instead would change. This is how
//!   a configuration change is dry-run (`osb-gateway admin catalog diff --config NEW`).
//! - `POST /admin/catalog/confirm` `{"ids": […] | "all": true, "reason": "…"}`: held plans (by plan
//!   or service id) leave the served catalog now. Recorded in the audit log, one record per plan.
//!
//! Each change of a diff says how many live instances its old id has and whether the guard would
//! hold it (see `osb_routing::catalog::diff`).

use actix_web::{HttpRequest, HttpResponse, web};
use osb_routing::catalog::{CatalogChange, HeldPlan, annotate, diff, summarize};
use osb_routing::{Catalog, CatalogSnapshot};
use serde::Deserialize;
use serde_json::json;

use super::{Operator, json_body};
use crate::edge::parse::RequestBody;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /admin/catalog`
pub async fn served(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Operator::of(&req, &state)?;
    let snapshot = state.catalog.snapshot();
    let plans: usize = snapshot.catalog.services.iter().map(|s| s.plans.len()).sum();
    let mut confirmed: Vec<String> = state.catalog.confirmed().into_iter().collect();
    confirmed.sort();
    Ok(HttpResponse::Ok().json(json!({
        "generation": snapshot.generation,
        "etag": snapshot.etag,
        "availability": snapshot.availability,
        "services": snapshot.catalog.services.len(),
        "plans": plans,
        "held": *snapshot.held,
        "confirmed": confirmed,
    })))
}

/// The changes from the served catalog to `candidate`, annotated with live instances.
///
/// # Errors
/// A store failure (counting live instances).
pub async fn changes(
    state: &AppState,
    snapshot: &CatalogSnapshot,
    candidate: &Catalog,
) -> Result<Vec<CatalogChange>, ApiError> {
    let mut changes = diff(&snapshot.catalog, candidate);
    let live = state.catalog.live_counts().await?;
    annotate(&mut changes, &live, &state.catalog.confirmed());
    Ok(changes)
}

/// `GET /admin/catalog/diff`: the upstreams' catalogs now against the served one.
pub async fn diff_upstream(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Operator::of(&req, &state)?;
    let (candidate, errors) = state.catalog.candidate().await;
    let snapshot = state.catalog.snapshot();
    let changes = changes(&state, &snapshot, &candidate).await?;
    let errors: Vec<_> = errors
        .into_iter()
        .map(|(broker, error)| json!({"broker": broker, "error": error}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "against": "upstream",
        "errors": errors,
        "summary": summarize(&changes),
        "changes": changes,
    })))
}

/// `POST /admin/catalog/diff`: a given merged catalog against the served one.
pub async fn diff_given(
    req: HttpRequest,
    state: web::Data<AppState>,
    RequestBody(body): RequestBody,
) -> Result<HttpResponse, ApiError> {
    Operator::of(&req, &state)?;
    let candidate: Catalog = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("expected a merged catalog {{\"services\": [...]}}: {e}"))
    })?;
    let snapshot = state.catalog.snapshot();
    let changes = changes(&state, &snapshot, &candidate).await?;
    Ok(HttpResponse::Ok().json(json!({
        "against": "given",
        "errors": [],
        "summary": summarize(&changes),
        "changes": changes,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    /// Plan or service ids of held plans.
    #[serde(default)]
    ids: Vec<String>,
    /// Every held plan.
    #[serde(default)]
    all: bool,
    reason: Option<String>,
}

/// `POST /admin/catalog/confirm`
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    RequestBody(body): RequestBody,
) -> Result<HttpResponse, ApiError> {
    let operator = Operator::acting(&req, &state)?;
    let request: ConfirmRequest = json_body(&body)?;
    let reason = request
        .reason
        .as_deref()
        .map(crate::telemetry::audit::reason)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::BadRequest("a reason is required".to_owned()))?;
    let ids = match (request.all, request.ids.is_empty()) {
        (true, true) => None,
        (false, false) => Some(request.ids),
        _ => {
            return Err(ApiError::BadRequest(
                "give either ids (held plan or service ids) or all: true".to_owned(),
            ));
        }
    };
    let released = release_held(&state, &operator, ids.as_deref(), &reason).await?;
    Ok(HttpResponse::Ok().json(json!({"released": released})))
}

/// Confirms the removal of held plans as `operator` (`ids`: plan or service ids; `None`: every held
/// plan): they leave the served catalog now, one audit record per plan (the admin API and the
/// console).
///
/// # Errors
/// [`ApiError::NotFound`] when `ids` name no held plan; a store failure.
pub async fn release_held(
    state: &AppState,
    operator: &Operator,
    ids: Option<&[String]>,
    reason: &str,
) -> Result<Vec<HeldPlan>, ApiError> {
    let started = std::time::Instant::now();
    let released = state.catalog.confirm_removal(ids).await?;
    if released.is_empty() && ids.is_some() {
        return Err(ApiError::NotFound(
            "no held plan has these ids (see GET /admin/catalog)".to_owned(),
        ));
    }
    for plan in &released {
        let mut record = operator.record("catalog_confirm", 200, started);
        record.broker = Some(plan.broker.clone());
        record.service_id = Some(plan.service_id.clone());
        record.plan_id = Some(plan.plan_id.clone());
        record.reason = Some(format!(
            "{reason} (released {}/{} with {} live instances)",
            plan.service_name, plan.plan_name, plan.instances
        ));
        state.audit.record(record).await;
    }
    Ok(released)
}
