//! Instances and bindings (`/ui/instances`, `/ui/bindings`): filtered by broker, platform, service,
//! plan, state and operation in flight, paged in id order as on the admin API, each page examining
//! at most [`SCAN_BUDGET`] records (a rare filter says so and goes on next page); and one record
//! (`/ui/instances/{id}`, `/ui/bindings/{id}`) with its bindings, its history from the audit log,
//! and, for an operator, the way to abandon it.

use actix_web::{HttpRequest, web};
use askama::Template;
use osb_routing::CatalogSnapshot;
use osb_routing::audit::AuditQuery;
use osb_routing::record::{BindingRecord, InstanceRecord, Operation, ResourceState};

use super::audit::{AuditRow, history};
use super::{Html, PageError, Shell, Viewer, ago, encode, when};
use crate::error::ApiError;
use crate::ops::admin::inventory::{DEFAULT_LIMIT, ListQuery, filter, query};
use crate::state::AppState;

/// History rows on a record's page.
const HISTORY: usize = 50;
/// The most records one list page examines: a filter that selects few records answers in bounded
/// time, and the page offers to go on.
const SCAN_BUDGET: usize = 5_000;

/// A record as a row of a list, or the head of its page.
#[derive(Debug)]
pub struct RecordRow {
    pub id: String,
    /// The binding's instance.
    pub instance_id: Option<String>,
    pub platform: String,
    pub broker: String,
    pub service: String,
    pub plan: String,
    pub service_id: String,
    pub plan_id: String,
    pub upstream_service_id: String,
    pub upstream_plan_id: String,
    pub plan_held: bool,
    pub state: &'static str,
    /// Why it is orphaned, and how the clean-up goes.
    pub mitigation: Option<String>,
    /// The operation in flight: kind and phase, since when.
    pub operation: Option<String>,
    pub created: String,
    pub updated: String,
    pub updated_ago: String,
    pub version: u64,
    /// The platform's context (instances), as JSON text.
    pub context: Option<String>,
}

/// A published name of a gateway service or plan id (the id when the catalog lost it).
fn names(snapshot: &CatalogSnapshot, service_id: &str, plan_id: &str) -> (String, String) {
    let service = snapshot.catalog.services.iter().find(|s| s.id == service_id);
    let plan = service.and_then(|s| s.plans.iter().find(|p| p.id == plan_id));
    (
        service.map_or_else(|| service_id.to_owned(), |s| s.name.clone()),
        plan.map_or_else(|| plan_id.to_owned(), |p| p.name.clone()),
    )
}

fn mitigation(state: &ResourceState) -> Option<String> {
    match state {
        ResourceState::Orphaned(m) => Some(format!(
            "{}; {} delete attempt(s){}",
            m.reason,
            m.attempts,
            m.last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        )),
        _ => None,
    }
}

fn operation(op: Option<&Operation>) -> Option<String> {
    op.map(|op| {
        format!(
            "{} ({}), started {} ago",
            op.kind.as_str(),
            match op.phase {
                osb_routing::record::Phase::Sent => "sent",
                osb_routing::record::Phase::Accepted => "accepted, polling",
            },
            ago(op.started_ms)
        )
    })
}

/// What a row shows of either kind of record.
struct Parts<'a> {
    id: &'a str,
    instance_id: Option<&'a str>,
    platform: &'a str,
    broker: &'a str,
    service_id: &'a str,
    plan_id: &'a str,
    upstream_service_id: &'a str,
    upstream_plan_id: &'a str,
    state: &'a ResourceState,
    operation: Option<&'a Operation>,
    created_ms: u64,
    updated_ms: u64,
    version: u64,
    context: Option<&'a serde_json::Value>,
}

impl RecordRow {
    pub fn instance(r: &InstanceRecord, snapshot: &CatalogSnapshot) -> RecordRow {
        Self::of(
            &Parts {
                id: &r.instance_id,
                instance_id: None,
                platform: &r.platform,
                broker: &r.broker,
                service_id: &r.service_id,
                plan_id: &r.plan_id,
                upstream_service_id: &r.upstream_service_id,
                upstream_plan_id: &r.upstream_plan_id,
                state: &r.state,
                operation: r.operation.as_ref(),
                created_ms: r.created_ms,
                updated_ms: r.updated_ms,
                version: r.version,
                context: r.context.as_ref(),
            },
            snapshot,
        )
    }

    pub fn binding(r: &BindingRecord, snapshot: &CatalogSnapshot) -> RecordRow {
        Self::of(
            &Parts {
                id: &r.binding_id,
                instance_id: Some(&r.instance_id),
                platform: &r.platform,
                broker: &r.broker,
                service_id: &r.service_id,
                plan_id: &r.plan_id,
                upstream_service_id: &r.upstream_service_id,
                upstream_plan_id: &r.upstream_plan_id,
                state: &r.state,
                operation: r.operation.as_ref(),
                created_ms: r.created_ms,
                updated_ms: r.updated_ms,
                version: r.version,
                context: None,
            },
            snapshot,
        )
    }

    fn of(r: &Parts<'_>, snapshot: &CatalogSnapshot) -> RecordRow {
        let (service, plan) = names(snapshot, r.service_id, r.plan_id);
        RecordRow {
            id: r.id.to_owned(),
            instance_id: r.instance_id.map(str::to_owned),
            platform: r.platform.to_owned(),
            broker: r.broker.to_owned(),
            service,
            plan,
            service_id: r.service_id.to_owned(),
            plan_id: r.plan_id.to_owned(),
            upstream_service_id: r.upstream_service_id.to_owned(),
            upstream_plan_id: r.upstream_plan_id.to_owned(),
            plan_held: snapshot.held_plan(r.plan_id).is_some(),
            state: r.state.name(),
            mitigation: mitigation(r.state),
            operation: operation(r.operation),
            created: when(r.created_ms),
            updated: when(r.updated_ms),
            updated_ago: ago(r.updated_ms),
            version: r.version,
            context: r.context.and_then(|c| serde_json::to_string_pretty(c).ok()),
        }
    }
}

/// Instance `id` from the registry, or a 404 page.
///
/// # Errors
/// [`ApiError::NotFound`]; a store failure.
pub async fn instance_or_404(state: &AppState, id: &str) -> Result<InstanceRecord, PageError> {
    Ok(state
        .registry
        .store()
        .instance(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance {id} is not in the registry")))?)
}

/// Binding `id` from the registry, or a 404 page.
///
/// # Errors
/// [`ApiError::NotFound`]; a store failure.
pub async fn binding_or_404(state: &AppState, id: &str) -> Result<BindingRecord, PageError> {
    Ok(state
        .registry
        .store()
        .binding(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("binding {id} is not in the registry")))?)
}

/// The filter form's values and choices.
#[derive(Debug, Default)]
pub struct Filters {
    pub broker: String,
    pub platform: String,
    pub service: String,
    pub plan: String,
    pub state: String,
    pub operation: String,
    pub instance: String,
    pub brokers: Vec<String>,
    pub platforms: Vec<String>,
    pub services: Vec<String>,
    /// The filters as a query string (for the next page's link).
    pub query: String,
}

impl Filters {
    fn of(q: &ListQuery, state: &AppState, snapshot: &CatalogSnapshot) -> Filters {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let query = [
            ("broker", &q.broker),
            ("platform", &q.platform),
            ("service", &q.service),
            ("plan", &q.plan),
            ("state", &q.state),
            ("operation", &q.operation),
            ("instance", &q.instance),
        ]
        .iter()
        .filter_map(|(key, value)| value.as_deref().map(|v| format!("{key}={}", encode(v))))
        .collect::<Vec<_>>()
        .join("&");
        Filters {
            broker: text(&q.broker),
            platform: text(&q.platform),
            service: text(&q.service),
            plan: text(&q.plan),
            state: text(&q.state),
            operation: text(&q.operation),
            instance: text(&q.instance),
            brokers: snapshot.brokers.iter().map(|b| b.name.clone()).collect(),
            platforms: state.platforms.current().iter().map(|p| p.name.clone()).collect(),
            services: snapshot.catalog.services.iter().map(|s| s.name.clone()).collect(),
            query,
        }
    }
}

/// A list query from the form: empty fields are no filter.
fn list_query(req: &HttpRequest) -> Result<ListQuery, ApiError> {
    let mut q: ListQuery = query(req)?;
    for field in [
        &mut q.broker,
        &mut q.platform,
        &mut q.service,
        &mut q.plan,
        &mut q.state,
        &mut q.operation,
        &mut q.instance,
        &mut q.cursor,
    ] {
        if field.as_deref().is_some_and(|v| v.trim().is_empty()) {
            *field = None;
        }
    }
    Ok(q)
}

#[derive(Template)]
#[template(path = "console/records.html")]
struct ListPage {
    shell: Shell,
    /// `instances` or `bindings`.
    kind: &'static str,
    filters: Filters,
    rows: Vec<RecordRow>,
    next: Option<String>,
    /// The page stopped at the scan budget before it filled.
    partial: bool,
    budget: usize,
    can_act: bool,
}

/// `GET /ui/instances`
pub async fn instances(req: HttpRequest, state: web::Data<AppState>) -> Result<Html, PageError> {
    list(req, state, "instances").await
}

/// `GET /ui/bindings`
pub async fn bindings(req: HttpRequest, state: web::Data<AppState>) -> Result<Html, PageError> {
    list(req, state, "bindings").await
}

/// A page of `kind` (`instances` or `bindings`) as the query string asks.
async fn list(req: HttpRequest, state: web::Data<AppState>, kind: &'static str) -> Result<Html, PageError> {
    let viewer = Viewer::of(&req, &state)?;
    let q = list_query(&req)?;
    if kind == "instances" && q.instance.is_some() {
        return Err(ApiError::BadRequest("instance filters bindings".to_owned()).into());
    }
    let snapshot = state.catalog.snapshot();
    let filter = filter(&q, &snapshot)?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, osb_routing::store::MAX_PAGE);
    let store = state.registry.store();
    let after = q.cursor.as_deref();
    let (rows, resume) = if kind == "instances" {
        let scanned = store.scan_instances(&filter, after, limit, SCAN_BUDGET).await?;
        let rows: Vec<RecordRow> = scanned
            .items
            .iter()
            .map(|r| RecordRow::instance(r, &snapshot))
            .collect();
        (rows, scanned.resume)
    } else {
        let scanned = store.scan_bindings(&filter, after, limit, SCAN_BUDGET).await?;
        let rows: Vec<RecordRow> = scanned
            .items
            .iter()
            .map(|r| RecordRow::binding(r, &snapshot))
            .collect();
        (rows, scanned.resume)
    };
    let page = ListPage {
        shell: Shell::new(
            &viewer,
            kind,
            if kind == "instances" {
                "Instances"
            } else {
                "Bindings"
            },
        ),
        kind,
        filters: Filters::of(&q, &state, &snapshot),
        partial: resume.is_some() && rows.len() < limit,
        rows,
        next: resume,
        budget: SCAN_BUDGET,
        can_act: viewer.can_act(),
    };
    Html::of(&page)
}

#[derive(Template)]
#[template(path = "console/record.html")]
struct RecordPage {
    shell: Shell,
    /// `instance` or `binding`.
    kind: &'static str,
    record: RecordRow,
    bindings: Vec<RecordRow>,
    history: Vec<AuditRow>,
    /// The audit page that goes on below the history's window (its cursor).
    older: Option<u64>,
    can_act: bool,
}

/// `GET /ui/instances/{id}`
pub async fn instance(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<Html, PageError> {
    let viewer = Viewer::of(&req, &state)?;
    let record = instance_or_404(&state, &id).await?;
    let bindings = state.registry.store().bindings_of(&id).await?;
    let (history, older) = history(
        &state,
        AuditQuery {
            instance_id: Some(id.to_string()),
            limit: Some(HISTORY),
            ..AuditQuery::default()
        },
    )
    .await?;
    let snapshot = state.catalog.snapshot();
    let page = RecordPage {
        shell: Shell::new(&viewer, "instances", format!("Instance {id}")).with_notice(&req),
        kind: "instance",
        record: RecordRow::instance(&record, &snapshot),
        bindings: bindings
            .iter()
            .map(|b| RecordRow::binding(b, &snapshot))
            .collect(),
        history,
        older,
        can_act: viewer.can_act(),
    };
    Html::of(&page)
}

/// `GET /ui/bindings/{id}`
pub async fn binding(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<Html, PageError> {
    let viewer = Viewer::of(&req, &state)?;
    let record = binding_or_404(&state, &id).await?;
    let (history, older) = history(
        &state,
        AuditQuery {
            binding_id: Some(id.to_string()),
            limit: Some(HISTORY),
            ..AuditQuery::default()
        },
    )
    .await?;
    let snapshot = state.catalog.snapshot();
    let page = RecordPage {
        shell: Shell::new(&viewer, "bindings", format!("Binding {id}")).with_notice(&req),
        kind: "binding",
        record: RecordRow::binding(&record, &snapshot),
        bindings: Vec::new(),
        history,
        older,
        can_act: viewer.can_act(),
    };
    Html::of(&page)
}
