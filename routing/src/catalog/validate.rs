//! Validation of one upstream broker's catalog: keep what is sound, drop what is broken.
//!
//! A body that is not JSON, or has no `services` array, fails the whole fetch (the last good catalog
//! stays in use). Otherwise each service stands alone: one that lacks a required field, has no plans,
//! or repeats a name or id already seen is dropped with a reason, and the rest are kept. Plans are
//! treated the same way inside their service. Real quirks pass untouched: `"parameters": null`
//! schemas (GCP), draft-06 keys and string defaults (AWS), megabytes of schemas (OSBA).

use std::collections::HashSet;

use osb_config::CatalogLimits;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::RoutingError;
use crate::catalog::model::{Plan, Service};
use crate::catalog::shape::measure;

/// The sound part of a broker's catalog and what was dropped from it.
#[derive(Debug, Clone, Default)]
pub struct Validated {
    pub services: Vec<Service>,
    pub dropped: Vec<Dropped>,
}

/// A service or plan left out of the catalog, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// `service "name"`, `service #3`, or `plan "name" of service "name"`.
    pub what: String,
    pub reason: String,
}

/// [`validate_catalog`] for a catalog measured first against `limits` (see [`super::shape`]):
/// what the gateway does with every catalog it fetches or loads.
///
/// # Errors
/// [`RoutingError::InvalidCatalog`] for a catalog over a limit, or not a catalog.
pub fn validate_bounded(
    broker: &str,
    body: &[u8],
    limits: &CatalogLimits,
) -> Result<Validated, RoutingError> {
    measure(body, limits).map_err(|reason| RoutingError::InvalidCatalog {
        broker: broker.to_owned(),
        reason,
    })?;
    validate_catalog(broker, body)
}

/// The document: its services, each kept as its bytes until it is parsed on its own.
#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow)]
    services: Option<Vec<&'a RawValue>>,
}

/// Parses and validates a `GET /v2/catalog` body of `broker`. Each service is parsed from its own
/// bytes, so no JSON tree of the whole catalog is ever built.
///
/// # Errors
/// [`RoutingError::InvalidCatalog`] when the body is not a JSON object with a `services` array.
pub fn validate_catalog(broker: &str, body: &[u8]) -> Result<Validated, RoutingError> {
    let invalid = |reason: String| RoutingError::InvalidCatalog {
        broker: broker.to_owned(),
        reason,
    };
    let document: Document<'_> = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            invalid("expected a JSON object with a \"services\" array".to_owned())
        } else {
            invalid(format!("not JSON: {e}"))
        }
    })?;
    let Some(raw_services) = document.services else {
        return Err(invalid("expected a \"services\" array".to_owned()));
    };

    let mut out = Validated::default();
    let mut service_names = HashSet::new();
    let mut ids = HashSet::new();
    for (index, raw) in raw_services.into_iter().enumerate() {
        let mut service: Service = match serde_json::from_str(raw.get()) {
            Ok(service) => service,
            Err(e) => {
                let what = describe_service(index, raw);
                out.dropped.push(Dropped {
                    what,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let what = format!("service {:?}", service.name);
        if let Some(reason) = service_problem(&service, &service_names, &ids) {
            out.dropped.push(Dropped { what, reason });
            continue;
        }

        let mut plan_names = HashSet::new();
        let mut plan_ids = HashSet::new();
        let plans = std::mem::take(&mut service.plans);
        for plan in plans {
            let duplicate_id = ids.contains(&plan.id) || plan_ids.contains(&plan.id) || plan.id == service.id;
            match plan_problem(&plan, &plan_names, duplicate_id) {
                Some(reason) => out.dropped.push(Dropped {
                    what: format!("plan {:?} of service {:?}", plan.name, service.name),
                    reason,
                }),
                None => {
                    plan_names.insert(plan.name.clone());
                    plan_ids.insert(plan.id.clone());
                    service.plans.push(plan);
                }
            }
        }
        if service.plans.is_empty() {
            out.dropped.push(Dropped {
                what,
                reason: "no valid plans".to_owned(),
            });
            continue;
        }
        service_names.insert(service.name.clone());
        ids.insert(service.id.clone());
        ids.extend(plan_ids);
        out.services.push(service);
    }
    Ok(out)
}

fn describe_service(index: usize, raw: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Named {
        name: Option<Value>,
    }
    let name = serde_json::from_str::<Named>(raw.get()).ok().and_then(|n| n.name);
    match name.as_ref().and_then(Value::as_str) {
        Some(name) => format!("service {name:?}"),
        None => format!("service #{index}"),
    }
}

fn service_problem(service: &Service, names: &HashSet<String>, ids: &HashSet<String>) -> Option<String> {
    if service.id.is_empty() {
        Some("empty id".to_owned())
    } else if service.name.is_empty() {
        Some("empty name".to_owned())
    } else if service.plans.is_empty() {
        Some("no plans".to_owned())
    } else if names.contains(&service.name) {
        Some("duplicate service name".to_owned())
    } else if ids.contains(&service.id) {
        Some(format!("duplicate id {:?}", service.id))
    } else if service.extra.get("bindable").is_some_and(|b| !b.is_boolean()) {
        Some("bindable is not a boolean".to_owned())
    } else {
        None
    }
}

fn plan_problem(plan: &Plan, names: &HashSet<String>, duplicate_id: bool) -> Option<String> {
    if plan.id.is_empty() {
        Some("empty id".to_owned())
    } else if plan.name.is_empty() {
        Some("empty name".to_owned())
    } else if names.contains(&plan.name) {
        Some("duplicate plan name".to_owned())
    } else if duplicate_id {
        Some(format!("duplicate id {:?}", plan.id))
    } else if plan.extra.get("bindable").is_some_and(|b| !b.is_boolean()) {
        Some("bindable is not a boolean".to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
