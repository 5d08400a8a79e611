//! Explain: dry-run a request through the policy step and say what would happen and why.
//!
//! The admin API (`POST /admin/explain`, against the live catalog, policy, broker health and
//! registry) and the CLI (`osb-gateway explain`, against freshly fetched catalogs) both call
//! [`explain`], which runs the very functions the handlers run, and forwards nothing. With the
//! registry at hand, [`with_quota_usage`] adds the usage of each quota the call would count in.

use actix_web::ResponseError;
use osb_policies::Operation;
use osb_routing::RoutingError;
use osb_routing::registry::InstanceRecord;
use osb_routing::store::Store;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::edge::parse::{self, BodyKind};
use crate::error::ApiError;
use crate::osb::decide::{Decider, Decision};

/// What to explain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// The calling platform's name.
    pub platform: String,
    /// `provision`, `update`, `deprovision`, `bind`, `unbind`.
    pub operation: String,
    /// The instance id (a made-up one is fine for a provision: it seeds the weighted choice).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The request body (provision, update, bind).
    #[serde(default)]
    pub body: Option<Value>,
    /// The plan id of a deprovision or unbind (default: the instance's).
    #[serde(default)]
    pub plan_id: Option<String>,
}

/// The answer: allowed with the decision, or refused with the status the platform would get.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainReport {
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Value>,
    /// Usage of each quota count the new instance or binding would join (filled by
    /// [`with_quota_usage`]; the CLI, without the registry, leaves it empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<QuotaUsage>,
}

/// One quota count as a call would meet it.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaUsage {
    pub quota: String,
    /// The call's values of the quota's `per` facts.
    pub bucket: String,
    pub counted: &'static str,
    pub usage: u64,
    pub limit: u64,
    /// `false`: the call would be refused with `QuotaExceeded`.
    pub room: bool,
}

/// Adds the usage of the decision's quota counts, read from the registry now: a count at its limit
/// turns the report into the refusal the platform would get.
pub async fn with_quota_usage(mut report: ExplainReport, store: &dyn Store) -> ExplainReport {
    let Some(decision) = &report.decision else {
        return report;
    };
    if decision.quotas.is_empty() {
        return report;
    }
    let keys: Vec<String> = decision.quotas.iter().map(|h| h.key.clone()).collect();
    let usage = match store.quota_usage(&keys).await {
        Ok(usage) => usage,
        Err(e) => return refused(&ApiError::from(e)),
    };
    let mut full = None;
    for (hold, usage) in decision.quotas.iter().zip(usage) {
        let room = usage < hold.limit;
        if !room && full.is_none() {
            full = Some(RoutingError::quota_exceeded(hold, usage));
        }
        report.quotas.push(QuotaUsage {
            quota: hold.quota.clone(),
            bucket: hold.bucket_text(),
            counted: hold.counted.as_str(),
            usage,
            limit: hold.limit,
            room,
        });
    }
    if let Some(full) = full {
        let quotas = std::mem::take(&mut report.quotas);
        report = refused(&ApiError::from(full));
        report.quotas = quotas;
    }
    report
}

fn refused(error: &ApiError) -> ExplainReport {
    ExplainReport {
        allowed: false,
        decision: None,
        refusal: Some(json!({
            "status": error.status_code().as_u16(),
            "error": error.osb_code(),
            "description": error.to_string(),
        })),
        quotas: Vec::new(),
    }
}

/// Runs the policy step for `request`; `instance` is the registry record for calls on an
/// existing instance.
pub fn explain(
    decider: &Decider<'_>,
    request: &ExplainRequest,
    instance: Option<&InstanceRecord>,
) -> ExplainReport {
    match run(decider, request, instance) {
        Ok(decision) => ExplainReport {
            allowed: true,
            decision: Some(decision),
            refusal: None,
            quotas: Vec::new(),
        },
        Err(error) => refused(&error),
    }
}

fn run(
    decider: &Decider<'_>,
    request: &ExplainRequest,
    instance: Option<&InstanceRecord>,
) -> Result<Decision, ApiError> {
    let operation = Operation::parse(&request.operation).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown operation {:?}: provision, update, deprovision, bind, unbind",
            request.operation
        ))
    })?;
    let body = |kind: BodyKind| -> Result<parse::Body, ApiError> {
        let bytes = serde_json::to_vec(request.body.as_ref().unwrap_or(&Value::Null)).unwrap_or_default();
        parse::request_body(kind, &bytes)
    };
    let instance_id = request
        .instance_id
        .clone()
        .unwrap_or_else(|| "explain".to_owned());
    if operation == Operation::Provision {
        return decider.provision(&request.platform, &instance_id, &body(BodyKind::Provision)?);
    }
    let instance =
        instance.ok_or_else(|| ApiError::NotFound(format!("instance {instance_id} does not exist")))?;
    let (parsed, plan_id) = match operation {
        Operation::Update => {
            let parsed = body(BodyKind::Update)?;
            let plan = parsed.plan_id.clone().unwrap_or_else(|| instance.plan_id.clone());
            (Some(parsed), plan)
        }
        Operation::Bind => {
            let parsed = body(BodyKind::Bind)?;
            let plan = parsed.plan_id.clone().unwrap_or_default();
            (Some(parsed), plan)
        }
        _ => (
            None,
            request
                .plan_id
                .clone()
                .unwrap_or_else(|| instance.plan_id.clone()),
        ),
    };
    decider
        .existing(&request.platform, operation, instance, &plan_id, parsed.as_ref())
        .map(|(decision, _)| decision)
}
