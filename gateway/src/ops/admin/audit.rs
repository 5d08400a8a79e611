//! Reading the audit log on the admin API.
//!
//! `GET /admin/audit?instance_id&binding_id&operation&actor&kind&outcome&since_ms&limit&cursor`
//! answers `{"items": […], "next_cursor": N}` newest first (`cursor` is the `seq` of the last
//! record of the previous page; `next_cursor` is absent on the last page), or with `format=jsonl`
//! one record per line, oldest of the page first (what `osb-gateway admin audit --jsonl` prints and
//! a log shipper reads).

use actix_web::{HttpRequest, HttpResponse, web};
use osb_routing::audit::{AuditKind, AuditOutcome, AuditQuery};
use serde::Deserialize;
use serde_json::json;

use super::Operator;
use super::inventory::query;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    instance_id: Option<String>,
    binding_id: Option<String>,
    operation: Option<String>,
    actor: Option<String>,
    kind: Option<AuditKind>,
    outcome: Option<AuditOutcome>,
    since_ms: Option<u64>,
    limit: Option<usize>,
    cursor: Option<u64>,
    /// `json` (default) or `jsonl`.
    format: Option<String>,
}

/// `GET /admin/audit`
pub async fn read(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Operator::of(&req, &state)?;
    let q: ReadQuery = query(&req)?;
    // What this process answered is in the log before it is read.
    state.audit.settle().await;
    let audit = AuditQuery {
        before: q.cursor,
        limit: q.limit,
        instance_id: q.instance_id,
        binding_id: q.binding_id,
        operation: q.operation,
        actor: q.actor,
        kind: q.kind,
        outcome: q.outcome,
        since_ms: q.since_ms,
        after: None,
    };
    let records = state.registry.store().audit(&audit).await?;
    let next = (records.len() >= audit.page_size())
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    match q.format.as_deref() {
        None | Some("json") => Ok(HttpResponse::Ok().json(json!({"items": records, "next_cursor": next}))),
        Some("jsonl") => {
            let mut body = Vec::new();
            for record in records.iter().rev() {
                body.extend(serde_json::to_vec(record).unwrap_or_default());
                body.push(b'\n');
            }
            let mut response = HttpResponse::Ok();
            if let Some(next) = next {
                response.insert_header(("X-OSB-Gateway-Next-Cursor", next.to_string()));
            }
            Ok(response.content_type("application/x-ndjson").body(body))
        }
        Some(other) => Err(ApiError::BadRequest(format!(
            "format {other:?} is not json or jsonl"
        ))),
    }
}
