//! Operators' levers on the registry: adopt instances created before the gateway, abandon what is
//! stuck. Every action is recorded in the audit log with who did it and why.
//!
//! - `POST /admin/instances/adopt` `{"instances": [{"instance_id", "platform", "plan", "broker"?,
//!   "service"?, "context"?, "parameters"?}], "reason"?, "verify"?}`: records instances that were
//!   provisioned directly at an upstream broker, ready, owned by `platform`, so the platform can
//!   bind, update and deprovision them through the gateway. `plan` is, with `broker`, the upstream
//!   plan id (the same as the gateway's for `ids: keep` brokers), or the gateway plan id. With `verify` (the
//!   default) the upstream is asked first when the service is `instances_retrievable`: an
//!   instance it does not know, or knows under another plan, is not adopted. `parameters` (never
//!   stored) only make the record's fingerprint match the original provision, so that the
//!   platform re-sending it gets the upstream's answer rather than a 409. One result per instance.
//! - `POST /admin/instances/{id}/abandon` `{"reason", "deprovision"?}` and
//!   `POST /admin/bindings/{id}/abandon`: the gateway forgets the instance (and its bindings) or
//!   the binding, whatever its state: stuck in a deletion, an orphan the upstream keeps refusing.
//!   With `deprovision` (`unbind`) one upstream delete is attempted first (`accepts_incomplete`),
//!   and its answer recorded; the record goes whatever it answers. A reason is required.

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use osb_routing::audit::AuditRecord;
use osb_routing::registry::{Adopted, NewInstance, fingerprint};
use osb_routing::upstream::{CallHeaders, UpstreamReply};
use osb_routing::{OsbId, RoutingError, UpstreamPath};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::warn;

use super::inventory::view;
use super::{Operator, json_body};
use crate::edge::parse::RequestBody;
use crate::error::ApiError;
use crate::osb::call::call_upstream;
use crate::state::AppState;

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdoptRequest {
    instances: Vec<AdoptInstance>,
    reason: Option<String>,
    #[serde(default = "yes")]
    verify: bool,
}

/// One instance to adopt.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptInstance {
    pub instance_id: String,
    /// The platform that will own it.
    pub platform: String,
    /// Gateway plan id, or (with `broker`) the upstream plan id.
    pub plan: String,
    pub broker: Option<String>,
    /// Gateway or upstream service id (checked against the plan's).
    pub service: Option<String>,
    /// The platform's context of the original provision (kept for policy rules).
    pub context: Option<Value>,
    /// The parameters of the original provision (only their fingerprint is kept).
    pub parameters: Option<Value>,
}

/// What happened to one instance.
#[derive(Debug, Serialize)]
pub struct AdoptResult {
    pub instance_id: String,
    /// `adopted`, `existing` (already recorded, unchanged) or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// The upstream confirmed the instance (and its plan).
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The instance as the registry will record it.
fn resolve(state: &AppState, item: &AdoptInstance) -> Result<NewInstance, ApiError> {
    let bad = ApiError::BadRequest;
    crate::edge::parse::id("instance_id", &item.instance_id).map_err(|e| bad(e.to_string()))?;
    if !state.settings.platforms.iter().any(|p| p.name == item.platform) {
        return Err(bad(format!(
            "no platform named {:?} is configured",
            item.platform
        )));
    }
    let snapshot = state.catalog.snapshot();
    let routes = &snapshot.routes;
    // With a broker, its upstream plan id first (the same id may be another broker's gateway id,
    // as when one upstream is registered twice, with `ids: keep` and rewritten).
    let upstream_id = item.broker.as_deref().and_then(|broker| {
        let id = routes.gateway_id(broker, &item.plan)?;
        routes.plan(id).map(|route| (id.to_owned(), route))
    });
    let found = upstream_id.or_else(|| routes.plan(&item.plan).map(|route| (item.plan.clone(), route)));
    let Some((plan_id, route)) = found else {
        return Err(bad(format!(
            "plan {:?} is neither a gateway plan id nor an upstream plan id of broker {}",
            item.plan,
            item.broker.as_deref().unwrap_or("(none given)")
        )));
    };
    if item.broker.as_deref().is_some_and(|b| b != &*route.broker) {
        return Err(bad(format!(
            "plan {:?} belongs to broker {}, not {}",
            item.plan,
            route.broker,
            item.broker.as_deref().unwrap_or_default()
        )));
    }
    if let Some(service) = &item.service {
        if *service != route.service_id && *service != route.upstream_service_id {
            return Err(bad(format!(
                "plan {:?} is not a plan of service {service:?}",
                item.plan
            )));
        }
    }
    if item.context.as_ref().is_some_and(|c| !c.is_object()) {
        return Err(bad("context must be a JSON object".to_owned()));
    }
    let service_id = Value::String(route.service_id.clone());
    let plan = Value::String(plan_id.clone());
    Ok(NewInstance {
        instance_id: item.instance_id.clone(),
        platform: item.platform.clone(),
        broker: route.broker.to_string(),
        service_id: route.service_id.clone(),
        plan_id,
        upstream_service_id: route.upstream_service_id.clone(),
        upstream_plan_id: route.upstream_plan_id.clone(),
        // As the provision handler computes it, so a re-sent provision is recognised.
        fingerprint: fingerprint(&[
            ("service_id", Some(&service_id)),
            ("plan_id", Some(&plan)),
            ("parameters", item.parameters.as_ref()),
        ]),
        context: item.context.clone(),
        quotas: Vec::new(),
    })
}

/// Asks the upstream about the instance, when its service allows it: `Ok(true)` confirmed,
/// `Ok(false)` cannot be asked.
async fn verify(state: &AppState, new: &NewInstance) -> Result<bool, ApiError> {
    let snapshot = state.catalog.snapshot();
    let retrievable = snapshot
        .routes
        .service(&new.service_id)
        .is_some_and(|s| s.instances_retrievable);
    if !retrievable {
        return Ok(false);
    }
    let upstream = state
        .brokers
        .get(&new.broker)
        .ok_or_else(|| ApiError::UpstreamError {
            broker: new.broker.clone(),
            reason: "is not configured".to_owned(),
        })?;
    let call = CallHeaders {
        request_identity: uuid::Uuid::new_v4().to_string(),
        originating_identity: None,
        operation: "fetch_instance",
    };
    let path = OsbId::parse("instance_id", &new.instance_id)
        .map(|id| UpstreamPath::instance(&id))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let reply = call_upstream(&state.metrics, &upstream, Method::GET, &path, None, &call)
        .await
        .map_err(|e| ApiError::UpstreamError {
            broker: new.broker.clone(),
            reason: format!("cannot be asked about the instance ({})", e.kind()),
        })?;
    match reply.status {
        200 => {
            let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            match body.get("plan_id").and_then(Value::as_str) {
                Some(plan) if plan != new.upstream_plan_id => Err(ApiError::Conflict(format!(
                    "broker {} has the instance on another plan ({plan})",
                    new.broker
                ))),
                _ => Ok(true),
            }
        }
        404 | 410 => Err(ApiError::NotFound(format!(
            "broker {} does not know instance {}",
            new.broker, new.instance_id
        ))),
        status => Err(ApiError::UpstreamError {
            broker: new.broker.clone(),
            reason: format!("answered {status} when asked about the instance"),
        }),
    }
}

/// `POST /admin/instances/adopt`
pub async fn adopt(
    req: HttpRequest,
    state: web::Data<AppState>,
    RequestBody(body): RequestBody,
) -> Result<HttpResponse, ApiError> {
    let operator = Operator::acting(&req, &state)?;
    let request: AdoptRequest = json_body(&body)?;
    if request.instances.is_empty() {
        return Err(ApiError::BadRequest("no instances to adopt".to_owned()));
    }
    let reason = request.reason.as_deref().map(crate::telemetry::audit::reason);
    let mut results = Vec::with_capacity(request.instances.len());
    for item in &request.instances {
        results.push(adopt_one(&state, &operator, item, reason.as_deref(), request.verify).await);
    }
    let failed = results.iter().filter(|r| r.result == "failed").count();
    Ok(HttpResponse::Ok().json(json!({"results": results, "failed": failed})))
}

/// Adopts one instance as `operator` (the admin API's and the console's adopt), recorded in the
/// audit log whatever the result.
pub async fn adopt_one(
    state: &AppState,
    operator: &Operator,
    item: &AdoptInstance,
    reason: Option<&str>,
    verify_upstream: bool,
) -> AdoptResult {
    let started = std::time::Instant::now();
    let attempt = async {
        let new = resolve(state, item)?;
        let verified = if verify_upstream {
            verify(state, &new).await?
        } else {
            false
        };
        let adopted = state.registry.adopt(&new).await.map_err(ApiError::from)?;
        Ok::<_, ApiError>((adopted, verified))
    };
    let (result, record) = match attempt.await {
        Ok((adopted, verified)) => {
            let (word, instance) = match adopted {
                Adopted::Created(instance) => ("adopted", instance),
                Adopted::Existing(instance) => ("existing", instance),
            };
            let mut record = operator.record("adopt", 200, started);
            record.instance_id = Some(instance.instance_id.clone());
            record.broker = Some(instance.broker.clone());
            record.service_id = Some(instance.service_id.clone());
            record.plan_id = Some(instance.plan_id.clone());
            record.reason = Some(adopt_reason(reason, word, &instance.platform, verified));
            let note = (!verified && verify_upstream).then(|| {
                "not verified: the service is not instances_retrievable, the broker cannot be asked"
                    .to_owned()
            });
            (
                AdoptResult {
                    instance_id: instance.instance_id,
                    result: word,
                    broker: Some(instance.broker),
                    service_id: Some(instance.service_id),
                    plan_id: Some(instance.plan_id),
                    verified,
                    note,
                    error: None,
                },
                record,
            )
        }
        Err(refusal) => {
            let (status, code, message) = (
                refusal.status_code().as_u16(),
                refusal.code(),
                refusal.to_string(),
            );
            let mut record = operator.record("adopt", status, started);
            record.instance_id = Some(crate::telemetry::audit::cut(&item.instance_id, 256));
            record.broker.clone_from(&item.broker);
            record.error = Some(code.to_owned());
            record.reason = reason.map(str::to_owned);
            (
                AdoptResult {
                    instance_id: item.instance_id.clone(),
                    result: "failed",
                    broker: item.broker.clone(),
                    service_id: None,
                    plan_id: None,
                    verified: false,
                    note: None,
                    error: Some(message),
                },
                record,
            )
        }
    };
    state.audit.record(record).await;
    result
}

fn adopt_reason(reason: Option<&str>, word: &str, platform: &str, verified: bool) -> String {
    let what = format!(
        "{word} for platform {platform}{}",
        if verified { ", verified upstream" } else { "" }
    );
    match reason {
        Some(reason) if !reason.is_empty() => format!("{reason} ({what})"),
        _ => what,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AbandonRequest {
    reason: Option<String>,
    /// Try one upstream delete first.
    #[serde(default)]
    deprovision: bool,
}

/// What the upstream delete attempt gave.
#[derive(Debug, Default, Serialize)]
pub struct Attempt {
    attempted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Attempt {
    /// One operator-initiated DELETE of `path` at `broker`, and what came of it (nothing is
    /// sent for an id the grammar refuses: a record from before it).
    async fn delete(
        state: &AppState,
        broker: &str,
        path: Result<UpstreamPath, RoutingError>,
        operation: &'static str,
    ) -> Attempt {
        let reply = match (state.brokers.get(broker), path) {
            (Some(upstream), Ok(path)) => {
                let call = operator_call(operation);
                call_upstream(&state.metrics, &upstream, Method::DELETE, &path, None, &call).await
            }
            (_, Err(e)) => Err(e),
            (None, _) => Err(RoutingError::Gone(format!("broker {broker} is not configured"))),
        };
        Attempt::of(&reply)
    }

    fn of(reply: &Result<UpstreamReply, RoutingError>) -> Attempt {
        match reply {
            Ok(reply) => Attempt {
                attempted: true,
                status: Some(reply.status),
                error: None,
            },
            Err(e) => Attempt {
                attempted: true,
                status: None,
                error: Some(e.kind().to_owned()),
            },
        }
    }

    /// In words, for the audit log and the console.
    pub fn words(&self) -> String {
        match (self.attempted, self.status, self.error.as_deref()) {
            (false, _, _) => "no upstream delete attempted".to_owned(),
            (true, Some(status), _) => format!("upstream delete answered {status}"),
            (true, None, Some(error)) => format!("upstream delete failed ({error})"),
            (true, None, None) => "upstream delete failed".to_owned(),
        }
    }

    fn fill(&self, record: &mut AuditRecord) {
        record.upstream_status = self.status;
        record.error = self.error.as_deref().map(|kind| {
            match kind {
                "timeout" => "UpstreamTimeout",
                "unreachable" | "circuit_open" | "gone" => "UpstreamUnavailable",
                "invalid_id" => "BadRequest",
                _ => "UpstreamError",
            }
            .to_owned()
        });
    }
}

/// The reason given, cleaned; required to abandon.
///
/// # Errors
/// [`ApiError::BadRequest`] when there is none.
pub fn required_reason(reason: Option<&str>) -> Result<String, ApiError> {
    reason
        .map(crate::telemetry::audit::reason)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::BadRequest("a reason is required to abandon".to_owned()))
}

/// A one-off call header for an operator's upstream call.
fn operator_call(operation: &'static str) -> CallHeaders {
    CallHeaders {
        request_identity: uuid::Uuid::new_v4().to_string(),
        originating_identity: None,
        operation,
    }
}

/// `POST /admin/instances/{id}/abandon`
pub async fn abandon_instance(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    RequestBody(body): RequestBody,
) -> Result<HttpResponse, ApiError> {
    let operator = Operator::acting(&req, &state)?;
    let request: AbandonRequest = json_body(&body)?;
    let reason = required_reason(request.reason.as_deref())?;
    let abandoned = forget_instance(&state, &operator, &id, &reason, request.deprovision).await?;
    Ok(HttpResponse::Ok().json(json!({
        "instance_id": id.as_str(),
        "removed": abandoned.removed,
        "bindings_removed": abandoned.bindings_removed,
        "upstream": abandoned.upstream,
    })))
}

/// What abandoning took away.
#[derive(Debug, Serialize)]
pub struct Abandoned {
    /// The record as it was (the admin API's view).
    pub removed: Value,
    /// Bindings removed with an instance.
    pub bindings_removed: Vec<String>,
    pub upstream: Attempt,
}

/// Abandons instance `id` as `operator` (the admin API and the console): one upstream delete first
/// when `deprovision`, then the record and its bindings leave the registry; audited.
///
/// # Errors
/// [`ApiError::NotFound`] when it is not in the registry; a store failure.
pub async fn forget_instance(
    state: &AppState,
    operator: &Operator,
    id: &str,
    reason: &str,
    deprovision: bool,
) -> Result<Abandoned, ApiError> {
    let started = std::time::Instant::now();
    let record = state
        .registry
        .store()
        .instance(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance {id} is not in the registry")))?;

    let mut attempt = Attempt::default();
    if deprovision {
        let path = OsbId::parse("instance_id", &record.instance_id).map(|id| {
            UpstreamPath::instance(&id).with_pairs(&[
                ("service_id", &record.upstream_service_id),
                ("plan_id", &record.upstream_plan_id),
                ("accepts_incomplete", "true"),
            ])
        });
        attempt = Attempt::delete(state, &record.broker, path, "deprovision").await;
    }

    let removed = state.registry.abandon_instance(id).await?;
    let Some((instance, bindings)) = removed else {
        return Err(ApiError::NotFound(format!(
            "instance {id} is not in the registry"
        )));
    };
    state.catalog.instances_changed();
    warn!(
        instance_id = %instance.instance_id,
        broker = %instance.broker,
        actor = %operator.actor,
        bindings = bindings.len(),
        upstream = %attempt.words(),
        "Instance abandoned: removed from the registry."
    );
    let mut audit = operator.record("abandon", 200, started);
    audit.instance_id = Some(instance.instance_id.clone());
    audit.broker = Some(instance.broker.clone());
    audit.service_id = Some(instance.service_id.clone());
    audit.plan_id = Some(instance.plan_id.clone());
    attempt.fill(&mut audit);
    audit.reason = Some(format!(
        "{reason} ({}; {} binding(s) removed with it)",
        attempt.words(),
        bindings.len()
    ));
    state.audit.record(audit).await;

    let snapshot = state.catalog.snapshot();
    Ok(Abandoned {
        removed: view(&instance, &snapshot),
        bindings_removed: bindings.iter().map(|b| b.binding_id.clone()).collect(),
        upstream: attempt,
    })
}

/// `POST /admin/bindings/{id}/abandon`
pub async fn abandon_binding(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    RequestBody(body): RequestBody,
) -> Result<HttpResponse, ApiError> {
    let operator = Operator::acting(&req, &state)?;
    let request: AbandonRequest = json_body(&body)?;
    let reason = required_reason(request.reason.as_deref())?;
    let abandoned = forget_binding(&state, &operator, &id, &reason, request.deprovision).await?;
    Ok(HttpResponse::Ok().json(json!({
        "binding_id": id.as_str(),
        "removed": abandoned.removed,
        "upstream": abandoned.upstream,
    })))
}

/// Abandons binding `id` as `operator`: one upstream unbind first when `unbind`, then the record
/// leaves the registry; audited.
///
/// # Errors
/// [`ApiError::NotFound`] when it is not in the registry; a store failure.
pub async fn forget_binding(
    state: &AppState,
    operator: &Operator,
    id: &str,
    reason: &str,
    unbind: bool,
) -> Result<Abandoned, ApiError> {
    let started = std::time::Instant::now();
    let record = state
        .registry
        .store()
        .binding(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("binding {id} is not in the registry")))?;

    let mut attempt = Attempt::default();
    if unbind {
        let path = OsbId::parse("instance_id", &record.instance_id).and_then(|instance| {
            let binding = OsbId::parse("binding_id", &record.binding_id)?;
            Ok(UpstreamPath::binding(&instance, &binding).with_pairs(&[
                ("service_id", &record.upstream_service_id),
                ("plan_id", &record.upstream_plan_id),
                ("accepts_incomplete", "true"),
            ]))
        });
        attempt = Attempt::delete(state, &record.broker, path, "unbind").await;
    }

    let Some(binding) = state.registry.abandon_binding(id).await? else {
        return Err(ApiError::NotFound(format!("binding {id} is not in the registry")));
    };
    warn!(
        binding_id = %binding.binding_id,
        instance_id = %binding.instance_id,
        broker = %binding.broker,
        actor = %operator.actor,
        upstream = %attempt.words(),
        "Binding abandoned: removed from the registry."
    );
    let mut audit = operator.record("abandon", 200, started);
    audit.instance_id = Some(binding.instance_id.clone());
    audit.binding_id = Some(binding.binding_id.clone());
    audit.broker = Some(binding.broker.clone());
    audit.service_id = Some(binding.service_id.clone());
    audit.plan_id = Some(binding.plan_id.clone());
    attempt.fill(&mut audit);
    audit.reason = Some(format!("{reason} ({})", attempt.words()));
    state.audit.record(audit).await;

    let snapshot = state.catalog.snapshot();
    Ok(Abandoned {
        removed: view(&binding, &snapshot),
        bindings_removed: Vec::new(),
        upstream: attempt,
    })
}
