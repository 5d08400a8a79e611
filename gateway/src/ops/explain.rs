//! Explain: dry-run a request through the policy step and say what would happen and why.
//!
//! The admin API (`POST /admin/explain`, against the live catalog, policy, broker health and
//! registry) and the CLI (`osb-gateway explain`, against freshly fetched catalogs) both call
//! [`explain`], which runs the very functions the handlers run, and forwards nothing.

use actix_web::ResponseError;
use osb_policies::Operation;
use osb_routing::registry::InstanceRecord;
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
