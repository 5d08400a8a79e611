//! Service binding endpoints: bind, unbind, fetch, last_operation.
//!
//! Same chain as the instance endpoints; the owner comes from the instance's registry record.
//! Binding answers carry credentials: they pass through to the platform and are never logged.

use actix_web::{HttpRequest, HttpResponse, web};
use osb_policies::Operation;
use osb_routing::UpstreamPath;
use osb_routing::registry::{NewBinding, fingerprint};
use reqwest::Method;
use serde_json::Value;

use super::map_plan;
use crate::app::AppState;
use crate::audit;
use crate::error::ApiError;
use crate::forward::{self, Endpoint, classify, respond};
use crate::parse::{self, BodyKind, Query, RequestBody};

/// `PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}`
pub async fn bind(
    req: HttpRequest,
    body: RequestBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // 1. Parse.
    let (platform, call) = forward::caller(&req)?;
    let instance_id = parse::path_id(&req, "instance_id")?;
    let binding_id = parse::path_id(&req, "binding_id")?;
    let query = Query::parse(req.query_string())?;
    let mut body = parse::request_body(BodyKind::Bind, &body.0)?;
    let plan_id = body.plan_id.clone().unwrap_or_default();
    let fingerprint = fingerprint(&[
        ("service_id", Some(&Value::String(body.service_id.clone()))),
        ("plan_id", Some(&Value::String(plan_id.clone()))),
        ("parameters", body.parameters()),
        ("bind_resource", body.fields.get("bind_resource")),
    ]);

    // 2. Resolve: the instance's owner; the plan must be the instance's service's and bindable.
    let instance = state
        .registry
        .instance_for(&instance_id, &platform)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance {instance_id} does not exist")))?;
    if body.service_id != instance.service_id {
        return Err(ApiError::BadRequest(format!(
            "service_id does not match instance {instance_id}"
        )));
    }
    let routes = state.catalog.snapshot().routes.clone();
    let upstream_plan = map_plan(&routes, &instance, &plan_id)?;
    let logical_bindable = state
        .catalog
        .policy()
        .offerings
        .iter()
        .find(|o| o.id == instance.service_id)
        .map(|o| {
            let plan = o.plans.iter().find(|p| p.id == plan_id);
            plan.and_then(|p| p.flag("bindable"))
                .unwrap_or_else(|| o.bindable())
        });
    if routes.plan(&plan_id).map(|p| p.bindable).or(logical_bindable) == Some(false) {
        return Err(ApiError::BadRequest(format!("plan {plan_id} is not bindable")));
    }
    // 3. The policy: deny rules, parameter rules, the plan's binding schema.
    let (decision, _) = state.decide("bind", |d| {
        d.existing(&platform, Operation::Bind, &instance, &plan_id, Some(&body))
    })?;
    decision.apply_to(&mut body);
    audit::note_target(&req, &instance.broker, &instance.service_id, &plan_id);
    let upstream = state.upstream(&instance.broker)?;
    state.check_breaker(&upstream)?;
    state.check_broker_limit(&instance.broker)?;

    // 4. Admit (write-ahead intent, retry, or 404/409/422).
    let new = NewBinding {
        binding_id: binding_id.to_string(),
        instance_id: instance_id.to_string(),
        platform,
        fingerprint,
    };
    let admission = state.timed("begin", state.registry.begin_bind(&new)).await?;

    // 5. Upstream.
    let path = UpstreamPath::binding(&instance_id, &binding_id).with_query(query.accepts_incomplete());
    let upstream_body = body.upstream(&instance.upstream_service_id, Some(&upstream_plan), None);
    let reply = state
        .call_upstream(&upstream, Method::PUT, &path, Some(upstream_body), &call)
        .await;
    audit::note_upstream(&req, &reply);

    // 6. Outcome (a failed bind is unbound upstream by the mitigation worker), answer.
    let outcome = classify(Endpoint::Bind, &reply);
    state
        .timed("finish", state.registry.finish_bind(&admission, &outcome))
        .await?;
    respond(&instance.broker, reply, &outcome)
}

/// `DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}?service_id&plan_id`
pub async fn unbind(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (platform, call) = forward::caller(&req)?;
    let instance_id = parse::path_id(&req, "instance_id")?;
    let binding_id = parse::path_id(&req, "binding_id")?;
    let query = Query::parse(req.query_string())?;
    let service_id = query.required("service_id")?;
    let plan_id = query.required("plan_id")?;

    let binding = state
        .registry
        .binding_for(&instance_id, &binding_id, &platform)
        .await?
        .ok_or_else(|| ApiError::Gone(format!("binding {binding_id} does not exist")))?;
    if service_id != binding.service_id {
        return Err(ApiError::BadRequest(format!(
            "service_id does not match binding {binding_id}"
        )));
    }
    let instance = state.registry.instance_for(&instance_id, &platform).await?;
    let routes = state.catalog.snapshot().routes.clone();
    let upstream_plan = match &instance {
        Some(instance) => map_plan(&routes, instance, &plan_id)?,
        None => binding.upstream_plan_id.clone(),
    };
    if let Some(instance) = &instance {
        state.decide("unbind", |d| {
            d.existing(&platform, Operation::Unbind, instance, &plan_id, None)
        })?;
    }
    audit::note_target(&req, &binding.broker, &binding.service_id, &plan_id);
    let upstream = state.upstream(&binding.broker)?;
    state.check_breaker(&upstream)?;
    state.check_broker_limit(&binding.broker)?;

    let admission = state
        .timed(
            "begin",
            state.registry.begin_unbind(
                &instance_id,
                &binding_id,
                &platform,
                &fingerprint(&[("unbind", None)]),
            ),
        )
        .await?;
    let path = UpstreamPath::binding(&instance_id, &binding_id)
        .with_query(query.upstream(&binding.upstream_service_id, &upstream_plan));
    let reply = state
        .call_upstream(&upstream, Method::DELETE, &path, None, &call)
        .await;
    audit::note_upstream(&req, &reply);

    let outcome = classify(Endpoint::Unbind, &reply);
    state
        .timed("finish", state.registry.finish_unbind(&admission, &outcome))
        .await?;
    respond(&binding.broker, reply, &outcome)
}

/// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}`
pub async fn fetch(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (platform, call) = forward::caller(&req)?;
    let instance_id = parse::path_id(&req, "instance_id")?;
    let binding_id = parse::path_id(&req, "binding_id")?;
    Query::parse(req.query_string())?;
    let binding = state
        .registry
        .binding_for(&instance_id, &binding_id, &platform)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("binding {binding_id} does not exist")))?;
    super::require_retrievable(
        &state,
        &binding.broker,
        &binding.upstream_service_id,
        super::Fetched::Binding,
    )?;
    let upstream = state.upstream(&binding.broker)?;
    state.check_breaker(&upstream)?;
    state.check_broker_limit(&binding.broker)?;
    let reply = state
        .call_upstream(
            &upstream,
            Method::GET,
            &UpstreamPath::binding(&instance_id, &binding_id),
            None,
            &call,
        )
        .await;
    let outcome = classify(Endpoint::Read, &reply);
    respond(&binding.broker, reply, &outcome)
}

/// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation`
pub async fn last_operation(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (platform, call) = forward::caller(&req)?;
    let instance_id = parse::path_id(&req, "instance_id")?;
    let binding_id = parse::path_id(&req, "binding_id")?;
    let query = Query::parse(req.query_string())?;
    let binding = state
        .registry
        .binding_for(&instance_id, &binding_id, &platform)
        .await?
        .ok_or_else(|| ApiError::Gone(format!("binding {binding_id} does not exist")))?;
    let upstream = state.upstream(&binding.broker)?;
    state.check_breaker(&upstream)?;
    state.check_broker_limit(&binding.broker)?;

    let path = UpstreamPath::binding(&instance_id, &binding_id)
        .last_operation()
        .with_query(query.upstream(&binding.upstream_service_id, &binding.upstream_plan_id));
    let reply = state
        .call_upstream(&upstream, Method::GET, &path, None, &call)
        .await;
    if let Ok(answer) = &reply {
        match forward::polled(answer) {
            Some(polled) => state.registry.observe_binding(&binding_id, polled).await?,
            None if answer.status == 200 => {
                return Err(ApiError::UpstreamError {
                    broker: binding.broker.clone(),
                    reason: "invalid last_operation answer".to_owned(),
                });
            }
            None => {}
        }
    }
    let outcome = classify(Endpoint::Read, &reply);
    respond(&binding.broker, reply, &outcome)
}
