//! Catalog changes (`/ui/catalog`): the plans the catalog guard holds (removed upstream, still
//! served for their live instances), each with the way to confirm its removal; and, on demand
//! (`POST /ui/catalog`, a button: it fetches every broker's catalog, so a link from another site
//! cannot make browsers run it), the dry-run diff of the upstreams' catalogs against the served
//! one (nothing is applied or saved), as `GET /admin/catalog/diff` answers it.

use actix_web::{HttpRequest, web};
use askama::Template;
use osb_routing::catalog::{CatalogChange, ChangeKind, DiffSummary, EntryKind, HeldPlan};
use serde::Deserialize;

use super::{Html, PageError, Shell, Viewer, ago};
use crate::ops::admin::catalog::changes;
use crate::ops::admin::inventory::query;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogQuery {
    /// The notice of a redirect (the shell reads it).
    #[serde(rename = "done")]
    _done: Option<serde::de::IgnoredAny>,
}

/// One change of the diff, in words.
#[derive(Debug)]
pub struct ChangeRow {
    pub change: &'static str,
    pub entry: &'static str,
    pub service: String,
    pub plan: String,
    pub id: String,
    pub old_id: String,
    pub fields: String,
    pub instances: usize,
    pub held: bool,
}

impl From<&CatalogChange> for ChangeRow {
    fn from(c: &CatalogChange) -> Self {
        ChangeRow {
            change: match c.change {
                ChangeKind::Added => "added",
                ChangeKind::Removed => "removed",
                ChangeKind::Changed => "changed",
                ChangeKind::IdChanged => "id changed",
            },
            entry: match c.entry {
                EntryKind::Service => "service",
                EntryKind::Plan => "plan",
            },
            service: c.service.clone(),
            plan: c.plan.clone().unwrap_or_default(),
            id: c.id.clone().unwrap_or_default(),
            old_id: c.old_id.clone().unwrap_or_default(),
            fields: c.fields.join(", "),
            instances: c.instances,
            held: c.held,
        }
    }
}

/// The diff, when asked for.
#[derive(Debug)]
pub struct Diff {
    pub summary: DiffSummary,
    pub changes: Vec<ChangeRow>,
    /// Brokers whose catalog could not be fetched: (broker, error).
    pub errors: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "console/catalog.html")]
struct CatalogPage {
    shell: Shell,
    generation: u64,
    services: usize,
    plans: usize,
    /// Each held plan, and for how long it has been held.
    held: Vec<(HeldPlan, String)>,
    confirmed: Vec<String>,
    diff: Option<Diff>,
    can_act: bool,
}

/// `GET /ui/catalog`
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> Result<Html, PageError> {
    let viewer = Viewer::of(&req, &state)?;
    let _: CatalogQuery = query(&req)?;
    render(&req, &state, &viewer, None).await
}

/// `POST /ui/catalog`: the page with the dry-run diff of the upstreams' catalogs fetched now.
pub async fn diff(req: HttpRequest, state: web::Data<AppState>) -> Result<Html, PageError> {
    if crate::ops::admin::from_another_site(&req) {
        return Err(crate::error::ApiError::CrossSite.into());
    }
    let viewer = Viewer::of(&req, &state)?;
    let (candidate, errors) = state.catalog.candidate().await;
    let snapshot = state.catalog.snapshot();
    let changes = changes(&state, &snapshot, &candidate).await?;
    let diff = Diff {
        summary: osb_routing::catalog::summarize(&changes),
        changes: changes.iter().map(ChangeRow::from).collect(),
        errors: errors.into_iter().map(|(b, e)| (b, e.to_string())).collect(),
    };
    render(&req, &state, &viewer, Some(diff)).await
}

async fn render(
    req: &HttpRequest,
    state: &AppState,
    viewer: &Viewer,
    diff: Option<Diff>,
) -> Result<Html, PageError> {
    let snapshot = state.catalog.snapshot();
    let mut confirmed: Vec<String> = state.catalog.confirmed().into_iter().collect();
    confirmed.sort();
    let page = CatalogPage {
        shell: Shell::new(viewer, "catalog", "Catalog changes").with_notice(req),
        generation: snapshot.generation,
        services: snapshot.catalog.services.len(),
        plans: snapshot.catalog.services.iter().map(|s| s.plans.len()).sum(),
        held: snapshot
            .held
            .iter()
            .map(|h| (h.clone(), ago(h.since_ms)))
            .collect(),
        confirmed,
        diff,
        can_act: viewer.can_act(),
    };
    Html::of(&page)
}
