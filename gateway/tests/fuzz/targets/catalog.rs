//! Targets `catalog` and `merge`: an upstream's `GET /v2/catalog` body through validation, and
//! several brokers' catalogs through the merge (`osb_routing::catalog`).
//!
//! Properties:
//! - any body: validation returns a catalog or `InvalidCatalog`, never panics; measuring it
//!   against limits never panics, and a body it lets through keeps (services, plans) within them;
//! - what validation keeps is sound: non-empty ids and names, unique names, all ids distinct;
//! - the merge is deterministic (same inputs, same bytes), every published name and id is unique,
//!   every published id routes back to the broker and upstream id it came from;
//! - ids are stable: a rewritten id is `UUIDv5(broker/upstream id)` whatever else is merged
//!   beside it, a kept id is the upstream's; a service keeps its id when merged alone.

use std::collections::HashSet;
use std::sync::OnceLock;

use osb_config::{IdMode, Settings};
use osb_routing::RoutingError;
use osb_routing::catalog::{BrokerCatalog, Merged, Service, gateway_id, merge, validate_catalog};

use super::input::{Input, mutated_catalog};

/// Broker settings the targets merge under: rewritten and kept ids, renames, two names for one
/// upstream, a namespace shared by two brokers. Loaded through the real config loader once.
fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let yaml = "platforms:\n  - {name: p, username: u, password: pw}\n\
            brokers:\n\
            \x20 - {name: azure, url: \"http://127.0.0.1:1\"}\n\
            \x20 - {name: azure-eu, url: \"http://127.0.0.1:2\", namespace: eu}\n\
            \x20 - {name: kept, url: \"http://127.0.0.1:3\", ids: keep, rename: {azure-mysql-5-7: mysql, s3: bucket, p-mysql: a}}\n\
            \x20 - {name: kept-too, url: \"http://127.0.0.1:4\", ids: keep, namespace: k}\n\
            \x20 - {name: gcp, url: \"http://127.0.0.1:5\", rename: {google-storage: storage}}\n";
        super::input::settings(yaml)
    })
}

/// The body the target feeds to validation.
fn body(input: &mut Input<'_>) -> Vec<u8> {
    if input.raw_mode() {
        return input.bytes(usize::MAX).to_vec();
    }
    let catalog = mutated_catalog(input, 6);
    serde_json::to_vec(&catalog).unwrap_or_default()
}

/// Validates `bytes` as `broker`'s catalog and checks what it kept.
fn validated(broker: &str, bytes: &[u8]) -> Option<Vec<Service>> {
    // Measuring never panics, and what it lets through keeps to the limits.
    let limits = osb_config::CatalogLimits {
        max_bytes: 1 << 20,
        max_services: 4,
        max_plans: 6,
        max_depth: 12,
    };
    if let Ok(shape) = osb_routing::catalog::measure(bytes, &limits) {
        assert!(
            shape.services <= 4 && shape.plans <= 6 && shape.depth <= 12,
            "{shape:?}"
        );
        if let Ok(v) = validate_catalog(broker, bytes) {
            assert!(
                v.services.len() <= 4,
                "measured {shape:?}, kept {}",
                v.services.len()
            );
            assert!(
                v.services.iter().map(|s| s.plans.len()).sum::<usize>() <= 6,
                "measured {shape:?}"
            );
        }
    }
    match validate_catalog(broker, bytes) {
        Ok(validated) => {
            let mut names = HashSet::new();
            let mut ids = HashSet::new();
            for service in &validated.services {
                assert!(!service.id.is_empty() && !service.name.is_empty());
                assert!(
                    names.insert(service.name.clone()),
                    "duplicate name kept: {}",
                    service.name
                );
                assert!(
                    ids.insert(service.id.clone()),
                    "duplicate id kept: {}",
                    service.id
                );
                assert!(!service.plans.is_empty(), "service without plans kept");
                let mut plan_names = HashSet::new();
                for plan in &service.plans {
                    assert!(!plan.id.is_empty() && !plan.name.is_empty());
                    assert!(plan_names.insert(plan.name.clone()), "duplicate plan name kept");
                    assert!(ids.insert(plan.id.clone()), "duplicate plan id kept: {}", plan.id);
                }
                // What is kept survives a serialize/parse round trip unchanged (unknown fields too).
                let again: Service = serde_json::to_value(service)
                    .and_then(serde_json::from_value)
                    .unwrap_or_else(|e| panic!("kept service does not round-trip: {e}"));
                assert_eq!(&again, service);
            }
            for dropped in &validated.dropped {
                assert!(
                    !dropped.reason.is_empty(),
                    "dropped without a reason: {}",
                    dropped.what
                );
            }
            Some(validated.services)
        }
        Err(RoutingError::InvalidCatalog { broker: b, reason }) => {
            assert_eq!(b, broker);
            assert!(!reason.is_empty());
            None
        }
        Err(other) => panic!("validation failed with a non-catalog error: {other}"),
    }
}

/// Target `catalog`: one body, validated, then merged alone under a chosen broker's settings.
pub fn catalog(data: &[u8]) {
    let mut input = Input::new(data);
    let settings = settings();
    let broker = input.pick(&settings.brokers).cloned();
    let separator = if input.one_in(2) { "." } else { "-" };
    let bytes = body(&mut input);
    let Some(broker) = broker else { return };
    let Some(services) = validated(&broker.name, &bytes) else {
        return;
    };
    let inputs = [BrokerCatalog {
        broker: &broker,
        services: &services,
    }];
    let merged = merge(&inputs, separator);
    check_merged(&inputs, &merged, separator);
    // Alone, only names made equal by the rename map collide: every other service is published.
    assert_eq!(
        merged.catalog.services.len() + merged.dropped.len(),
        services.len(),
        "a service vanished from the merge without a reason"
    );
}

/// Target `merge`: two to four brokers' catalogs merged in configuration order.
pub fn merge_target(data: &[u8]) {
    let mut input = Input::new(data);
    let settings = settings();
    let separator = if input.one_in(2) { "." } else { "-" };
    let count = input.below(3) + 2;
    // Distinct brokers, in configuration order (as the cache merges them).
    let mut chosen: Vec<usize> = (0..count).map(|_| input.below(settings.brokers.len())).collect();
    chosen.sort_unstable();
    chosen.dedup();
    let mut catalogs: Vec<(&osb_config::BrokerSettings, Vec<u8>)> = Vec::new();
    for &i in &chosen {
        let Some(broker) = settings.brokers.get(i) else {
            continue;
        };
        let mut catalog = mutated_catalog(&mut input, 4);
        if input.one_in(4) {
            // The same upstream catalog registered twice (two regions): a common setup.
            if let Some((_, previous)) = catalogs.last() {
                catalog = serde_json::from_slice(previous).unwrap_or(catalog);
            }
        }
        catalogs.push((broker, serde_json::to_vec(&catalog).unwrap_or_default()));
    }
    let validated: Vec<(&osb_config::BrokerSettings, Vec<Service>)> = catalogs
        .iter()
        .filter_map(|(broker, bytes)| Some((*broker, validated(&broker.name, bytes)?)))
        .collect();
    let inputs: Vec<BrokerCatalog<'_>> = validated
        .iter()
        .map(|(broker, services)| BrokerCatalog { broker, services })
        .collect();
    let merged = merge(&inputs, separator);
    check_merged(&inputs, &merged, separator);

    // Deterministic: the same inputs give the same bytes.
    let again = merge(&inputs, separator);
    assert_eq!(
        serde_json::to_vec(&merged.catalog).ok(),
        serde_json::to_vec(&again.catalog).ok(),
        "the merge is not deterministic"
    );
    // Stable: each published service has the id (and name) it gets when its broker is merged alone.
    for input in &inputs {
        let alone = merge(std::slice::from_ref(input), separator);
        for service in &alone.catalog.services {
            let ours = merged
                .routes
                .service(&service.id)
                .is_some_and(|route| *route.broker == *input.broker.name);
            if let Some(published) = merged
                .catalog
                .services
                .iter()
                .find(|s| s.id == service.id && ours)
            {
                assert_eq!(
                    published.name, service.name,
                    "a service's name depends on its neighbours"
                );
            }
        }
    }
}

/// Invariants of any merge result.
fn check_merged(inputs: &[BrokerCatalog<'_>], merged: &Merged, separator: &str) {
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    for service in &merged.catalog.services {
        assert!(
            names.insert(&service.name),
            "name published twice: {}",
            service.name
        );
        assert!(ids.insert(&service.id), "id published twice: {}", service.id);
        let Some(route) = merged.routes.service(&service.id) else {
            panic!("published service {} has no route", service.id);
        };
        let Some(input) = inputs.iter().find(|i| *i.broker.name == *route.broker) else {
            panic!("service {} routes to unknown broker {}", service.id, route.broker);
        };
        let Some(upstream) = input.services.iter().find(|s| s.id == route.upstream_service_id) else {
            panic!(
                "service {} routes to an upstream id its broker does not have",
                service.id
            );
        };
        assert_eq!(
            service.id,
            gateway_id(&input.broker.name, input.broker.ids, &upstream.id),
            "unstable service id"
        );
        if input.broker.ids == IdMode::Keep {
            assert_eq!(service.id, upstream.id);
        }
        assert_eq!(
            service.name,
            input.broker.published_name(&upstream.name, separator)
        );
        assert_eq!(
            merged.routes.gateway_id(&input.broker.name, &upstream.id),
            Some(service.id.as_str())
        );
        for plan in &service.plans {
            assert!(ids.insert(&plan.id), "id published twice: {}", plan.id);
            let Some(plan_route) = merged.routes.plan(&plan.id) else {
                panic!("published plan {} has no route", plan.id);
            };
            assert_eq!(plan_route.service_id, service.id);
            assert_eq!(*plan_route.broker, *route.broker);
            let Some(upstream_plan) = upstream
                .plans
                .iter()
                .find(|p| p.id == plan_route.upstream_plan_id)
            else {
                panic!(
                    "plan {} routes to an upstream plan its service does not have",
                    plan.id
                );
            };
            assert_eq!(
                plan.id,
                gateway_id(&input.broker.name, input.broker.ids, &upstream_plan.id),
                "unstable plan id"
            );
            assert_eq!(plan.name, upstream_plan.name);
        }
    }
}
