//! The logical offerings of one generation of the benchmark policy and their 20 placement rules:
//! `mysql`, `postgres`, `redis` and `objectstore` in generation 1 (the 200-rule policy, as it
//! always was); `mysql-g<g>`, … placing on the brokers `azure-g<g>`, `aws-g<g>` and `gcp-g<g>` in
//! generation `g` (see [`super::scale`]).

use serde_json::{Value, json};

use super::scale::{broker, suffix};

/// A placement candidate.
fn candidate(broker: String, service: &str, small: &str, large: &str, weight: u32) -> Value {
    json!({"broker": broker, "service": service, "plans": {"small": small, "large": large}, "weight": weight})
}

fn offering(name: &str, tags: &[&str], rules: Vec<(&str, Value, Vec<Value>)>) -> Value {
    let placement: Vec<Value> = rules
        .into_iter()
        .map(|(rule_name, when, candidates)| {
            json!({"name": format!("{name}-{rule_name}"), "when": when, "candidates": candidates})
        })
        .collect();
    json!({
        "name": name,
        "description": format!("{name}, on the right cloud"),
        "tags": tags,
        "plans": [
            {"name": "small", "description": "2 vCPU"},
            {"name": "large", "description": "8 vCPU", "free": false},
        ],
        "placement": placement,
    })
}

/// The offerings of `generation` (1: the 200-rule policy's), with 20 placement rules in all.
pub(super) fn offerings(generation: usize) -> Vec<Value> {
    let azure = || broker("azure", generation);
    let aws = || broker("aws", generation);
    let gcp = || broker("gcp", generation);
    let name = |offering: &str| format!("{offering}{}", suffix(generation));
    let az_mysql = || candidate(azure(), "azure-mysql-5-7", "basic", "general-purpose", 0);
    let gcp_mysql = || {
        candidate(
            gcp(),
            "google-cloudsql-mysql",
            "mysql-db-f1-micro",
            "mysql-db-n1-standard-2",
            0,
        )
    };
    let aws_mysql = || candidate(aws(), "rdsmysql", "dev", "production", 0);
    let az_pg = || candidate(azure(), "azure-postgresql-10", "basic", "general-purpose", 0);
    let gcp_pg = || {
        candidate(
            gcp(),
            "google-cloudsql-postgres",
            "postgres-db-f1-micro",
            "postgres-db-n1-standard-2",
            0,
        )
    };
    let aws_pg = || candidate(aws(), "rdspostgresql", "dev", "production", 0);
    let az_redis = || candidate(azure(), "azure-rediscache", "basic", "standard", 0);
    let gcp_redis = || candidate(gcp(), "google-memorystore-redis", "basic", "standard_ha", 0);
    let aws_redis = || candidate(aws(), "elasticache", "custom", "production", 0);
    let az_blob = || {
        candidate(
            azure(),
            "azure-storage-blob-storage-account-and-container",
            "all-in-one",
            "all-in-one",
            0,
        )
    };
    let gcp_gcs = || candidate(gcp(), "google-storage", "standard", "multiregional", 0);
    let aws_s3 = || candidate(aws(), "s3", "custom", "production", 0);
    let weighted = |mut c: Value, w: u32| {
        c["weight"] = json!(w);
        c
    };
    vec![
        offering(
            &name("mysql"),
            &["mysql"],
            vec![
                (
                    "eu-on-azure",
                    json!({"parameters.region": ["eu-*", "westeurope"]}),
                    vec![az_mysql()],
                ),
                (
                    "team-b-on-aws",
                    json!({"context.namespace": ["team-b", "team-b-*"]}),
                    vec![aws_mysql()],
                ),
                (
                    "cf-on-aws",
                    json!({"platform": ["cf-*"]}),
                    vec![aws_mysql(), gcp_mysql()],
                ),
                (
                    "us-on-aws",
                    json!({"platform": ["k8s-prod-us"]}),
                    vec![weighted(aws_mysql(), 1), gcp_mysql()],
                ),
                (
                    "spread",
                    json!({}),
                    vec![weighted(az_mysql(), 3), weighted(gcp_mysql(), 1), aws_mysql()],
                ),
            ],
        ),
        offering(
            &name("postgres"),
            &["postgresql"],
            vec![
                (
                    "pci-on-aws",
                    json!({"context.namespace_annotations.example.com/pci": ["true"]}),
                    vec![aws_pg()],
                ),
                (
                    "team-b-on-aws",
                    json!({"context.namespace": ["team-b", "team-b-*"]}),
                    vec![aws_pg()],
                ),
                (
                    "cf-on-aws",
                    json!({"platform": ["cf-*"]}),
                    vec![aws_pg(), gcp_pg()],
                ),
                (
                    "us-on-aws",
                    json!({"platform": ["k8s-prod-us"]}),
                    vec![weighted(aws_pg(), 1), gcp_pg()],
                ),
                (
                    "ml-on-gcp",
                    json!({"context.namespace": ["ml-*"]}),
                    vec![gcp_pg(), aws_pg()],
                ),
                (
                    "eu-spread",
                    json!({"platform": ["k8s-prod-eu", "k8s-staging"]}),
                    vec![weighted(gcp_pg(), 1), weighted(az_pg(), 1), aws_pg()],
                ),
            ],
        ),
        offering(
            &name("redis"),
            &["redis"],
            vec![
                ("cf-on-aws", json!({"platform": ["cf-*"]}), vec![aws_redis()]),
                (
                    "eu-on-azure",
                    json!({"platform": ["k8s-prod-eu"]}),
                    vec![az_redis(), gcp_redis()],
                ),
                (
                    "us-on-gcp",
                    json!({"platform": ["k8s-prod-us"]}),
                    vec![gcp_redis(), aws_redis()],
                ),
                (
                    "spread",
                    json!({}),
                    vec![weighted(gcp_redis(), 1), weighted(az_redis(), 1), aws_redis()],
                ),
            ],
        ),
        offering(
            &name("objectstore"),
            &["storage"],
            vec![
                (
                    "archive-on-gcp",
                    json!({"parameters.class": ["archive", "coldline"]}),
                    vec![gcp_gcs()],
                ),
                ("cf-on-aws", json!({"platform": ["cf-*"]}), vec![aws_s3()]),
                (
                    "eu-on-azure",
                    json!({"platform": ["k8s-prod-eu"], "context.namespace_annotations.example.com/data": ["personal"]}),
                    vec![az_blob()],
                ),
                (
                    "us-on-aws",
                    json!({"platform": ["k8s-prod-us"]}),
                    vec![aws_s3(), gcp_gcs()],
                ),
                (
                    "spread",
                    json!({}),
                    vec![weighted(aws_s3(), 2), weighted(gcp_gcs(), 1), az_blob()],
                ),
            ],
        ),
    ]
}
