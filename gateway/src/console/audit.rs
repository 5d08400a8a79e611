//! The audit log (`/ui/audit`): platform calls and operator actions, newest first, filtered by
//! instance, binding, operation, actor, kind and outcome, paged by `seq`.
//!
//! Live: the page's script asks `/ui/audit/rows?after=SEQ` (same filters) every few seconds and
//! puts the rows it gets on top. Without JavaScript the page is read as it was served.
//!
//! Bounded: a page reads one window of the log, at most [`WINDOW`] records below its cursor,
//! whatever the filters select; when the window ends before the page fills, the page says so and
//! "Older" goes on below it. A filter that matches rarely costs a window per page, never the log.

use actix_web::{HttpRequest, HttpResponse, Responder, web};
use askama::Template;
use osb_routing::audit::{AuditKind, AuditOutcome, AuditQuery, AuditRecord};
use serde::Deserialize;

use super::{Html, PageError, Shell, Viewer, encode, when};
use crate::ops::admin::inventory::query;
use crate::state::AppState;

/// Rows per page.
const PAGE: usize = 50;
/// The most audit records one page (or one record's history) examines.
pub const WINDOW: u64 = 10_000;
/// The most records one ask for live rows covers.
const LIVE_STEP: u64 = 200;

/// One audit record as a row.
#[derive(Debug)]
pub struct AuditRow {
    pub seq: u64,
    pub at: String,
    pub kind: &'static str,
    pub actor: String,
    pub user: Option<String>,
    pub operation: String,
    pub instance_id: Option<String>,
    pub binding_id: Option<String>,
    pub broker: Option<String>,
    pub status: u16,
    pub outcome: &'static str,
    pub error: Option<String>,
    pub reason: Option<String>,
    pub policy: Option<String>,
    pub duration_ms: u64,
}

impl From<&AuditRecord> for AuditRow {
    fn from(r: &AuditRecord) -> Self {
        AuditRow {
            seq: r.seq,
            at: when(r.at_ms),
            kind: r.kind.as_str(),
            actor: r.actor.clone(),
            user: r.user.clone(),
            operation: r.operation.clone(),
            instance_id: r.instance_id.clone(),
            binding_id: r.binding_id.clone(),
            broker: r.broker.clone(),
            status: r.status,
            outcome: r.outcome.as_str(),
            error: r.error.clone(),
            reason: r.reason.clone(),
            policy: r.policy.clone(),
            duration_ms: r.duration_ms,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditFilter {
    instance_id: Option<String>,
    binding_id: Option<String>,
    operation: Option<String>,
    actor: Option<String>,
    kind: Option<String>,
    outcome: Option<String>,
    cursor: Option<u64>,
    /// Rows newer than this `seq` (live updates).
    after: Option<u64>,
    /// The notice of a redirect (the shell reads it).
    #[serde(rename = "done")]
    _done: Option<serde::de::IgnoredAny>,
}

impl AuditFilter {
    /// The store's query (empty fields are no filter).
    fn query(&self, before: Option<u64>, limit: usize) -> AuditQuery {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        AuditQuery {
            before,
            limit: Some(limit),
            instance_id: given(&self.instance_id),
            binding_id: given(&self.binding_id),
            operation: given(&self.operation),
            actor: given(&self.actor),
            kind: match self.kind.as_deref() {
                Some("platform") => Some(AuditKind::Platform),
                Some("admin") => Some(AuditKind::Admin),
                _ => None,
            },
            outcome: match self.outcome.as_deref() {
                Some("succeeded") => Some(AuditOutcome::Succeeded),
                Some("accepted") => Some(AuditOutcome::Accepted),
                Some("refused") => Some(AuditOutcome::Refused),
                Some("failed") => Some(AuditOutcome::Failed),
                _ => None,
            },
            since_ms: None,
            after: None,
        }
    }

    /// The filters as a query string (without cursor), for paging and live rows.
    fn query_string(&self) -> String {
        [
            ("instance_id", &self.instance_id),
            ("binding_id", &self.binding_id),
            ("operation", &self.operation),
            ("actor", &self.actor),
            ("kind", &self.kind),
            ("outcome", &self.outcome),
        ]
        .iter()
        .filter_map(|(key, value)| {
            value
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| format!("{key}={}", encode(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
    }
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    shell: Shell,
    rows: Vec<AuditRow>,
    instance_id: String,
    binding_id: String,
    operation: String,
    actor: String,
    kind: String,
    outcome: String,
    filters: String,
    newest: u64,
    next: Option<u64>,
    /// The window ended before the page filled: the seqs it covered (lowest, highest).
    partial: Option<(u64, u64)>,
    /// The newest page: new rows are put on top as they come.
    live: bool,
}

#[derive(Template)]
#[template(path = "console/audit_rows.html")]
pub struct AuditRows {
    pub rows: Vec<AuditRow>,
}

/// `GET /ui/audit`
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> Result<Html, PageError> {
    let viewer = Viewer::of(&req, &state)?;
    let filter: AuditFilter = query(&req)?;
    state.audit.settle().await;
    let top = match filter.cursor {
        Some(cursor) => cursor,
        None => newest_seq(&state).await?.saturating_add(1),
    };
    let bottom = top.saturating_sub(WINDOW + 1);
    let mut query = filter.query(Some(top), PAGE);
    query.after = Some(bottom).filter(|b| *b > 0);
    let records = state.registry.store().audit(&query).await?;
    let (next, partial) = match records.last() {
        Some(last) if records.len() >= PAGE => (Some(last.seq), None),
        _ if bottom > 0 => (Some(bottom + 1), Some((bottom + 1, top.saturating_sub(1)))),
        _ => (None, None),
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let page = AuditPage {
        shell: Shell::new(&viewer, "audit", "Audit log").with_notice(&req),
        // Live rows start above the window, whatever matched in it.
        newest: top.saturating_sub(1),
        rows: records.iter().map(AuditRow::from).collect(),
        instance_id: text(&filter.instance_id),
        binding_id: text(&filter.binding_id),
        operation: text(&filter.operation),
        actor: text(&filter.actor),
        kind: text(&filter.kind),
        outcome: text(&filter.outcome),
        filters: filter.query_string(),
        next,
        partial,
        live: filter.cursor.is_none(),
    };
    Html::of(&page)
}

/// `GET /ui/audit/rows?after=SEQ&…`: the matching rows among the [`LIVE_STEP`] records after
/// `after` (never below the newest [`WINDOW`]), newest first, as table rows for the page's script;
/// the `X-OSB-Gateway-Seen` header is the last `seq` those rows cover, where the next ask starts.
/// A burst of more records than a step is caught up over the next asks, none skipped.
pub async fn rows(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    Viewer::of(&req, &state)?;
    let filter: AuditFilter = query(&req)?;
    state.audit.settle().await;
    let newest = newest_seq(&state).await?;
    let after = filter
        .after
        .unwrap_or(0)
        .max(newest.saturating_sub(WINDOW))
        .min(newest);
    let seen = after.saturating_add(LIVE_STEP).min(newest);
    let mut query = filter.query(Some(seen.saturating_add(1)), LIVE_STEP as usize);
    query.after = Some(after);
    let records = state.registry.store().audit(&query).await?;
    let rows = Html::of(&AuditRows {
        rows: records.iter().map(AuditRow::from).collect(),
    })?;
    let mut response = rows.respond_to(&req);
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&seen.to_string()) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-osb-gateway-seen"),
            value,
        );
    }
    Ok(response)
}

/// The newest record's `seq` (0 for an empty log).
///
/// # Errors
/// A store failure.
pub async fn newest_seq(state: &AppState) -> Result<u64, PageError> {
    let newest = state
        .registry
        .store()
        .audit(&AuditQuery {
            limit: Some(1),
            ..AuditQuery::default()
        })
        .await?;
    Ok(newest.first().map_or(0, |r| r.seq))
}

/// The history of one instance or binding: its audit records among the newest [`WINDOW`], newest
/// first; and, when the log goes further back, the cursor of the audit page that goes on below.
///
/// # Errors
/// A store failure.
pub async fn history(
    state: &AppState,
    mut query: AuditQuery,
) -> Result<(Vec<AuditRow>, Option<u64>), PageError> {
    state.audit.settle().await;
    let bottom = newest_seq(state).await?.saturating_sub(WINDOW);
    query.after = Some(bottom).filter(|b| *b > 0);
    let records = state.registry.store().audit(&query).await?;
    // A full page goes on below its last record; a short one below the window, if the log does.
    let older = match records.last() {
        Some(last) if records.len() >= query.page_size() => Some(last.seq),
        _ => query.after.map(|b| b + 1),
    };
    Ok((records.iter().map(AuditRow::from).collect(), older))
}
