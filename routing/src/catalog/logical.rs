//! Logical offerings as catalog entries: the services the gateway itself presents (from the policy),
//! with deterministic ids, and the table that recognises their ids in requests.
//!
//! Ids are `UUIDv5(ID_NAMESPACE, "offering/<name>")` and `…"offering/<name>/<plan>"`: every replica
//! computes the same ones; renaming an offering or plan changes them.

use std::collections::HashMap;

use osb_policies::{Offering, Policy};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::catalog::ID_NAMESPACE;
use crate::catalog::model::{Plan, Service};

/// The service id of offering `name`.
pub fn offering_id(name: &str) -> String {
    Uuid::new_v5(&ID_NAMESPACE, format!("offering/{name}").as_bytes()).to_string()
}

/// The plan id of plan `plan` of offering `name`.
pub fn offering_plan_id(name: &str, plan: &str) -> String {
    Uuid::new_v5(&ID_NAMESPACE, format!("offering/{name}/{plan}").as_bytes()).to_string()
}

/// The catalog entry of an offering.
pub fn offering_service(offering: &Offering) -> Service {
    let mut extra = Map::new();
    extra.insert("bindable".to_owned(), Value::Bool(offering.bindable));
    extra.insert(
        "plan_updateable".to_owned(),
        Value::Bool(offering.plans.len() > 1),
    );
    if !offering.tags.is_empty() {
        extra.insert("tags".to_owned(), json!(offering.tags));
    }
    if let Some(metadata) = &offering.metadata {
        extra.insert("metadata".to_owned(), metadata.clone());
    }
    let plans = offering
        .plans
        .iter()
        .map(|p| {
            let mut extra = Map::new();
            extra.insert("free".to_owned(), Value::Bool(p.free));
            if let Some(bindable) = p.bindable {
                extra.insert("bindable".to_owned(), Value::Bool(bindable));
            }
            if let Some(metadata) = &p.metadata {
                extra.insert("metadata".to_owned(), metadata.clone());
            }
            Plan {
                name: p.name.clone(),
                id: offering_plan_id(&offering.name, &p.name),
                description: p.description.clone(),
                extra,
            }
        })
        .collect();
    Service {
        name: offering.name.clone(),
        id: offering_id(&offering.name),
        description: offering.description.clone(),
        plans,
        extra,
    }
}

/// Recognises the ids of logical offerings.
#[derive(Debug, Clone, Default)]
pub struct LogicalTable {
    services: HashMap<String, String>,
    plans: HashMap<String, (String, String)>,
}

impl LogicalTable {
    pub fn new(policy: &Policy) -> Self {
        let mut table = LogicalTable::default();
        for offering in &policy.offerings {
            table
                .services
                .insert(offering_id(&offering.name), offering.name.clone());
            for plan in &offering.plans {
                table.plans.insert(
                    offering_plan_id(&offering.name, &plan.name),
                    (offering.name.clone(), plan.name.clone()),
                );
            }
        }
        table
    }

    /// The offering whose service id is `service_id`.
    pub fn offering(&self, service_id: &str) -> Option<&str> {
        self.services.get(service_id).map(String::as_str)
    }

    /// (offering, plan name) of a logical plan id.
    pub fn plan(&self, plan_id: &str) -> Option<(&str, &str)> {
        self.plans.get(plan_id).map(|(o, p)| (o.as_str(), p.as_str()))
    }
}
