//! `GET /admin/quotas`: every quota of the policy in force with its usage, read from the registry
//! now: how many live instances (or bindings) it counts, and its counts (one per combination of
//! its `per` facts' values) fullest first.

use actix_web::{HttpRequest, HttpResponse, web};
use osb_policies::policy::{bucket_of_key, quota_of_key};
use serde_json::{Map, Value, json};

use super::check_admin;
use crate::error::ApiError;
use crate::state::AppState;

/// Counts listed per quota at most (the fullest); `counts_total` says how many there are.
const MAX_COUNTS: usize = 1000;

pub(super) async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Some(denied) = check_admin(&req, &state) {
        return Ok(denied);
    }
    let policy = state.policies.current();
    let counts = state.registry.store().quota_counts().await?;
    let quotas: Vec<Value> = policy
        .policy
        .quotas
        .iter()
        .map(|quota| {
            let mut mine: Vec<(&String, u64)> = counts
                .iter()
                .filter(|(key, _)| quota_of_key(key) == quota.name)
                .map(|(key, n)| (key, *n))
                .collect();
            mine.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            let usage: u64 = mine.iter().map(|(_, n)| n).sum();
            let listed: Vec<Value> = mine
                .iter()
                .take(MAX_COUNTS)
                .map(|(key, n)| {
                    let bucket: Option<Map<String, Value>> = bucket_of_key(key).map(|values| {
                        quota
                            .per
                            .iter()
                            .cloned()
                            .zip(values.into_iter().map(|v| v.map_or(Value::Null, Value::String)))
                            .collect()
                    });
                    json!({"bucket": bucket, "usage": n, "full": *n >= quota.limit})
                })
                .collect();
            json!({
                "name": quota.name,
                "counted": quota.counted.as_str(),
                "per": quota.per,
                "limit": quota.limit,
                "reason": quota.reason,
                "usage": usage,
                "counts_total": mine.len(),
                "counts": listed,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"generation": policy.generation, "quotas": quotas})))
}
