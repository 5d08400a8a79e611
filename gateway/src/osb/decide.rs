//! The policy step of the request path: visibility, deny rules, placement of logical offerings,
//! parameter rules and schema checks, all before anything is forwarded.
//!
//! Handlers and `explain` (CLI and admin API) call the same functions, so a dry run answers exactly
//! what a real call would. Inputs are a [`Decider`]: the catalog snapshot, the policy in force,
//! broker health and the compiled-schema cache.

use std::sync::Arc;

use osb_policies::schema::parameters_schema;
use osb_policies::{
    CallFacts, Denial, DenialKind, Explanation, Operation, Parameters, PlanFacts, QuotaHold, Schema,
};
use osb_routing::PolicyState;
use osb_routing::RouteTable;
use osb_routing::cache::CatalogSnapshot;
use osb_routing::catalog::PlanRoute;
use osb_routing::registry::InstanceRecord;
use osb_routing::{Availability, Unavailable};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::edge::parse::Body;
use crate::error::ApiError;

/// Compiled schemas, per (gateway plan id, operation, catalog generation).
pub type SchemaCache = moka::sync::Cache<(String, &'static str, u64), Arc<Result<Schema, String>>>;

/// How long a compiled schema stays cached unused: entries of superseded catalog generations
/// leave after this, rather than filling the cache (a compiled schema can take ~100 KB).
const SCHEMA_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// The explanation when the platform sent no `parameters`: nothing to check against the schema.
const NO_PARAMETERS: &str = "no parameters sent: the broker applies its defaults (schema not checked)";

/// A new schema cache.
pub fn schema_cache() -> SchemaCache {
    moka::sync::Cache::builder()
        .max_capacity(4096)
        .time_to_idle(SCHEMA_IDLE)
        .build()
}

/// What a decision looks at.
pub struct Decider<'a> {
    pub snapshot: &'a CatalogSnapshot,
    pub policy: &'a PolicyState,
    pub healthy: &'a dyn Fn(&str) -> bool,
    pub schemas: &'a SchemaCache,
}

/// The outcome of the policy step for a call that may go ahead.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The broker the call goes to.
    pub broker: String,
    /// Gateway service and plan ids recorded for the instance (logical ones for an offering).
    pub service_id: String,
    pub plan_id: String,
    pub upstream_service_id: String,
    pub upstream_plan_id: String,
    /// The parameters to forward when the rules changed them (`None`: forward as received).
    #[serde(skip)]
    pub parameters: Option<Map<String, Value>>,
    /// Names of the parameters the rules set or changed (never values).
    pub parameters_changed: Vec<String>,
    /// The quota counts a new instance (provision) or binding (bind) joins; the registry refuses
    /// it when one is full.
    pub quotas: Vec<QuotaHold>,
    /// Where a provision of a logical offering goes, in order, when [`Decision::broker`] cannot
    /// have received it (see `osb::instances`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<FailoverTarget>,
    /// Why, rule by rule.
    pub explanation: Vec<String>,
}

/// A candidate broker a provision can fail over to, with the upstream ids it is sent with.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverTarget {
    pub broker: String,
    pub upstream_service_id: String,
    pub upstream_plan_id: String,
}

impl Decision {
    /// Puts the decided parameters into `body` (when the rules changed them).
    pub fn apply_to(&self, body: &mut Body) {
        if let Some(parameters) = &self.parameters {
            body.fields
                .insert("parameters".to_owned(), Value::Object(parameters.clone()));
        }
    }
}

fn denied(denial: Denial) -> ApiError {
    match denial.kind {
        DenialKind::Forbidden => ApiError::PolicyDenied {
            rule: denial.rule,
            reason: denial.reason,
        },
        DenialKind::Invalid => ApiError::BadRequest(format!("{} (rule {})", denial.reason, denial.rule)),
        DenialKind::Unavailable => ApiError::NoPlacement(denial.reason),
    }
}

/// The catalog facts of a gateway plan id: logical or routed.
pub(super) struct Target<'a> {
    broker: String,
    service: String,
    plan: String,
    tags: Vec<String>,
    free: bool,
    logical: Option<(&'a str, &'a str)>,
    route: Option<&'a PlanRoute>,
}

impl Target<'_> {
    /// The plan as the policy sees it.
    pub(super) fn plan_facts(&self) -> PlanFacts<'_> {
        PlanFacts {
            broker: &self.broker,
            service: &self.service,
            plan: &self.plan,
            tags: &self.tags,
            free: self.free,
        }
    }
}

impl Decider<'_> {
    pub(super) fn target<'s>(&'s self, service_id: &str, plan_id: &str) -> Result<Target<'s>, ApiError> {
        if let Some((offering, plan)) = self.policy.logical.plan(plan_id) {
            let offering_def = self.policy.policy.offering(offering);
            if self.policy.logical.offering(service_id) != Some(offering) {
                return Err(ApiError::BadRequest(format!(
                    "plan_id {plan_id} is not a plan of service_id {service_id}"
                )));
            }
            return Ok(Target {
                broker: "gateway".to_owned(),
                service: offering.to_owned(),
                plan: plan.to_owned(),
                tags: offering_def.map(|o| o.tags.clone()).unwrap_or_default(),
                free: offering_def
                    .and_then(|o| o.plans.iter().find(|p| p.name == plan))
                    .is_none_or(|p| p.free),
                logical: Some((offering, plan)),
                route: None,
            });
        }
        let routes = &self.snapshot.routes;
        let Some(route) = routes.plan(plan_id) else {
            if let Some(held) = self.snapshot.held_plan(plan_id) {
                return Err(ApiError::BadRequest(format!(
                    "plan_id {plan_id} was removed by broker {}; it is served only for its existing instances",
                    held.broker
                )));
            }
            return Err(ApiError::BadRequest(format!("unknown plan_id {plan_id}")));
        };
        if route.service_id != service_id {
            return Err(ApiError::BadRequest(match routes.service(service_id) {
                Some(_) => format!("plan_id {plan_id} is not a plan of service_id {service_id}"),
                None => format!("unknown service_id {service_id}"),
            }));
        }
        let service = routes.service(service_id);
        Ok(Target {
            broker: route.broker.to_string(),
            service: service.map(|s| s.name.clone()).unwrap_or_default(),
            plan: route.name.clone(),
            tags: service.map(|s| s.tags.clone()).unwrap_or_default(),
            free: route.free,
            logical: None,
            route: Some(route),
        })
    }

    /// The policy's decision on a provision.
    ///
    /// # Errors
    /// 400 (unknown or mismatched ids, parameters outside the rules or the schema), 403
    /// `PolicyDenied`, 503 while catalogs are missing or no candidate broker is healthy.
    pub fn provision(&self, platform: &str, instance_id: &str, body: &Body) -> Result<Decision, ApiError> {
        if let Availability::Starting { missing } = &self.snapshot.availability {
            return Err(ApiError::CatalogUnavailable(Unavailable {
                missing: missing.clone(),
            }));
        }
        let plan_id = body.plan_id.as_deref().unwrap_or_default();
        let target = self.target(&body.service_id, plan_id)?;
        let call = CallFacts {
            platform,
            operation: Operation::Provision,
            instance_id,
            plan: target.plan_facts(),
            context: body.fields.get("context"),
            parameters: body.parameters().and_then(Value::as_object),
        };
        let mut explanation = self.policy.policy.admit(&call).map_err(denied)?;

        // Where it goes: the route of the plan, or the placement of a logical offering (with the
        // candidates it fails over to).
        let mut failover = Vec::new();
        let (route_id, route) = match (target.logical, target.route) {
            (_, Some(route)) => (plan_id.to_owned(), route),
            (Some((offering, plan)), None) => {
                let offering = self
                    .policy
                    .policy
                    .offering(offering)
                    .ok_or_else(|| ApiError::Internal(format!("offering {offering} vanished")))?;
                let placement = self
                    .policy
                    .policy
                    .place(offering, plan, &call, self.healthy)
                    .map_err(denied)?;
                explanation.0.extend(placement.explanation.0.iter().cloned());
                failover = placement
                    .alternatives
                    .iter()
                    .filter_map(|a| {
                        let (_, route) = self
                            .snapshot
                            .routes
                            .plan_by_name(&a.broker, &a.service, &a.plan)?;
                        Some(FailoverTarget {
                            broker: route.broker.to_string(),
                            upstream_service_id: route.upstream_service_id.clone(),
                            upstream_plan_id: route.upstream_plan_id.clone(),
                        })
                    })
                    .collect();
                let (id, route) = self
                    .snapshot
                    .routes
                    .plan_by_name(&placement.broker, &placement.service, &placement.plan)
                    .ok_or_else(|| {
                        ApiError::NoPlacement(format!(
                            "broker {} has no plan {} of {} in its catalog (rule {})",
                            placement.broker, placement.plan, placement.service, placement.rule
                        ))
                    })?;
                (id.to_owned(), route)
            }
            (None, None) => return Err(ApiError::Internal("plan without a route".to_owned())),
        };

        let (outcome, changed) = self.parameters(&call, &mut explanation)?;
        let Parameters {
            parameters,
            changed: parameters_changed,
            ..
        } = outcome;
        // The schema judges what the platform sent; without `parameters` the broker applies
        // its defaults (and says 4xx itself if it needs some).
        if call.parameters.is_some() {
            self.check_schema(
                &route_id,
                Operation::Provision,
                parameters.as_ref().or(call.parameters),
                &mut explanation,
            )?;
        } else {
            explanation.0.push(NO_PARAMETERS.to_owned());
        }
        let quotas = self.quotas(&call, &mut explanation);
        Ok(Decision {
            broker: route.broker.to_string(),
            service_id: body.service_id.clone(),
            plan_id: plan_id.to_owned(),
            upstream_service_id: route.upstream_service_id.clone(),
            upstream_plan_id: route.upstream_plan_id.clone(),
            parameters: changed.then_some(parameters).flatten(),
            parameters_changed,
            quotas,
            failover,
            explanation: explanation.0,
        })
    }

    /// The decision on an update: [`Decider::existing`], then the plan change it makes, as
    /// `(gateway plan id, upstream plan id)`: a logical instance's plan maps through its offering,
    /// any other moves to another plan of its service at its broker if its plan is updateable.
    ///
    /// # Errors
    /// As [`Decider::existing`]; 400 for a plan that cannot be changed or is not the service's.
    pub fn update(
        &self,
        platform: &str,
        instance: &InstanceRecord,
        target_plan: &str,
        body: &Body,
    ) -> Result<(Decision, Option<(String, String)>), ApiError> {
        let (decision, remapped) =
            self.existing(platform, Operation::Update, instance, target_plan, Some(body))?;
        let routes = &self.snapshot.routes;
        let plan_change = match (target_plan != instance.plan_id, remapped) {
            (false, _) => None,
            (true, Some(upstream_plan)) => Some((target_plan.to_owned(), upstream_plan)),
            (true, None) => {
                let updateable = routes.plan(&instance.plan_id).is_none_or(|p| p.plan_updateable);
                if !updateable {
                    return Err(ApiError::BadRequest(format!(
                        "the plan of instance {} cannot be changed (plan_updateable is false)",
                        instance.instance_id
                    )));
                }
                Some((target_plan.to_owned(), map_plan(routes, instance, target_plan)?))
            }
        };
        Ok((decision, plan_change))
    }

    /// The decision on a bind: the plan must be bindable (the broker's catalog, or a logical
    /// offering's), then [`Decider::existing`].
    ///
    /// # Errors
    /// 400 for a plan that is not bindable; as [`Decider::existing`].
    pub fn bind(
        &self,
        platform: &str,
        instance: &InstanceRecord,
        plan_id: &str,
        body: &Body,
    ) -> Result<Decision, ApiError> {
        let logical_bindable = self
            .policy
            .offerings
            .iter()
            .find(|o| o.id == instance.service_id)
            .map(|o| {
                let plan = o.plans.iter().find(|p| p.id == plan_id);
                plan.and_then(|p| p.flag("bindable"))
                    .unwrap_or_else(|| o.bindable())
            });
        let catalog_bindable = self.snapshot.routes.plan(plan_id).map(|p| p.bindable);
        if catalog_bindable.or(logical_bindable) == Some(false) {
            return Err(ApiError::BadRequest(format!("plan {plan_id} is not bindable")));
        }
        let (decision, _) = self.existing(platform, Operation::Bind, instance, plan_id, Some(body))?;
        Ok(decision)
    }

    /// The policy's decision on a call on an existing instance (update, bind, deprovision, unbind):
    /// deny rules always; for update and bind also parameter rules and the schema, and for a plan
    /// change the visibility of the new plan. Returns the decision and, for a logical instance's
    /// plan change, the upstream plan id it maps to.
    ///
    /// # Errors
    /// 400, 403 `PolicyDenied`.
    pub fn existing(
        &self,
        platform: &str,
        operation: Operation,
        instance: &InstanceRecord,
        plan_id: &str,
        body: Option<&Body>,
    ) -> Result<(Decision, Option<String>), ApiError> {
        let target = self.target(&instance.service_id, plan_id).or_else(|e| {
            // A plan that left the catalog still routes by the record: judge it by the record's plan.
            if plan_id == instance.plan_id {
                self.target(&instance.service_id, &instance.plan_id)
            } else {
                Err(e)
            }
        });
        let target = match target {
            Ok(t) => t,
            Err(_) if plan_id == instance.plan_id => Target {
                broker: instance.broker.clone(),
                service: String::new(),
                plan: String::new(),
                tags: Vec::new(),
                free: true,
                logical: None,
                route: None,
            },
            Err(e) => return Err(e),
        };
        let call = CallFacts {
            platform,
            operation,
            instance_id: &instance.instance_id,
            plan: target.plan_facts(),
            context: body
                .and_then(|b| b.fields.get("context"))
                .or(instance.context.as_ref()),
            parameters: body.and_then(|b| b.parameters()).and_then(Value::as_object),
        };
        let plan_change = plan_id != instance.plan_id;
        let mut explanation = if operation == Operation::Update && plan_change {
            self.policy.policy.admit(&call).map_err(denied)?
        } else {
            match self.policy.policy.denial(&call) {
                Some(denial) => return Err(denied(denial)),
                None => Explanation(vec!["no deny rule matched".to_owned()]),
            }
        };

        // A logical instance changes plan within the broker it was placed on.
        let remapped = match (target.logical, plan_change) {
            (Some((offering, plan)), true) => {
                let upstream_service = self
                    .snapshot
                    .routes
                    .gateway_id(&instance.broker, &instance.upstream_service_id)
                    .and_then(|id| self.snapshot.routes.service(id))
                    .map(|s| s.upstream_name.clone())
                    .unwrap_or_default();
                let upstream_plan = self
                    .policy
                    .policy
                    .offering(offering)
                    .and_then(|o| {
                        self.policy
                            .policy
                            .remap_plan(o, &instance.broker, &upstream_service, plan)
                    })
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "plan {plan} of {offering} is not available on broker {}",
                            instance.broker
                        ))
                    })?;
                let (_, route) = self
                    .snapshot
                    .routes
                    .plan_by_name(&instance.broker, &upstream_service, &upstream_plan)
                    .ok_or_else(|| {
                        ApiError::NoPlacement(format!(
                            "broker {} has no plan {upstream_plan}",
                            instance.broker
                        ))
                    })?;
                explanation.0.push(format!(
                    "plan {plan} maps to {upstream_plan} on {}",
                    instance.broker
                ));
                Some(route.upstream_plan_id.clone())
            }
            _ => None,
        };

        let (parameters, changed, parameters_changed) =
            if matches!(operation, Operation::Update | Operation::Bind) {
                let (outcome, changed) = self.parameters(&call, &mut explanation)?;
                (outcome.parameters, changed, outcome.changed)
            } else {
                (None, false, Vec::new())
            };
        let sent_parameters = body.and_then(Body::parameters).is_some();
        if matches!(operation, Operation::Update | Operation::Bind) && !sent_parameters {
            explanation.0.push(NO_PARAMETERS.to_owned());
        }
        if matches!(operation, Operation::Update | Operation::Bind) && sent_parameters {
            let schema_plan = self
                .snapshot
                .routes
                .gateway_id(
                    &instance.broker,
                    remapped.as_deref().unwrap_or(&instance.upstream_plan_id),
                )
                .map(str::to_owned);
            if let Some(schema_plan) = schema_plan {
                self.check_schema(
                    &schema_plan,
                    operation,
                    parameters.as_ref().or(call.parameters),
                    &mut explanation,
                )?;
            }
        }
        let quotas = self.quotas(&call, &mut explanation);
        let decision = Decision {
            broker: instance.broker.clone(),
            service_id: instance.service_id.clone(),
            plan_id: plan_id.to_owned(),
            upstream_service_id: instance.upstream_service_id.clone(),
            upstream_plan_id: remapped
                .clone()
                .unwrap_or_else(|| instance.upstream_plan_id.clone()),
            parameters: changed.then_some(parameters).flatten(),
            parameters_changed,
            quotas,
            failover: Vec::new(),
            explanation: explanation.0,
        };
        Ok((decision, remapped))
    }

    /// Parameter rules: the parameters after them (with the names they set or forced), and whether
    /// they differ from what the platform sent.
    fn parameters(
        &self,
        call: &CallFacts<'_>,
        explanation: &mut Explanation,
    ) -> Result<(Parameters, bool), ApiError> {
        let mut outcome = self.policy.policy.parameters(call).map_err(denied)?;
        let changed = outcome.parameters.as_ref() != call.parameters;
        explanation.0.append(&mut outcome.explanation.0);
        Ok((outcome, changed))
    }

    /// Checks parameters against the schema of gateway plan `plan_id` for `operation`.
    fn check_schema(
        &self,
        plan_id: &str,
        operation: Operation,
        parameters: Option<&Map<String, Value>>,
        explanation: &mut Explanation,
    ) -> Result<(), ApiError> {
        if !self.policy.policy.schema_validation {
            return Ok(());
        }
        let key = (plan_id.to_owned(), operation.as_str(), self.snapshot.generation);
        let schema = self.schemas.get_with(key, || {
            let schema = self
                .snapshot
                .catalog
                .services
                .iter()
                .flat_map(|s| s.plans.iter())
                .find(|p| p.id == plan_id)
                .and_then(|p| p.extra.get("schemas"))
                .and_then(|schemas| parameters_schema(schemas, operation))
                .map(Schema::compile);
            Arc::new(schema.unwrap_or_else(|| Err(String::new())))
        });
        // No schema (or one that does not compile): nothing to check against.
        if let Ok(schema) = schema.as_ref() {
            let value = parameters.map(|p| Value::Object(p.clone()));
            schema.check(value.as_ref()).map_err(|errors| {
                ApiError::BadRequest(format!(
                    "parameters do not match the plan's schema: {}",
                    errors.join("; ")
                ))
            })?;
            explanation.0.push(format!(
                "parameters match the plan's {} schema",
                operation.as_str()
            ));
        }
        Ok(())
    }
}

/// The upstream id of `plan_id` for a call on `instance`: the instance's own plan, or another plan
/// of the same service at the same broker.
///
/// # Errors
/// [`ApiError::BadRequest`] for any other plan.
pub fn map_plan(routes: &RouteTable, instance: &InstanceRecord, plan_id: &str) -> Result<String, ApiError> {
    if plan_id == instance.plan_id {
        return Ok(instance.upstream_plan_id.clone());
    }
    match routes.plan(plan_id) {
        Some(route) if *route.broker == *instance.broker && route.service_id == instance.service_id => {
            Ok(route.upstream_plan_id.clone())
        }
        _ => Err(ApiError::BadRequest(format!(
            "plan_id {plan_id} is not a plan of the service of instance {}",
            instance.instance_id
        ))),
    }
}
