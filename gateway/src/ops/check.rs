//! `osb-gateway check-config`: every problem of a configuration, one line each, before it runs.
//!
//! Without `--fetch` the file alone is checked (syntax, unknown keys, addresses, URLs, secrets,
//! duplicate names, colliding kept ids at one URL, renamed names over 63 characters). With `--fetch`
//! each broker's catalog is fetched once and merged as the gateway would, which adds what only the
//! catalogs can tell: published names or ids that Kubernetes Service Catalog rejects, services
//! that collide across brokers (kept ids, renames), placement targets and policy rules naming
//! services or plans that no catalog has.

use std::collections::HashMap;
use std::path::Path;

use osb_config::{Problem, Settings};
use osb_routing::catalog::{BrokerCatalog, Merged, Validated, merge, validate_bounded};
use osb_routing::error::error_chain;
use osb_routing::upstream::{CallHeaders, CatalogFetch, UpstreamBroker, Validators};

/// What `check-config` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Printed one per line; any makes the exit status 64.
    pub problems: Vec<Problem>,
    /// Printed, but the configuration is usable.
    pub warnings: Vec<Problem>,
}

/// Checks the configuration at `path`; with `fetch`, also the brokers' catalogs.
pub async fn check_config(path: &Path, fetch: bool, env: &HashMap<String, String>) -> Report {
    let loaded = match osb_config::load_file(path, env) {
        Ok(loaded) => loaded,
        Err(e) => {
            return Report {
                problems: e.problems().to_vec(),
                warnings: Vec::new(),
            };
        }
    };
    let mut report = Report {
        problems: Vec::new(),
        warnings: loaded.warnings,
    };
    let policy = match &loaded.settings.policy_file {
        Some(policy_path) => match crate::ops::policy_file::load(policy_path, &loaded.settings) {
            Ok(policy) => Some(policy),
            Err(problems) => {
                report.problems.extend(problems);
                None
            }
        },
        None => None,
    };
    if !fetch {
        return report;
    }
    let settings = loaded.settings;
    let origin = settings.origin.clone();
    let problem = |key: String, message: String| Problem {
        origin: origin.clone(),
        key,
        message,
    };

    let (fetched, failures) = fetch_all(&settings).await;
    let failures_count = failures.len();
    for (i, message) in failures {
        report.problems.push(problem(format!("brokers[{i}]"), message));
    }
    for (i, validated) in &fetched {
        for dropped in &validated.dropped {
            report.warnings.push(problem(
                format!("brokers[{i}]"),
                format!(
                    "upstream catalog: {} is dropped: {}",
                    dropped.what, dropped.reason
                ),
            ));
        }
    }

    let inputs: Vec<BrokerCatalog<'_>> = fetched
        .iter()
        .filter_map(|(i, v)| {
            settings.brokers.get(*i).map(|broker| BrokerCatalog {
                broker,
                services: &v.services,
            })
        })
        .collect();
    let merged = merge(&inputs, &settings.catalog.name_separator);
    let index_of = |name: &str| {
        settings
            .brokers
            .iter()
            .position(|b| b.name == name)
            .unwrap_or_default()
    };
    for (broker, dropped) in &merged.dropped {
        report.problems.push(problem(
            format!("brokers[{}]", index_of(broker)),
            format!("{}: {}", dropped.what, dropped.reason),
        ));
    }
    for w in &merged.warnings {
        report.problems.push(problem(
            format!("brokers[{}].rename.{}", index_of(&w.broker), w.service),
            w.message.clone(),
        ));
    }
    // Every placement target of the policy must exist in the fetched catalogs.
    if let (Some(policy), Some(policy_path)) = (&policy, &settings.policy_file) {
        for (i, offering) in policy.offerings.iter().enumerate() {
            for (j, rule) in offering.placement.iter().enumerate() {
                for (k, candidate) in rule.candidates.iter().enumerate() {
                    for (plan, upstream_plan) in &candidate.plans {
                        let found = merged
                            .routes
                            .plan_by_name(&candidate.broker, &candidate.service, upstream_plan)
                            .is_some();
                        let fetched_broker = fetched.iter().any(|(b, _)| {
                            settings
                                .brokers
                                .get(*b)
                                .is_some_and(|s| s.name == candidate.broker)
                        });
                        if !found && fetched_broker {
                            report.problems.push(Problem {
                                origin: policy_path.display().to_string(),
                                key: format!("offerings[{i}].placement[{j}].candidates[{k}].plans.{plan}"),
                                message: format!(
                                    "broker {} has no plan {upstream_plan:?} of service {:?}",
                                    candidate.broker, candidate.service
                                ),
                            });
                        }
                    }
                }
            }
        }
        // Every service and plan a rule names must be in a catalog (judged only when every
        // broker's catalog came: a missing one could hold the name).
        if failures_count == 0 {
            let services: Vec<&str> = merged.catalog.services.iter().map(|s| s.name.as_str()).collect();
            let plans: Vec<&str> = merged
                .catalog
                .services
                .iter()
                .flat_map(|s| s.plans.iter().map(|p| p.name.as_str()))
                .collect();
            report.problems.extend(policy.check_catalog_names(
                &services,
                &plans,
                &policy_path.display().to_string(),
            ));
        }
    }
    report
}

/// Fetches and validates every broker's catalog once: (broker index, catalog) for those that
/// answered, (broker index, message) for those that did not.
pub async fn fetch_all(settings: &Settings) -> (Vec<(usize, Validated)>, Vec<(usize, String)>) {
    let mut fetched = Vec::new();
    let mut failures = Vec::new();
    for (i, broker) in settings.brokers.iter().enumerate() {
        let upstream = match UpstreamBroker::new(broker) {
            Ok(upstream) => upstream,
            Err(e) => {
                failures.push((i, error_chain(&e)));
                continue;
            }
        };
        let call = CallHeaders {
            request_identity: uuid::Uuid::new_v4().to_string(),
            operation: "catalog",
            ..CallHeaders::default()
        };
        match upstream.fetch_catalog(&Validators::default(), &call).await {
            Ok(CatalogFetch::Fetched { body, .. }) => {
                match validate_bounded(&broker.name, &body, &broker.catalog_limits) {
                    Ok(validated) => fetched.push((i, validated)),
                    Err(e) => failures.push((i, e.to_string())),
                }
            }
            Ok(CatalogFetch::NotModified) => {
                failures.push((i, "answered 304 to an unconditional request".to_owned()))
            }
            Err(e) => failures.push((i, format!("cannot fetch the catalog: {}", error_chain(&e)))),
        }
    }
    (fetched, failures)
}

/// `osb-gateway catalog`: the merged catalog of every broker, fetched once, as JSON bytes.
///
/// # Errors
/// The first broker that could not be fetched (a partial catalog would mislead).
pub async fn fetch_merged(settings: &Settings) -> Result<Vec<u8>, String> {
    let merged = fetch_and_merge(settings).await?;
    serde_json::to_vec_pretty(&merged.catalog).map_err(|e| e.to_string())
}

/// Every broker's catalog fetched now and merged as the gateway would.
///
/// # Errors
/// The first broker that could not be fetched (a partial catalog would mislead).
async fn fetch_and_merge(settings: &Settings) -> Result<Merged, String> {
    let (fetched, failures) = fetch_all(settings).await;
    if let Some((i, message)) = failures.first() {
        let name = settings.brokers.get(*i).map_or("?", |b| b.name.as_str());
        return Err(format!("broker {name}: {message}"));
    }
    let inputs: Vec<BrokerCatalog<'_>> = fetched
        .iter()
        .filter_map(|(i, v)| {
            settings.brokers.get(*i).map(|broker| BrokerCatalog {
                broker,
                services: &v.services,
            })
        })
        .collect();
    Ok(merge(&inputs, &settings.catalog.name_separator))
}

/// `osb-gateway explain`: the policy step for one request against freshly fetched catalogs.
/// `unhealthy` brokers are treated as down (to see failover).
///
/// # Errors
/// A broker that could not be fetched, or a policy file with problems.
pub async fn explain_offline(
    settings: &Settings,
    request: &crate::ops::explain::ExplainRequest,
    unhealthy: &[String],
) -> Result<crate::ops::explain::ExplainReport, String> {
    use std::sync::Arc;

    let policy = match &settings.policy_file {
        Some(path) => crate::ops::policy_file::load(path, settings).map_err(|problems| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?,
        None => osb_policies::Policy::default(),
    };
    let merged = fetch_and_merge(settings).await?;
    let snapshot = osb_routing::CatalogSnapshot {
        generation: 1,
        catalog: Arc::new(merged.catalog),
        body: bytes::Bytes::new(),
        etag: String::new(),
        routes: Arc::new(merged.routes),
        brokers: Vec::new(),
        availability: osb_routing::Availability::Complete,
        held: Arc::new(Vec::new()),
    };
    let policy = osb_routing::PolicyState::new(Arc::new(policy), 1);
    let healthy = |broker: &str| !unhealthy.iter().any(|u| u == broker);
    let schemas = crate::osb::decide::schema_cache();
    let decider = crate::osb::decide::Decider {
        snapshot: &snapshot,
        policy: &policy,
        healthy: &healthy,
        schemas: &schemas,
    };
    Ok(crate::ops::explain::explain(&decider, request, None))
}
