//! Service instance endpoints: provision, update, deprovision, fetch, last_operation.
//!
//! Each handler reads top to bottom: parse (400) → resolve and decide (route table or registry, then
//! the policy: 403/400/503) → admit in the registry (409/422/404/410, write-ahead intent) → call the
//! upstream with upstream ids → record the outcome → answer. Nothing after the upstream call answers
//! a 4xx of its own.

use actix_web::HttpResponse;
use osb_policies::Operation;
use osb_routing::UpstreamPath;
use osb_routing::registry::{Admission, NewInstance, Outcome, fingerprint};
use reqwest::Method;
use serde_json::Value;

use super::answer::{self, Endpoint};
use super::call::OsbCall;
use super::decide::map_plan;
use super::failover::{Failover, Target};
use super::{Fetched, require_retrievable};
use crate::edge::parse::{BodyKind, RequestBody};
use crate::error::ApiError;

/// `PUT /v2/service_instances/{instance_id}`
pub async fn provision(call: OsbCall, body: RequestBody) -> Result<HttpResponse, ApiError> {
    // 1. Parse: which instance, what (400 on any mistake).
    let (state, platform) = (call.state(), &call.platform);
    let instance_id = call.path_id("instance_id")?;
    let query = call.query()?;
    let mut body = call.body(BodyKind::Provision, &body)?;
    let plan_id = body.plan_id.clone().unwrap_or_default();
    // A retry is recognised by what the platform sent, before any rule changes it.
    let fingerprint = fingerprint(&[
        ("service_id", Some(&Value::String(body.service_id.clone()))),
        ("plan_id", Some(&Value::String(plan_id.clone()))),
        ("parameters", body.parameters()),
    ]);

    // 2. Decide: the owning broker (route table, or placement of a logical offering) and the
    //    policy's verdict (visibility, deny rules, parameter rules, the plan's schema).
    let decision = call.decide(|d| d.provision(platform, &instance_id, &body))?;
    decision.apply_to(&mut body);
    // The placed broker, or (logical offerings) the next candidate that admits the call.
    let (first, mut failover) = Failover::of(&decision);
    let (mut target, mut upstream) = failover.admit(&call, first, &decision.service_id, &decision.plan_id)?;

    // 3. Admit: a new intent, an identical retry, or 409/422. The intent is durable from here.
    let new = NewInstance {
        instance_id: instance_id.to_string(),
        platform: platform.clone(),
        broker: target.broker.clone(),
        service_id: decision.service_id.clone(),
        plan_id: decision.plan_id.clone(),
        upstream_service_id: target.upstream_service_id.clone(),
        upstream_plan_id: target.upstream_plan_id.clone(),
        fingerprint,
        context: body.fields.get("context").cloned(),
        quotas: decision.quotas.clone(),
    };
    let admission = call.registry("begin", state.registry.begin_provision(&new)).await;
    call.count_quota_refusal(&admission);
    let mut admission = admission?;
    // A retry goes where the instance was recorded (an earlier call may have failed over).
    if let Admission::Retry(record) = &admission
        && record.broker != target.broker
    {
        target = Target {
            broker: record.broker.clone(),
            upstream_service_id: record.upstream_service_id.clone(),
            upstream_plan_id: record.upstream_plan_id.clone(),
        };
        upstream = call.admit(&target.broker, &decision.service_id, &decision.plan_id)?;
    }

    // 4. Upstream, with upstream ids. From here on: no 4xx of our own. A fresh provision that
    //    cannot have reached its broker moves to the next candidate, intent first.
    let path = UpstreamPath::instance(&instance_id).with_query(query.accepts_incomplete());
    let sent = loop {
        let upstream_body = body.upstream(&target.upstream_service_id, Some(&target.upstream_plan_id), None);
        let sent = call
            .send(
                &upstream,
                Endpoint::Provision,
                Method::PUT,
                &path,
                Some(upstream_body),
            )
            .await;
        let next = match (&sent.reply, &admission) {
            (Err(failed), Admission::Fresh(_)) => {
                failover.after(&call, &target, failed, &decision.service_id, &decision.plan_id)
            }
            _ => None,
        };
        let Some((next, admitted)) = next else { break sent };
        let moved = state.registry.move_provision(
            &admission,
            &next.broker,
            &next.upstream_service_id,
            &next.upstream_plan_id,
        );
        match call.registry("failover", moved).await {
            Ok(moved) => (admission, target, upstream) = (moved, next, admitted),
            Err(_) => break sent,
        }
    };

    // 5. Record the outcome (orphan-mitigates a failed create), then answer.
    call.registry(
        "finish",
        state.registry.finish_provision(&admission, &sent.outcome),
    )
    .await?;
    sent.respond()
}

/// `PATCH /v2/service_instances/{instance_id}`
pub async fn update(call: OsbCall, body: RequestBody) -> Result<HttpResponse, ApiError> {
    let (state, platform) = (call.state(), &call.platform);
    let instance_id = call.path_id("instance_id")?;
    let query = call.query()?;
    let mut body = call.body(BodyKind::Update, &body)?;
    let fingerprint = fingerprint(&[
        ("plan_id", body.fields.get("plan_id")),
        ("parameters", body.parameters()),
        ("maintenance_info", body.fields.get("maintenance_info")),
        ("context", body.fields.get("context")),
    ]);

    let record = state
        .registry
        .instance_for(&instance_id, platform)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance {instance_id} does not exist")))?;
    if body.service_id != record.service_id {
        return Err(ApiError::BadRequest(format!(
            "service_id does not match instance {instance_id}"
        )));
    }
    let target_plan = body.plan_id.clone().unwrap_or_else(|| record.plan_id.clone());
    let (decision, plan_change) = call.decide(|d| d.update(platform, &record, &target_plan, &body))?;
    let routes = state.catalog.snapshot().routes.clone();
    let previous_upstream_plan = body
        .previous_plan_id()
        .map(|p| map_plan(&routes, &record, p))
        .transpose()?;
    decision.apply_to(&mut body);
    let upstream = call.admit(&record.broker, &record.service_id, &target_plan)?;

    let begin = state
        .registry
        .begin_update(&instance_id, platform, plan_change.clone(), &fingerprint);
    let admission = call.registry("begin", begin).await?;

    let upstream_plan = match (&plan_change, body.plan_id.as_deref()) {
        (Some((_, upstream_plan)), _) => Some(upstream_plan.clone()),
        (None, Some(_)) => Some(record.upstream_plan_id.clone()),
        (None, None) => None,
    };
    let upstream_body = body.upstream(
        &record.upstream_service_id,
        upstream_plan.as_deref(),
        previous_upstream_plan.as_deref(),
    );
    let path = UpstreamPath::instance(&instance_id).with_query(query.accepts_incomplete());
    let sent = call
        .send(
            &upstream,
            Endpoint::Update,
            Method::PATCH,
            &path,
            Some(upstream_body),
        )
        .await;

    call.registry("finish", state.registry.finish_update(&admission, &sent.outcome))
        .await?;
    sent.respond()
}

/// `DELETE /v2/service_instances/{instance_id}?service_id&plan_id[&accepts_incomplete]`
pub async fn deprovision(call: OsbCall) -> Result<HttpResponse, ApiError> {
    let (state, platform) = (call.state(), &call.platform);
    let instance_id = call.path_id("instance_id")?;
    let query = call.query()?;
    let service_id = query.required("service_id")?;
    let plan_id = query.required("plan_id")?;

    let record = state
        .registry
        .instance_for(&instance_id, platform)
        .await?
        .ok_or_else(|| ApiError::Gone(format!("instance {instance_id} does not exist")))?;
    if service_id != record.service_id {
        return Err(ApiError::BadRequest(format!(
            "service_id does not match instance {instance_id}"
        )));
    }
    let routes = state.catalog.snapshot().routes.clone();
    let upstream_plan = map_plan(&routes, &record, &plan_id)?;
    call.decide(|d| d.existing(platform, Operation::Deprovision, &record, &plan_id, None))?;
    let upstream = call.admit(&record.broker, &record.service_id, &plan_id)?;

    let fingerprint = fingerprint(&[("deprovision", None)]);
    let begin = state
        .registry
        .begin_deprovision(&instance_id, platform, &fingerprint);
    let admission = call.registry("begin", begin).await?;

    let path = UpstreamPath::instance(&instance_id)
        .with_query(query.upstream(&record.upstream_service_id, &upstream_plan));
    let sent = call
        .send(&upstream, Endpoint::Deprovision, Method::DELETE, &path, None)
        .await;

    call.registry(
        "finish",
        state.registry.finish_deprovision(&admission, &sent.outcome),
    )
    .await?;
    // A plan the catalog guard holds may have lost its last instance.
    state.catalog.instances_changed();
    sent.respond()
}

/// `GET /v2/service_instances/{instance_id}`: the upstream's answer with gateway ids.
pub async fn fetch(call: OsbCall) -> Result<HttpResponse, ApiError> {
    let (state, platform) = (call.state(), &call.platform);
    let instance_id = call.path_id("instance_id")?;
    call.query()?;
    let record = state
        .registry
        .instance_for(&instance_id, platform)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance {instance_id} does not exist")))?;
    require_retrievable(
        state,
        &record.broker,
        &record.upstream_service_id,
        Fetched::Instance,
    )?;
    let upstream = call.admit(&record.broker, &record.service_id, &record.plan_id)?;

    let path = UpstreamPath::instance(&instance_id);
    let sent = call
        .send(&upstream, Endpoint::Read, Method::GET, &path, None)
        .await;
    match sent.reply {
        Ok(reply) if sent.outcome == Outcome::Done => {
            let routes = state.catalog.snapshot().routes.clone();
            let upstream_plan = serde_json::from_slice::<Value>(&reply.body)
                .ok()
                .and_then(|b| b.get("plan_id").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| record.upstream_plan_id.clone());
            let gateway_plan = if upstream_plan == record.upstream_plan_id {
                record.plan_id.clone()
            } else {
                routes
                    .gateway_id(&record.broker, &upstream_plan)
                    .map_or(upstream_plan.clone(), str::to_owned)
            };
            let body = answer::rewrite_ids(
                &reply.body,
                &[
                    ("service_id", &record.upstream_service_id, &record.service_id),
                    ("plan_id", &upstream_plan, &gateway_plan),
                ],
            );
            Ok(answer::pass_through(&record.broker, &reply, body))
        }
        reply => answer::respond(&record.broker, reply, &sent.outcome),
    }
}

/// `GET /v2/service_instances/{instance_id}/last_operation[?service_id&plan_id&operation]`
pub async fn last_operation(call: OsbCall) -> Result<HttpResponse, ApiError> {
    let (state, platform) = (call.state(), &call.platform);
    let instance_id = call.path_id("instance_id")?;
    let query = call.query()?;
    let record = state
        .registry
        .instance_for(&instance_id, platform)
        .await?
        .ok_or_else(|| ApiError::Gone(format!("instance {instance_id} does not exist")))?;
    let upstream = call.admit(&record.broker, &record.service_id, &record.plan_id)?;

    // The record keeps the plan prior to an update until it succeeds: what OSB asks to poll with.
    let path = UpstreamPath::instance(&instance_id)
        .last_operation()
        .with_query(query.upstream(&record.upstream_service_id, &record.upstream_plan_id));
    let sent = call
        .send(&upstream, Endpoint::Read, Method::GET, &path, None)
        .await;
    if let Ok(reply) = &sent.reply {
        match answer::polled(reply) {
            Some(polled) => {
                state.registry.observe_instance(&instance_id, polled).await?;
                state.catalog.instances_changed();
            }
            None if reply.status == 200 => {
                return Err(ApiError::UpstreamError {
                    broker: record.broker.clone(),
                    reason: "invalid last_operation answer".to_owned(),
                });
            }
            None => {}
        }
    }
    sent.respond()
}
