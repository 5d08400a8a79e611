//! Service binding endpoints: bind, unbind, fetch, last_operation.
//!
//! Same chain as the instance endpoints; the owner comes from the instance's registry record.
//! Binding answers carry credentials: they pass through to the platform and are never logged.

use actix_web::HttpResponse;
use osb_policies::Operation;
use osb_routing::UpstreamPath;
use osb_routing::registry::{NewBinding, fingerprint};
use reqwest::Method;
use serde_json::Value;

use super::answer::{self, Endpoint};
use super::call::OsbCall;
use super::decide::map_plan;
use super::{Fetched, require_retrievable};
use crate::edge::parse::{BodyKind, RequestBody};
use crate::error::ApiError;

/// `PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}`
pub async fn bind(call: OsbCall, body: RequestBody) -> Result<HttpResponse, ApiError> {
    // 1. Parse.
    let (state, platform) = (call.state(), &call.platform);
    let instance_id = call.path_id("instance_id")?;
    let binding_id = call.path_id("binding_id")?;
    let query = call.query()?;
    let mut body = call.body(BodyKind::Bind, &body)?;
    let plan_id = body.plan_id.clone().unwrap_or_default();
    let fingerprint = fingerprint(&[
        ("service_id", Some(&Value::String(body.service_id.clone()))),
        ("plan_id", Some(&Value::String(plan_id.clone()))),
        ("parameters", body.parameters()),
        ("bind_resource", body.fields.get("bind_resource")),
    ]);

    // 2. Resolve: the instance's owner; the plan must be one of the instance's service.
    let instance = state
        .registry
        .instance_for(&instance_id, platform)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance {instance_id} does not exist")))?;
    if body.service_id != instance.service_id {
        return Err(ApiError::BadRequest(format!(
            "service_id does not match instance {instance_id}"
        )));
    }
    let routes = state.catalog.snapshot().routes.clone();
    let upstream_plan = map_plan(&routes, &instance, &plan_id)?;
    // 3. The policy: bindability, deny rules, parameter rules, the plan's binding schema.
    let decision = call.decide(|d| d.bind(platform, &instance, &plan_id, &body))?;
    decision.apply_to(&mut body);
    let upstream = call.admit(&instance.broker, &instance.service_id, &plan_id)?;

    // 4. Admit (write-ahead intent, retry, or 404/409/422).
    let new = NewBinding {
        binding_id: binding_id.to_string(),
        instance_id: instance_id.to_string(),
        platform: platform.clone(),
        fingerprint,
        quotas: decision.quotas.clone(),
    };
    let admission = call.registry("begin", state.registry.begin_bind(&new)).await;
    call.count_quota_refusal(&admission);
    let admission = admission?;

    // 5. Upstream.
    let path = UpstreamPath::binding(&instance_id, &binding_id).with_query(query.accepts_incomplete());
    let upstream_body = body.upstream(&instance.upstream_service_id, Some(&upstream_plan), None);
    let sent = call
        .send(&upstream, Endpoint::Bind, Method::PUT, &path, Some(upstream_body))
        .await;

    // 6. Outcome (a failed bind is unbound upstream by the mitigation worker), answer.
    call.registry("finish", state.registry.finish_bind(&admission, &sent.outcome))
        .await?;
    sent.respond()
}

/// `DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}?service_id&plan_id`
pub async fn unbind(call: OsbCall) -> Result<HttpResponse, ApiError> {
    let (state, platform) = (call.state(), &call.platform);
    let instance_id = call.path_id("instance_id")?;
    let binding_id = call.path_id("binding_id")?;
    let query = call.query()?;
    let service_id = query.required("service_id")?;
    let plan_id = query.required("plan_id")?;

    let binding = state
        .registry
        .binding_for(&instance_id, &binding_id, platform)
        .await?
        .ok_or_else(|| ApiError::Gone(format!("binding {binding_id} does not exist")))?;
    if service_id != binding.service_id {
        return Err(ApiError::BadRequest(format!(
            "service_id does not match binding {binding_id}"
        )));
    }
    let instance = state.registry.instance_for(&instance_id, platform).await?;
    let routes = state.catalog.snapshot().routes.clone();
    let upstream_plan = match &instance {
        Some(instance) => map_plan(&routes, instance, &plan_id)?,
        None => binding.upstream_plan_id.clone(),
    };
    if let Some(instance) = &instance {
        call.decide(|d| d.existing(platform, Operation::Unbind, instance, &plan_id, None))?;
    }
    let upstream = call.admit(&binding.broker, &binding.service_id, &plan_id)?;

    let fingerprint = fingerprint(&[("unbind", None)]);
    let begin = state
        .registry
        .begin_unbind(&instance_id, &binding_id, platform, &fingerprint);
    let admission = call.registry("begin", begin).await?;
    let path = UpstreamPath::binding(&instance_id, &binding_id)
        .with_query(query.upstream(&binding.upstream_service_id, &upstream_plan));
    let sent = call
        .send(&upstream, Endpoint::Unbind, Method::DELETE, &path, None)
        .await;

    call.registry("finish", state.registry.finish_unbind(&admission, &sent.outcome))
        .await?;
    sent.respond()
}

/// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}`
pub async fn fetch(call: OsbCall) -> Result<HttpResponse, ApiError> {
    let (state, platform) = (call.state(), &call.platform);
    let instance_id = call.path_id("instance_id")?;
    let binding_id = call.path_id("binding_id")?;
    call.query()?;
    let binding = state
        .registry
        .binding_for(&instance_id, &binding_id, platform)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("binding {binding_id} does not exist")))?;
    require_retrievable(
        state,
        &binding.broker,
        &binding.upstream_service_id,
        Fetched::Binding,
    )?;
    let upstream = call.admit(&binding.broker, &binding.service_id, &binding.plan_id)?;

    let path = UpstreamPath::binding(&instance_id, &binding_id);
    let sent = call
        .send(&upstream, Endpoint::Read, Method::GET, &path, None)
        .await;
    sent.respond()
}

/// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation`
pub async fn last_operation(call: OsbCall) -> Result<HttpResponse, ApiError> {
    let (state, platform) = (call.state(), &call.platform);
    let instance_id = call.path_id("instance_id")?;
    let binding_id = call.path_id("binding_id")?;
    let query = call.query()?;
    let binding = state
        .registry
        .binding_for(&instance_id, &binding_id, platform)
        .await?
        .ok_or_else(|| ApiError::Gone(format!("binding {binding_id} does not exist")))?;
    let upstream = call.admit(&binding.broker, &binding.service_id, &binding.plan_id)?;

    let path = UpstreamPath::binding(&instance_id, &binding_id)
        .last_operation()
        .with_query(query.upstream(&binding.upstream_service_id, &binding.upstream_plan_id));
    let sent = call
        .send(&upstream, Endpoint::Read, Method::GET, &path, None)
        .await;
    if let Ok(reply) = &sent.reply {
        match answer::polled(reply) {
            Some(polled) => state.registry.observe_binding(&binding_id, polled).await?,
            None if reply.status == 200 => {
                return Err(ApiError::UpstreamError {
                    broker: binding.broker.clone(),
                    reason: "invalid last_operation answer".to_owned(),
                });
            }
            None => {}
        }
    }
    sent.respond()
}
