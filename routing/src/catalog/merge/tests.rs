//! Merge cases: namespacing, renames, id rewriting, collisions, routes.

use std::collections::BTreeMap;

use osb_config::{BrokerSettings, IdMode, UpstreamAuth};
use serde_json::json;

use super::*;
use crate::catalog::validate::validate_catalog;

fn broker(name: &str, ids: IdMode) -> BrokerSettings {
    BrokerSettings {
        name: name.to_owned(),
        url: url::Url::parse("http://127.0.0.1:1").unwrap(),
        auth: UpstreamAuth::None,
        auth_file: None,
        namespace: name.to_owned(),
        ids,
        api_version: "2.17".to_owned(),
        refresh_interval: std::time::Duration::from_secs(60),
        timeout: std::time::Duration::from_secs(5),
        catalog_timeout: std::time::Duration::from_secs(5),
        breaker_failures: 5,
        breaker_open: std::time::Duration::from_secs(10),
        rename: BTreeMap::new(),
        catalog_limits: Default::default(),
        tls: Default::default(),
    }
}

fn services(value: serde_json::Value) -> Vec<Service> {
    validate_catalog("t", &serde_json::to_vec(&value).unwrap())
        .unwrap()
        .services
}

fn fixture(name: &str) -> Vec<Service> {
    let path = format!("{}/../fixtures/catalogs/{name}", env!("CARGO_MANIFEST_DIR"));
    validate_catalog("t", &std::fs::read(path).unwrap())
        .unwrap()
        .services
}

#[test]
fn three_real_catalogs_merge_without_loss() {
    let (azure, aws, gcp) = (
        broker("azure", IdMode::Rewrite),
        broker("aws", IdMode::Rewrite),
        broker("gcp", IdMode::Rewrite),
    );
    let (a, b, c) = (
        fixture("azure-osba-catalog.json"),
        fixture("aws-servicebroker-catalog.json"),
        fixture("gcp-service-broker-catalog.json"),
    );
    let inputs = [
        BrokerCatalog {
            broker: &azure,
            services: &a,
        },
        BrokerCatalog {
            broker: &aws,
            services: &b,
        },
        BrokerCatalog {
            broker: &gcp,
            services: &c,
        },
    ];
    let merged = merge(&inputs, ".");
    assert!(merged.dropped.is_empty(), "{:?}", merged.dropped);
    assert_eq!(merged.catalog.services.len(), 39 + 27 + 20);
    assert_eq!(merged.routes.len(), (86, 96 + 57 + 57));
    for (input, prefix) in inputs.iter().zip(["azure.", "aws.", "gcp."]) {
        for upstream in input.services {
            let id = merged
                .routes
                .gateway_id(&input.broker.name, &upstream.id)
                .unwrap();
            let route = merged.routes.service(id).unwrap();
            assert_eq!(route.upstream_service_id, upstream.id);
            assert_eq!(route.name, format!("{prefix}{}", upstream.name));
            let published = merged.catalog.services.iter().find(|s| s.id == id).unwrap();
            assert_eq!(published.extra, upstream.extra, "unknown fields pass through");
            for (p, up) in published.plans.iter().zip(&upstream.plans) {
                assert_eq!(p.extra, up.extra);
                assert_eq!(p.name, up.name);
                let plan_route = merged.routes.plan(&p.id).unwrap();
                assert_eq!(
                    (
                        plan_route.upstream_plan_id.as_str(),
                        plan_route.service_id.as_str()
                    ),
                    (up.id.as_str(), id)
                );
            }
        }
    }
}

#[test]
fn same_broker_twice_gets_two_disjoint_namespaces() {
    let (east, west) = (
        broker("aws-east", IdMode::Rewrite),
        broker("aws-west", IdMode::Rewrite),
    );
    let s = fixture("aws-servicebroker-catalog.json");
    let merged = merge(
        &[
            BrokerCatalog {
                broker: &east,
                services: &s,
            },
            BrokerCatalog {
                broker: &west,
                services: &s,
            },
        ],
        ".",
    );
    assert!(merged.dropped.is_empty());
    assert_eq!(merged.catalog.services.len(), 2 * 27);
    let mut ids: Vec<&str> = merged
        .catalog
        .services
        .iter()
        .flat_map(|s| std::iter::once(s.id.as_str()).chain(s.plans.iter().map(|p| p.id.as_str())))
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "no id appears twice");
    assert!(
        merged
            .catalog
            .services
            .iter()
            .any(|s| s.name == "aws-east.dynamodb")
    );
    assert!(
        merged
            .catalog
            .services
            .iter()
            .any(|s| s.name == "aws-west.dynamodb")
    );
}

#[test]
fn kept_ids_that_collide_drop_the_later_service_with_a_reason() {
    let (one, two) = (broker("one", IdMode::Keep), broker("two", IdMode::Keep));
    let s = services(
        json!({"services": [{"name": "db", "id": "s1", "description": "d", "bindable": true, "plans": [{"name": "p", "id": "p1", "description": "d"}]}]}),
    );
    let merged = merge(
        &[
            BrokerCatalog {
                broker: &one,
                services: &s,
            },
            BrokerCatalog {
                broker: &two,
                services: &s,
            },
        ],
        ".",
    );
    assert_eq!(merged.catalog.services.len(), 1);
    assert_eq!(merged.catalog.services[0].id, "s1", "kept");
    assert_eq!(merged.dropped.len(), 1);
    assert_eq!(merged.dropped[0].0, "two");
    assert!(
        merged.dropped[0]
            .1
            .reason
            .contains("already published by broker \"one\"")
    );
}

#[test]
fn renames_separators_and_limits() {
    let mut b = broker("azure", IdMode::Rewrite);
    b.rename.insert("azure-mysql-5-7".into(), "mysql".into());
    b.rename.insert("azure-sql".into(), "Very_Long_".repeat(7));
    let s = services(json!({"services": [
        {"name": "azure-mysql-5-7", "id": "s1", "description": "d", "bindable": true, "plans": [{"name": "basic", "id": "p1", "description": "d", "bindable": false}]},
        {"name": "azure-sql", "id": "s2", "description": "d", "bindable": true, "plans": [{"name": "basic", "id": "p2", "description": "d"}]},
    ]}));
    let merged = merge(
        &[BrokerCatalog {
            broker: &b,
            services: &s,
        }],
        "-",
    );
    assert_eq!(merged.catalog.services[0].name, "azure-mysql");
    assert_eq!(merged.warnings.len(), 2, "{:?}", merged.warnings);
    assert!(
        merged.warnings[0]
            .message
            .contains("Kubernetes Service Catalog allows 63")
    );
    assert_eq!(merged.warnings[0].service, "azure-sql");
    assert!(merged.warnings[1].message.contains("OSB 2.13"));
    let plan = merged
        .routes
        .plan(&merged.catalog.services[0].plans[0].id)
        .unwrap();
    assert!(!plan.bindable, "plan-level bindable overrides the offering's");
    assert!(
        merged
            .routes
            .plan(&merged.catalog.services[1].plans[0].id)
            .unwrap()
            .bindable
    );
}
