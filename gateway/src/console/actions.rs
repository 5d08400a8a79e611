//! The operators' levers in the console: abandon an instance or a binding, adopt an instance, and
//! confirm the removal of a held plan. Each GET shows what will happen, upstream included, and a
//! form; its POST acts through the same functions as the admin API (`ops::admin::operations`,
//! `ops::admin::catalog`), is audited the same way, and redirects (303) to where the outcome shows.
//!
//! Viewers are shown no form and get 403 if they post anyway; a post from another site gets 403
//! whoever sends it ([`Operator::acting`]).

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::records::{RecordRow, binding_or_404, instance_or_404};
use super::{Html, PageError, Shell, Viewer, encode, see_other};
use crate::edge::parse::RequestBody;
use crate::error::ApiError;
use crate::ops::admin::Operator;
use crate::ops::admin::catalog::release_held;
use crate::ops::admin::operations::{
    AdoptInstance, adopt_one, forget_binding, forget_instance, required_reason,
};
use crate::state::AppState;

/// Parses a form body (`application/x-www-form-urlencoded`) into `T`.
fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("the form is not UTF-8".to_owned()))?;
    web::Query::<T>::from_query(text)
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadRequest(format!("invalid form: {e}")))
}

/// A checkbox: present (any value) when ticked.
fn ticked(value: Option<&str>) -> bool {
    value.is_some()
}

#[derive(Template)]
#[template(path = "console/abandon.html")]
struct AbandonPage {
    shell: Shell,
    /// `instance` or `binding`.
    kind: &'static str,
    record: RecordRow,
    bindings: usize,
    action: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AbandonForm {
    reason: Option<String>,
    /// Ask the upstream to delete it first (one attempt).
    upstream: Option<String>,
}

/// `GET /ui/instances/{id}/abandon`: what abandoning it does, and the form (operators only).
pub async fn abandon_instance_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<Html, PageError> {
    let viewer = acting_viewer(&req, &state)?;
    let record = instance_or_404(&state, &id).await?;
    let bindings = state.registry.store().bindings_of(&id).await?.len();
    let snapshot = state.catalog.snapshot();
    Html::of(&AbandonPage {
        shell: Shell::new(&viewer, "instances", format!("Abandon instance {id}")),
        kind: "instance",
        record: RecordRow::instance(&record, &snapshot),
        bindings,
        action: format!("/ui/instances/{}/abandon", encode(&id)),
    })
}

/// `POST /ui/instances/{id}/abandon`
pub async fn abandon_instance(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    RequestBody(body): RequestBody,
) -> Result<HttpResponse, PageError> {
    let operator = Operator::acting(&req, &state)?;
    let form: AbandonForm = form(&body)?;
    let reason = required_reason(form.reason.as_deref())?;
    let upstream = ticked(form.upstream.as_deref());
    let abandoned = forget_instance(&state, &operator, &id, &reason, upstream).await?;
    let notice = format!(
        "Instance {id} abandoned: {}; {} binding(s) removed with it.",
        abandoned.upstream.words(),
        abandoned.bindings_removed.len()
    );
    Ok(see_other(
        &format!("/ui/audit?instance_id={}", encode(&id)),
        &notice,
    ))
}

/// `GET /ui/bindings/{id}/abandon`
pub async fn abandon_binding_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<Html, PageError> {
    let viewer = acting_viewer(&req, &state)?;
    let record = binding_or_404(&state, &id).await?;
    let snapshot = state.catalog.snapshot();
    Html::of(&AbandonPage {
        shell: Shell::new(&viewer, "bindings", format!("Abandon binding {id}")),
        kind: "binding",
        record: RecordRow::binding(&record, &snapshot),
        bindings: 0,
        action: format!("/ui/bindings/{}/abandon", encode(&id)),
    })
}

/// `POST /ui/bindings/{id}/abandon`
pub async fn abandon_binding(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    RequestBody(body): RequestBody,
) -> Result<HttpResponse, PageError> {
    let operator = Operator::acting(&req, &state)?;
    let form: AbandonForm = form(&body)?;
    let reason = required_reason(form.reason.as_deref())?;
    let abandoned = forget_binding(&state, &operator, &id, &reason, ticked(form.upstream.as_deref())).await?;
    let notice = format!("Binding {id} abandoned: {}.", abandoned.upstream.words());
    Ok(see_other(
        &format!("/ui/audit?binding_id={}", encode(&id)),
        &notice,
    ))
}

/// The viewer of a page that leads to an action: an operator (a viewer gets 403).
fn acting_viewer(req: &HttpRequest, state: &AppState) -> Result<Viewer, PageError> {
    let viewer = Viewer::of(req, state)?;
    if !viewer.can_act() {
        return Err(ApiError::AdminForbidden {
            user: viewer.operator.actor,
            role: viewer.operator.role.as_str(),
        }
        .into());
    }
    Ok(viewer)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdoptForm {
    #[serde(default)]
    instance_id: String,
    #[serde(default)]
    platform: String,
    #[serde(default)]
    broker: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    service: String,
    reason: Option<String>,
    verify: Option<String>,
}

#[derive(Template)]
#[template(path = "console/adopt.html")]
struct AdoptPage {
    shell: Shell,
    form: AdoptForm,
    verify: bool,
    platforms: Vec<String>,
    brokers: Vec<String>,
    error: Option<String>,
}

impl AdoptPage {
    fn new(viewer: &Viewer, state: &AppState, form: AdoptForm, error: Option<String>) -> AdoptPage {
        AdoptPage {
            shell: Shell::new(viewer, "instances", "Adopt an instance"),
            verify: form.verify.is_some() || error.is_none(),
            form,
            platforms: state.platforms.current().iter().map(|p| p.name.clone()).collect(),
            brokers: state
                .catalog
                .snapshot()
                .brokers
                .iter()
                .map(|b| b.name.clone())
                .collect(),
            error,
        }
    }
}

/// `GET /ui/adopt`
pub async fn adopt_form(req: HttpRequest, state: web::Data<AppState>) -> Result<Html, PageError> {
    let viewer = acting_viewer(&req, &state)?;
    Html::of(&AdoptPage::new(&viewer, &state, AdoptForm::default(), None))
}

/// `POST /ui/adopt`: adopted (or already recorded) → the instance's page; refused → the form
/// again with why (422).
pub async fn adopt(
    req: HttpRequest,
    state: web::Data<AppState>,
    RequestBody(body): RequestBody,
) -> Result<HttpResponse, PageError> {
    let operator = Operator::acting(&req, &state)?;
    let form: AdoptForm = form(&body)?;
    let given = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
    let item = AdoptInstance {
        instance_id: form.instance_id.trim().to_owned(),
        platform: form.platform.clone(),
        plan: form.plan.trim().to_owned(),
        broker: given(&form.broker),
        service: given(&form.service),
        context: None,
        parameters: None,
    };
    let reason = form.reason.as_deref().map(crate::telemetry::audit::reason);
    let result = adopt_one(
        &state,
        &operator,
        &item,
        reason.as_deref(),
        ticked(form.verify.as_deref()),
    )
    .await;
    if result.result == "failed" {
        let viewer = Viewer { operator };
        let page = AdoptPage::new(&viewer, &state, form, result.error);
        return Ok(Html::of(&page)?.into_response(&req, actix_web::http::StatusCode::UNPROCESSABLE_ENTITY));
    }
    let notice = format!(
        "Instance {} {} for platform {}{}.",
        result.instance_id,
        result.result,
        item.platform,
        if result.verified {
            ", verified upstream"
        } else {
            ""
        }
    );
    Ok(see_other(
        &format!("/ui/instances/{}", encode(&result.instance_id)),
        &notice,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmQuery {
    id: String,
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
struct ConfirmPage {
    shell: Shell,
    plan: osb_routing::catalog::HeldPlan,
    since: String,
}

/// `GET /ui/catalog/confirm?id=PLAN_ID`: what confirming the removal of a held plan does.
pub async fn confirm_form(req: HttpRequest, state: web::Data<AppState>) -> Result<Html, PageError> {
    let viewer = acting_viewer(&req, &state)?;
    let q: ConfirmQuery = crate::ops::admin::inventory::query(&req)?;
    let snapshot = state.catalog.snapshot();
    let plan = snapshot
        .held_plan(&q.id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("plan {} is not held", q.id)))?;
    Html::of(&ConfirmPage {
        shell: Shell::new(
            &viewer,
            "catalog",
            format!("Confirm the removal of {}", plan.plan_name),
        ),
        since: super::when(plan.since_ms),
        plan,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmForm {
    id: String,
    reason: Option<String>,
}

/// `POST /ui/catalog/confirm`
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    RequestBody(body): RequestBody,
) -> Result<HttpResponse, PageError> {
    let operator = Operator::acting(&req, &state)?;
    let form: ConfirmForm = form(&body)?;
    let reason = form
        .reason
        .as_deref()
        .map(crate::telemetry::audit::reason)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::BadRequest("a reason is required".to_owned()))?;
    let released = release_held(&state, &operator, Some(std::slice::from_ref(&form.id)), &reason).await?;
    let names: Vec<String> = released
        .iter()
        .map(|p| format!("{}/{}", p.service_name, p.plan_name))
        .collect();
    Ok(see_other(
        "/ui/catalog",
        &format!("Removal confirmed: {} left the served catalog.", names.join(", ")),
    ))
}
