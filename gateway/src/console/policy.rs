//! The policy (`/ui/policy`): the file, the generation in force, its reloads and the problems of the
//! last rejected file; and an explain form (platform, operation, service, plan, instance, context,
//! parameters → the decision and the rules that made it), answered by the same [`explain`] as
//! `POST /admin/explain`. The form posts (parameters may be secrets: they stay out of URLs and
//! logs) and changes nothing.

use actix_web::{HttpRequest, web};
use askama::Template;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Html, PageError, Shell, Viewer};
use crate::edge::parse::RequestBody;
use crate::error::ApiError;
use crate::ops::explain::{ExplainReport, ExplainRequest, explain, with_quota_usage};
use crate::ops::policy_file::PolicyStatus;
use crate::state::AppState;

/// The most of the policy file the page shows.
const MAX_SHOWN: u64 = 256 * 1024;

/// What the explain form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainForm {
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub operation: String,
    /// A gateway service id or published name.
    #[serde(default)]
    pub service: String,
    /// A gateway plan id or name (of `service`).
    #[serde(default)]
    pub plan: String,
    #[serde(default)]
    pub instance_id: String,
    /// JSON object.
    #[serde(default)]
    pub context: String,
    /// JSON object.
    #[serde(default)]
    pub parameters: String,
}

/// The explain form's answer, in words.
#[derive(Debug)]
pub struct Outcome {
    pub allowed: bool,
    /// Where it goes (allowed): broker, service and plan ids.
    pub placed: Option<String>,
    /// The status and description the platform would get (refused).
    pub refusal: Option<String>,
    pub rules: Vec<String>,
    pub parameters_changed: Vec<String>,
}

impl From<ExplainReport> for Outcome {
    fn from(report: ExplainReport) -> Self {
        let refusal = report.refusal.as_ref().map(|r| {
            format!(
                "{} {}{}",
                r.get("status").and_then(Value::as_u64).unwrap_or(0),
                r.get("error")
                    .and_then(Value::as_str)
                    .map(|e| format!("{e}: "))
                    .unwrap_or_default(),
                r.get("description").and_then(Value::as_str).unwrap_or_default()
            )
        });
        let quotas = report.quotas.iter().map(|q| {
            let bucket = if q.bucket.is_empty() {
                String::new()
            } else {
                format!(" for {}", q.bucket)
            };
            format!(
                "quota {:?}{bucket}: {} of {} {} in use",
                q.quota, q.usage, q.limit, q.counted
            )
        });
        let quotas: Vec<String> = quotas.collect();
        let mut outcome = match report.decision {
            Some(d) => Outcome {
                allowed: report.allowed,
                placed: Some(format!(
                    "broker {}, upstream service {}, plan {}",
                    d.broker, d.upstream_service_id, d.upstream_plan_id
                )),
                refusal,
                rules: d.explanation,
                parameters_changed: d.parameters_changed,
            },
            None => Outcome {
                allowed: report.allowed,
                placed: None,
                refusal,
                rules: Vec::new(),
                parameters_changed: Vec::new(),
            },
        };
        outcome.rules.extend(quotas);
        outcome
    }
}

#[derive(Template)]
#[template(path = "console/policy.html")]
struct PolicyPage {
    shell: Shell,
    status: PolicyStatus,
    /// The file's text as on disk now (`None`: no policy file, or unreadable: `file_note` says).
    file: Option<String>,
    file_note: Option<String>,
    form: ExplainForm,
    platforms: Vec<String>,
    services: Vec<String>,
    outcome: Option<Outcome>,
    error: Option<String>,
}

fn read_file(status: &PolicyStatus) -> (Option<String>, Option<String>) {
    let Some(path) = &status.path else {
        return (
            None,
            Some("No policy file is configured: every plan is visible, nothing is denied.".to_owned()),
        );
    };
    let read = std::fs::File::open(path).and_then(|file| {
        use std::io::Read;
        let mut bytes = Vec::new();
        file.take(MAX_SHOWN + 1).read_to_end(&mut bytes)?;
        Ok(bytes)
    });
    match read {
        Ok(mut bytes) => {
            let cut = bytes.len() as u64 > MAX_SHOWN;
            bytes.truncate(usize::try_from(MAX_SHOWN).unwrap_or(usize::MAX));
            let note = cut.then(|| format!("Only the first {} KiB of the file are shown.", MAX_SHOWN / 1024));
            (Some(String::from_utf8_lossy(&bytes).into_owned()), note)
        }
        Err(e) => (None, Some(format!("{path} cannot be read now: {e}"))),
    }
}

fn page_of(
    viewer: &Viewer,
    state: &AppState,
    form: ExplainForm,
    answer: Option<Result<Outcome, String>>,
) -> PolicyPage {
    let status = state.policy_file.status();
    let (file, file_note) = read_file(&status);
    let snapshot = state.catalog.snapshot();
    let (outcome, error) = match answer {
        Some(Ok(outcome)) => (Some(outcome), None),
        Some(Err(error)) => (None, Some(error)),
        None => (None, None),
    };
    PolicyPage {
        shell: Shell::new(viewer, "policy", "Policy"),
        status,
        file,
        file_note,
        form,
        platforms: state.platforms.current().iter().map(|p| p.name.clone()).collect(),
        services: snapshot.catalog.services.iter().map(|s| s.name.clone()).collect(),
        outcome,
        error,
    }
}

/// `GET /ui/policy`
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> Result<Html, PageError> {
    let viewer = Viewer::of(&req, &state)?;
    let form = ExplainForm {
        operation: "provision".to_owned(),
        ..ExplainForm::default()
    };
    Html::of(&page_of(&viewer, &state, form, None))
}

/// `POST /ui/policy`: the page with the explain form's answer.
pub async fn explain_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    RequestBody(body): RequestBody,
) -> Result<Html, PageError> {
    let viewer = Viewer::of(&req, &state)?;
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest("the form is not UTF-8".to_owned()))?;
    let form: ExplainForm = web::Query::<ExplainForm>::from_query(text)
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadRequest(format!("invalid form: {e}")))?;
    let answer = answer(&state, &form).await;
    Html::of(&page_of(&viewer, &state, form, Some(answer)))
}

/// Runs the form through [`explain`]; a form that cannot make a request is an error in words.
async fn answer(state: &AppState, form: &ExplainForm) -> Result<Outcome, String> {
    let object = |name: &str, text: &str| -> Result<Option<Value>, String> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => Ok(Some(value)),
            Ok(_) => Err(format!("{name} must be a JSON object")),
            Err(e) => Err(format!("{name} is not JSON: {e}")),
        }
    };
    let snapshot = state.catalog.snapshot();
    let policy = state.policies.current();
    let service = snapshot
        .catalog
        .services
        .iter()
        .chain(policy.offerings.iter())
        .find(|s| s.id == form.service || s.name == form.service);
    let service_id = service.map_or_else(|| form.service.clone(), |s| s.id.clone());
    let plan_id = service
        .and_then(|s| s.plans.iter().find(|p| p.id == form.plan || p.name == form.plan))
        .map_or_else(|| form.plan.clone(), |p| p.id.clone());
    let mut body = Map::new();
    body.insert("service_id".to_owned(), Value::String(service_id));
    if !plan_id.is_empty() {
        body.insert("plan_id".to_owned(), Value::String(plan_id.clone()));
    }
    if let Some(context) = object("context", &form.context)? {
        body.insert("context".to_owned(), context);
    }
    if let Some(parameters) = object("parameters", &form.parameters)? {
        body.insert("parameters".to_owned(), parameters);
    }
    let instance_id = Some(form.instance_id.trim().to_owned()).filter(|i| !i.is_empty());
    let request = ExplainRequest {
        platform: form.platform.clone(),
        operation: form.operation.clone(),
        instance_id: instance_id.clone(),
        body: Some(Value::Object(body)),
        plan_id: Some(plan_id).filter(|p| !p.is_empty()),
    };
    let instance = match &instance_id {
        Some(id) if form.operation != "provision" => state
            .registry
            .instance_for(id, &form.platform)
            .await
            .ok()
            .flatten(),
        _ => None,
    };
    let report = state.with_decider(|d| explain(d, &request, instance.as_ref()));
    Ok(Outcome::from(
        with_quota_usage(report, state.registry.store().as_ref()).await,
    ))
}
