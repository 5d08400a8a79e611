//! Merging the brokers' validated catalogs into one, and the route table that undoes the merge.
//!
//! Pure: catalogs and broker settings in, [`Merged`] out. Each service is renamed
//! `<namespace><separator><name>` (after the broker's rename map) and its ids are made gateway ids
//! (see [`super::ids`]); every other field passes through untouched. Brokers are merged in
//! configuration order, so when two brokers would publish the same name or id the earlier one keeps
//! it and the later service (or plan) is dropped with a reason: never silently shadowed.

use std::collections::HashMap;
use std::sync::Arc;

use osb_config::{BrokerSettings, MAX_NAME_LEN};

use crate::catalog::ids::gateway_id;
use crate::catalog::model::{Catalog, Service};
use crate::catalog::validate::Dropped;

/// One broker's input to the merge.
#[derive(Debug, Clone, Copy)]
pub struct BrokerCatalog<'a> {
    pub broker: &'a BrokerSettings,
    pub services: &'a [Service],
}

/// The merged catalog, its route table, and what the merge had to leave out or warn about.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    pub catalog: Catalog,
    pub routes: RouteTable,
    /// (broker, dropped) for services or plans that collided with an earlier broker's.
    pub dropped: Vec<(String, Dropped)>,
    /// Published names or ids some platforms will reject.
    pub warnings: Vec<MergeWarning>,
}

/// A published service some platforms will reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeWarning {
    pub broker: String,
    /// The service's upstream name (the key of a rename that would fix it).
    pub service: String,
    pub message: String,
}

/// Gateway service and plan ids → the broker that owns them and the upstream ids.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    services: HashMap<String, ServiceRoute>,
    plans: HashMap<String, PlanRoute>,
    /// (broker, upstream id) → gateway id, for mapping upstream answers back.
    gateway_ids: HashMap<(Arc<str>, String), String>,
    /// (broker, upstream service name, upstream plan name) → gateway plan id (placement).
    plans_by_name: HashMap<(Arc<str>, String, String), String>,
}

/// Where a gateway service id leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRoute {
    pub broker: Arc<str>,
    pub upstream_service_id: String,
    /// The published (namespaced) name.
    pub name: String,
    /// The name in the upstream's catalog.
    pub upstream_name: String,
    pub bindable: bool,
    pub instances_retrievable: bool,
    pub bindings_retrievable: bool,
    pub plan_updateable: bool,
    /// The offering's tags.
    pub tags: Vec<String>,
}

/// Where a gateway plan id leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRoute {
    pub broker: Arc<str>,
    /// The gateway id of the plan's service.
    pub service_id: String,
    pub upstream_service_id: String,
    pub upstream_plan_id: String,
    pub name: String,
    /// The plan's `bindable`, else the offering's.
    pub bindable: bool,
    /// The plan's `plan_updateable`, else the offering's.
    pub plan_updateable: bool,
    /// The plan's `free` (OSB: true when absent).
    pub free: bool,
}

impl RouteTable {
    /// The route of a gateway service id.
    pub fn service(&self, service_id: &str) -> Option<&ServiceRoute> {
        self.services.get(service_id)
    }

    /// The route of a gateway plan id.
    pub fn plan(&self, plan_id: &str) -> Option<&PlanRoute> {
        self.plans.get(plan_id)
    }

    /// The gateway id published for `upstream_id` of `broker`.
    pub fn gateway_id(&self, broker: &str, upstream_id: &str) -> Option<&str> {
        self.gateway_ids
            .get(&(Arc::from(broker), upstream_id.to_owned()))
            .map(String::as_str)
    }

    /// The route of plan `plan` of service `service` (upstream names) at `broker`.
    pub fn plan_by_name(&self, broker: &str, service: &str, plan: &str) -> Option<(&str, &PlanRoute)> {
        let id = self
            .plans_by_name
            .get(&(Arc::from(broker), service.to_owned(), plan.to_owned()))?;
        Some((id.as_str(), self.plans.get(id)?))
    }

    /// Adds the route of a service the catalog guard keeps serving although no broker publishes it
    /// any more (its held plans get no route: nothing new is provisioned on them). A service
    /// still routed keeps its route.
    pub fn add_held_service(&mut self, service: &Service, broker: &str, upstream_service_id: &str) {
        if self.services.contains_key(&service.id) {
            return;
        }
        self.services.insert(
            service.id.clone(),
            ServiceRoute {
                broker: Arc::from(broker),
                upstream_service_id: upstream_service_id.to_owned(),
                name: service.name.clone(),
                upstream_name: String::new(),
                bindable: service.bindable(),
                instances_retrievable: service.flag("instances_retrievable").unwrap_or(false),
                bindings_retrievable: service.flag("bindings_retrievable").unwrap_or(false),
                plan_updateable: service.flag("plan_updateable").unwrap_or(false),
                tags: service.tags(),
            },
        );
    }

    /// Number of (services, plans) routed.
    pub fn len(&self) -> (usize, usize) {
        (self.services.len(), self.plans.len())
    }

    /// `true` when nothing is routed.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// Merges the brokers' catalogs in the order given.
pub fn merge(inputs: &[BrokerCatalog<'_>], separator: &str) -> Merged {
    let mut merged = Merged::default();
    // name or id → broker that published it first
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    let mut ids: HashMap<String, Arc<str>> = HashMap::new();

    for input in inputs {
        let settings = input.broker;
        let broker: Arc<str> = Arc::from(settings.name.as_str());
        for upstream in input.services {
            let name = settings.published_name(&upstream.name, separator);
            let service_id = gateway_id(&settings.name, settings.ids, &upstream.id);
            let what = || format!("service {:?}", upstream.name);
            if let Some(owner) = names.get(&name) {
                let reason = format!("name {name:?} is already published by broker {owner:?}");
                merged
                    .dropped
                    .push((settings.name.clone(), Dropped { what: what(), reason }));
                continue;
            }
            if let Some(owner) = ids.get(&service_id) {
                let reason =
                    format!("id {service_id:?} is already published by broker {owner:?} (ids: keep?)");
                merged
                    .dropped
                    .push((settings.name.clone(), Dropped { what: what(), reason }));
                continue;
            }

            let mut service = upstream.clone();
            service.name.clone_from(&name);
            service.id.clone_from(&service_id);
            service.plans.clear();
            let offering_bindable = upstream.bindable();
            let offering_updateable = upstream.flag("plan_updateable").unwrap_or(false);
            let mut plan_routes = Vec::new();
            for upstream_plan in &upstream.plans {
                let plan_id = gateway_id(&settings.name, settings.ids, &upstream_plan.id);
                if let Some(owner) = ids.get(&plan_id).filter(|_| plan_id != service_id) {
                    let reason =
                        format!("id {plan_id:?} is already published by broker {owner:?} (ids: keep?)");
                    let what = format!("plan {:?} of service {:?}", upstream_plan.name, upstream.name);
                    merged
                        .dropped
                        .push((settings.name.clone(), Dropped { what, reason }));
                    continue;
                }
                let mut plan = upstream_plan.clone();
                plan.id.clone_from(&plan_id);
                plan_routes.push((
                    plan_id,
                    PlanRoute {
                        broker: broker.clone(),
                        service_id: service_id.clone(),
                        upstream_service_id: upstream.id.clone(),
                        upstream_plan_id: upstream_plan.id.clone(),
                        name: upstream_plan.name.clone(),
                        bindable: upstream_plan.flag("bindable").unwrap_or(offering_bindable),
                        plan_updateable: upstream_plan
                            .flag("plan_updateable")
                            .unwrap_or(offering_updateable),
                        free: upstream_plan.free(),
                    },
                ));
                service.plans.push(plan);
            }
            if service.plans.is_empty() {
                let reason = "every plan id collides with an earlier broker's".to_owned();
                merged
                    .dropped
                    .push((settings.name.clone(), Dropped { what: what(), reason }));
                continue;
            }

            warn_about_limits(
                &mut merged.warnings,
                settings,
                &upstream.name,
                &name,
                &service_id,
                separator,
            );
            names.insert(name.clone(), broker.clone());
            ids.insert(service_id.clone(), broker.clone());
            for (plan_id, route) in plan_routes {
                ids.insert(plan_id.clone(), broker.clone());
                merged
                    .routes
                    .gateway_ids
                    .insert((broker.clone(), route.upstream_plan_id.clone()), plan_id.clone());
                merged.routes.plans_by_name.insert(
                    (broker.clone(), upstream.name.clone(), route.name.clone()),
                    plan_id.clone(),
                );
                merged.routes.plans.insert(plan_id, route);
            }
            merged
                .routes
                .gateway_ids
                .insert((broker.clone(), upstream.id.clone()), service_id.clone());
            merged.routes.services.insert(
                service_id,
                ServiceRoute {
                    broker: broker.clone(),
                    upstream_service_id: upstream.id.clone(),
                    name,
                    upstream_name: upstream.name.clone(),
                    bindable: offering_bindable,
                    instances_retrievable: upstream.flag("instances_retrievable").unwrap_or(false),
                    bindings_retrievable: upstream.flag("bindings_retrievable").unwrap_or(false),
                    plan_updateable: offering_updateable,
                    tags: upstream.tags(),
                },
            );
            merged.catalog.services.push(service);
        }
    }
    merged
}

/// Names and ids that Kubernetes Service Catalog (63 characters) or OSB 2.13 name rules reject.
fn warn_about_limits(
    warnings: &mut Vec<MergeWarning>,
    settings: &BrokerSettings,
    upstream_name: &str,
    name: &str,
    service_id: &str,
    separator: &str,
) {
    let mut warn = |message: String| {
        warnings.push(MergeWarning {
            broker: settings.name.clone(),
            service: upstream_name.to_owned(),
            message,
        });
    };
    if name.len() > MAX_NAME_LEN {
        warn(format!(
            "service name {name:?} is {} characters; Kubernetes Service Catalog allows {MAX_NAME_LEN} (add a rename)",
            name.len()
        ));
    }
    if service_id.len() > MAX_NAME_LEN {
        warn(format!(
            "service id {service_id:?} is longer than {MAX_NAME_LEN} characters (use ids: rewrite)"
        ));
    }
    if separator == "-"
        && !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        warn(format!(
            "service name {name:?} breaks OSB 2.13's lower-case, digits and hyphens rule (add a rename)"
        ));
    }
}

#[cfg(test)]
mod tests;
