//! The policy the policy benchmarks run: exactly 200 named rules over the real OSBA (Azure), AWS
//! and GCP catalogs in `fixtures/catalogs`, written the way a platform team with six platforms
//! (`k8s-prod-eu`, `k8s-prod-us`, `k8s-staging`, `k8s-dev`, `cf-prod`, `cf-dev`) would.
//!
//! | section | rules | what |
//! |---|---|---|
//! | visibility | 60 | big and `custom` plans hidden outside production, one rule per service; tag rules; Cloud Foundry and dev platform rules last |
//! | deny | 60 | namespace rules, per-team quota freezes (`when` on namespace and annotation), per-service "production plans are not for dev-tier namespaces", region rules; the last one fires for [`DENIED`] calls |
//! | parameters | 60 | per-cloud location and region defaults with `allowed`, templates from the context, forbidden names, per-service forced and defaulted values taken from the plans' schemas |
//! | placement | 20 | four logical offerings (`mysql`, `postgres`, `redis`, `objectstore`) with rules on parameters, context and platform, weighted candidates and failover |
//!
//! Service and plan names are the catalogs' own (published as `<broker>.<service>`), so selectors
//! match the way they would in production. Shared by `policies/benches/decide.rs` (per-call
//! decisions) and `routing/benches/render.rs` (catalog views after a reload), which includes this
//! file by path. Set `OSB_BENCH_DUMP_POLICY=<file>` to write the generated YAML out.
//!
//! Not a test fixture: nothing here is checked except the rule count and that the file compiles;
//! the benches assert the outcome of the calls they time.

use std::path::PathBuf;

use osb_policies::glob::Glob;
use serde_json::{Map, Value, json};

/// The platforms of the policy.
pub const PLATFORMS: [&str; 6] = [
    "k8s-prod-eu",
    "k8s-prod-us",
    "k8s-staging",
    "k8s-dev",
    "cf-prod",
    "cf-dev",
];

/// Named rules in the policy (visibility, deny, parameter and placement rules).
pub const RULES: usize = 200;

/// The rule the benchmark's late-denied call meets (the last deny rule).
pub const DENIED: &str = "licensed-engines-need-a-cost-center";

/// The real catalogs: (broker name, catalog body).
pub fn fixture_catalogs() -> Vec<(&'static str, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/catalogs");
    [
        ("azure", "azure-osba-catalog.json"),
        ("aws", "aws-servicebroker-catalog.json"),
        ("gcp", "gcp-service-broker-catalog.json"),
    ]
    .into_iter()
    .map(|(broker, file)| {
        let path = dir.join(file);
        let body = std::fs::read(&path).unwrap_or_else(|e| {
            eprintln!("cannot read {}: {e}", path.display());
            std::process::exit(2)
        });
        (broker, body)
    })
    .collect()
}

/// One plan of the real catalogs, as the policy sees it.
#[derive(Debug, Clone)]
pub struct FixturePlan {
    pub broker: &'static str,
    /// Published name: `<broker>.<upstream service>`.
    pub service: String,
    pub upstream_service: String,
    pub plan: String,
    pub tags: Vec<String>,
    pub free: bool,
    /// The plan's `schemas` object, if any.
    pub schemas: Option<Value>,
}

/// Every plan of `catalogs`, in catalog order.
pub fn fixture_plans(catalogs: &[(&'static str, Vec<u8>)]) -> Vec<FixturePlan> {
    let mut plans = Vec::new();
    for (broker, body) in catalogs {
        let catalog: Value = serde_json::from_slice(body).expect("fixture catalogs are JSON");
        for service in catalog["services"].as_array().into_iter().flatten() {
            let name = service["name"].as_str().unwrap_or_default();
            let tags: Vec<String> = service["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect();
            for plan in service["plans"].as_array().into_iter().flatten() {
                plans.push(FixturePlan {
                    broker,
                    service: format!("{broker}.{name}"),
                    upstream_service: name.to_owned(),
                    plan: plan["name"].as_str().unwrap_or_default().to_owned(),
                    tags: tags.clone(),
                    free: plan["free"].as_bool().unwrap_or(true),
                    schemas: plan.get("schemas").cloned(),
                });
            }
        }
    }
    plans
}

/// A service of the catalogs and its plans.
struct FixtureService<'p> {
    broker: &'static str,
    service: &'p str,
    short: &'p str,
    plans: Vec<&'p FixturePlan>,
}

fn services(plans: &[FixturePlan]) -> Vec<FixtureService<'_>> {
    let mut services: Vec<FixtureService<'_>> = Vec::new();
    for plan in plans {
        match services.last_mut() {
            Some(s) if s.service == plan.service => s.plans.push(plan),
            _ => services.push(FixtureService {
                broker: plan.broker,
                service: &plan.service,
                short: &plan.upstream_service,
                plans: vec![plan],
            }),
        }
    }
    services
}

/// Property names of a plan's provision parameters schema.
fn properties(plan: &FixturePlan) -> Vec<&str> {
    plan.schemas
        .as_ref()
        .and_then(|s| s.pointer("/service_instance/create/parameters/properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

const NOT_PROD: [&str; 3] = ["k8s-dev", "k8s-staging", "cf-dev"];

/// Plans too big for anything but production.
const BIG_PLANS: [&str; 8] = [
    "premium*",
    "business-critical",
    "memory-optimized",
    "production",
    "*highmem*",
    "*-standard-16",
    "*-production-ssd",
    "minimal-production",
];

fn rule(name: String, fields: Value) -> Value {
    let mut rule = Map::new();
    rule.insert("name".to_owned(), Value::String(name));
    if let Value::Object(fields) = fields {
        rule.extend(fields);
    }
    Value::Object(rule)
}

fn visibility_rules(plans: &[FixturePlan]) -> Vec<Value> {
    let head = vec![
        rule(
            "no-preview".into(),
            json!({"tags": ["preview", "beta"], "effect": "hide"}),
        ),
        rule(
            "migrations-from-prod-only".into(),
            json!({"platforms": NOT_PROD, "tags": ["Migration"], "effect": "hide"}),
        ),
        rule(
            "failover-groups-prod-only".into(),
            json!({"platforms": NOT_PROD, "tags": ["Failover Group", "Disaster Recovery"], "effect": "hide"}),
        ),
        rule(
            "no-premium-sql-on-k8s".into(),
            json!({"platforms": ["k8s-*"], "services": ["azure.azure-sql-*"], "plans": ["premium*", "business-critical"], "effect": "hide"}),
        ),
    ];
    let tail = vec![
        rule(
            "us-no-cosmos".into(),
            json!({"platforms": ["k8s-prod-us"], "services": ["azure.azure-cosmosdb-*"], "effect": "hide"}),
        ),
        rule(
            "dev-sees-small-plans".into(),
            json!({"platforms": ["k8s-dev"], "plans": ["basic", "dev", "default", "free", "sandbox", "*-f1-micro", "*-g1-small", "small"], "effect": "show"}),
        ),
        rule(
            "dev-hides-paid".into(),
            json!({"platforms": ["k8s-dev"], "free": false, "effect": "hide"}),
        ),
        rule(
            "cf-sees-offerings".into(),
            json!({"platforms": ["cf-*"], "brokers": ["gateway"], "effect": "show"}),
        ),
        rule(
            "cf-sees-aws".into(),
            json!({"platforms": ["cf-*"], "brokers": ["aws"], "effect": "show"}),
        ),
        rule(
            "cf-prod-sees-gcp-data".into(),
            json!({"platforms": ["cf-prod"], "services": ["gcp.google-cloudsql-*", "gcp.google-storage", "gcp.google-pubsub"], "effect": "show"}),
        ),
        rule(
            "cf-hides-the-rest".into(),
            json!({"platforms": ["cf-*"], "effect": "hide"}),
        ),
    ];
    // One rule per service: its big plans, and (AWS) its `custom` plan, outside production.
    let big: Vec<Glob> = BIG_PLANS.iter().map(|g| Glob::new(g)).collect();
    let mut generated = Vec::new();
    for s in services(plans) {
        let big_plans: Vec<&str> = s
            .plans
            .iter()
            .map(|p| p.plan.as_str())
            .filter(|p| big.iter().any(|g| g.matches(p)))
            .collect();
        if !big_plans.is_empty() {
            generated.push(rule(
                format!("hide-big-{}-outside-prod", s.short),
                json!({"platforms": NOT_PROD, "services": [s.service], "plans": big_plans, "effect": "hide"}),
            ));
        }
        if s.plans.iter().any(|p| p.plan == "custom") {
            generated.push(rule(
                format!("hide-custom-{}-outside-prod", s.short),
                json!({"platforms": ["k8s-dev", "k8s-staging", "cf-*"], "services": [s.service], "plans": ["custom"], "effect": "hide"}),
            ));
        }
    }
    let want = 60 - head.len() - tail.len();
    assert!(
        generated.len() >= want,
        "only {} generated visibility rules",
        generated.len()
    );
    generated.truncate(want);
    head.into_iter().chain(generated).chain(tail).collect()
}

fn deny_rules(plans: &[FixturePlan]) -> Vec<Value> {
    let head = vec![
        rule(
            "keep-protected-namespaces".into(),
            json!({"operations": ["deprovision", "unbind"], "when": {"context.namespace": ["protected-*", "kube-system"]}, "reason": "protected namespaces keep their services"}),
        ),
        rule(
            "no-sql-from-dev".into(),
            json!({"platforms": ["k8s-dev"], "services": ["azure.azure-sql-*"], "operations": ["provision"], "reason": "SQL databases are provisioned from production clusters only"}),
        ),
        rule(
            "eu-data-stays-in-eu".into(),
            json!({"platforms": ["k8s-prod-eu"], "operations": ["provision", "update"], "when": {"parameters.region": ["us-*", "ap-*", "sa-*", "ca-*", "asia-*", "australia-*", "northamerica-*", "southamerica-*"]}, "reason": "EU clusters keep data in EU regions"}),
        ),
        rule(
            "eu-azure-locations".into(),
            json!({"platforms": ["k8s-prod-eu"], "brokers": ["azure"], "operations": ["provision", "update"], "when": {"parameters.location": ["*us*", "*asia*", "japan*", "australia*", "brazil*", "canada*", "korea*", "india*"]}, "reason": "EU clusters keep data in EU locations"}),
        ),
        rule(
            "sandbox-orgs-no-databases".into(),
            json!({"platforms": ["cf-*"], "services": ["aws.rds*", "aws.aurora*", "aws.redshift", "gcp.google-cloudsql-*"], "operations": ["provision"], "when": {"context.organization_name": ["sandbox-*", "trial-*"]}, "reason": "sandbox organizations get no databases"}),
        ),
        rule(
            "no-public-buckets".into(),
            json!({"services": ["aws.s3", "gcp.google-storage"], "when": {"parameters.BucketAccessControl": ["Public*"]}, "reason": "buckets are private"}),
        ),
    ];
    let tail = vec![rule(
        DENIED.into(),
        json!({"platforms": ["k8s-*"], "services": ["aws.rdsoracle", "aws.rdsmssql"], "operations": ["provision"], "when": {"context.namespace_annotations.example.com/cost-center": ["sandbox*", "trial*"]}, "reason": "licensed database engines need a real cost center"}),
    )];
    let teams: Vec<Value> = (1..=25)
        .map(|n| {
            rule(
                format!("team-{n:02}-quota-freeze"),
                json!({
                    "operations": ["provision", "update"],
                    "when": {
                        "context.namespace": [format!("team-{n:02}"), format!("team-{n:02}-*")],
                        "context.namespace_annotations.example.com/quota": ["exhausted"],
                    },
                    "reason": format!("team {n:02} is over its cloud budget (ask FinOps)"),
                }),
            )
        })
        .collect();
    let big: Vec<Glob> = BIG_PLANS.iter().map(|g| Glob::new(g)).collect();
    let mut per_service = Vec::new();
    for s in services(plans) {
        let big_plans: Vec<&str> = s
            .plans
            .iter()
            .map(|p| p.plan.as_str())
            .filter(|p| big.iter().any(|g| g.matches(p)))
            .collect();
        if !big_plans.is_empty() {
            per_service.push(rule(
                format!("{}-big-plans-not-for-dev-tier", s.short),
                json!({
                    "services": [s.service],
                    "plans": big_plans,
                    "operations": ["provision", "update"],
                    "when": {"context.namespace_annotations.example.com/tier": ["dev", "test", "scratch"]},
                    "reason": format!("{} {} plans are for production-tier namespaces", s.broker, s.short),
                }),
            ));
        }
    }
    let want = 60 - head.len() - tail.len() - teams.len();
    assert!(
        per_service.len() >= want,
        "only {} per-service deny rules",
        per_service.len()
    );
    per_service.truncate(want);
    // Interleave teams and services as a file grown over time would be.
    let mut middle = Vec::new();
    let (mut t, mut s) = (teams.into_iter(), per_service.into_iter());
    loop {
        match (t.next(), s.next()) {
            (None, None) => break,
            (a, b) => middle.extend(a.into_iter().chain(b)),
        }
    }
    head.into_iter().chain(middle).chain(tail).collect()
}

const EU: [&str; 3] = ["k8s-prod-eu", "k8s-staging", "k8s-dev"];
const OFFERINGS: [&str; 4] = ["mysql", "postgres", "redis", "objectstore"];

fn parameter_rules(plans: &[FixturePlan]) -> Vec<Value> {
    let head = vec![
        rule(
            "azure-location-eu".into(),
            json!({"platforms": EU, "brokers": ["azure"], "defaults": {"location": "westeurope"}}),
        ),
        rule(
            "azure-location-us".into(),
            json!({"platforms": ["k8s-prod-us"], "brokers": ["azure"], "defaults": {"location": "eastus"}}),
        ),
        rule(
            "azure-location-cf".into(),
            json!({"platforms": ["cf-*"], "brokers": ["azure"], "defaults": {"location": "northeurope"}}),
        ),
        rule(
            "azure-resource-group".into(),
            json!({"platforms": ["k8s-*"], "brokers": ["azure"], "defaults": {"resourceGroup": "{context.namespace}"}}),
        ),
        rule(
            "azure-resource-group-cf".into(),
            json!({"platforms": ["cf-*"], "brokers": ["azure"], "defaults": {"resourceGroup": "{context.space_name}"}}),
        ),
        rule(
            "aws-region-eu".into(),
            json!({"platforms": EU, "brokers": ["aws"], "defaults": {"region": "eu-central-1"}, "allowed": {"region": ["eu-*"]}}),
        ),
        rule(
            "aws-region-us".into(),
            json!({"platforms": ["k8s-prod-us"], "brokers": ["aws"], "defaults": {"region": "us-east-1"}, "allowed": {"region": ["us-*"]}}),
        ),
        rule(
            "gcp-region-eu".into(),
            json!({"platforms": EU, "brokers": ["gcp"], "defaults": {"region": "europe-west1"}, "allowed": {"region": ["europe-*"]}}),
        ),
        rule(
            "gcp-region-us".into(),
            json!({"platforms": ["k8s-prod-us"], "brokers": ["gcp"], "defaults": {"region": "us-east1"}, "allowed": {"region": ["us-*"]}}),
        ),
        rule(
            "aws-account-from-namespace".into(),
            json!({"platforms": ["k8s-*"], "brokers": ["aws"], "defaults": {"target_account_id": "{context.namespace_annotations.example.com/aws-account}"}}),
        ),
        rule(
            "no-public-endpoints".into(),
            json!({"forbid": ["firewallRules", "authorized_networks", "virtualNetworkRules"]}),
        ),
        rule(
            "no-admin-credentials".into(),
            json!({"forbid": ["adminAccountSettings", "MasterUser*", "*password*"]}),
        ),
        rule(
            "offerings-cost-center".into(),
            json!({"platforms": ["k8s-*"], "services": OFFERINGS, "defaults": {"cost_center": "{context.namespace_annotations.example.com/cost-center}"}}),
        ),
        rule(
            "offerings-regions".into(),
            json!({"services": OFFERINGS, "allowed": {"region": ["eu-*", "europe-*", "westeurope", "us-*"]}}),
        ),
        rule(
            "dev-small-azure-cores".into(),
            json!({"platforms": ["k8s-dev"], "brokers": ["azure"], "allowed": {"cores": [1, 2]}}),
        ),
    ];
    // Per service, from what its schema accepts.
    let mut generated = Vec::new();
    for s in services(plans) {
        let props = s.plans.first().map(|p| properties(p)).unwrap_or_default();
        let has = |p: &str| props.contains(&p);
        let svc = [s.service];
        if has("sslEnforcement") {
            generated.push(rule(
                format!("{}-tls", s.short),
                json!({"services": svc, "force": {"sslEnforcement": "enabled"}}),
            ));
        }
        if has("backupRetention") {
            generated.push(rule(
                format!("{}-backups-in-prod", s.short),
                json!({"platforms": ["k8s-prod-*", "cf-prod"], "services": svc, "defaults": {"backupRetention": 35}}),
            ));
        }
        if has("PubliclyAccessible") {
            generated.push(rule(
                format!("{}-private", s.short),
                json!({"services": svc, "force": {"PubliclyAccessible": "false"}}),
            ));
        }
        if has("backups_enabled") {
            generated.push(rule(
                format!("{}-backups", s.short),
                json!({"services": svc, "force": {"backups_enabled": "true"}}),
            ));
        }
        if has("disk_type") {
            generated.push(rule(
                format!("{}-ssd-in-prod", s.short),
                json!({"platforms": ["k8s-prod-*", "cf-prod"], "services": svc, "defaults": {"disk_type": "PD_SSD"}, "allowed": {"disk_type": ["PD_SSD"]}}),
            ));
        }
        if has("user_tags") {
            generated.push(rule(
                format!("{}-owner-tags", s.short),
                json!({"platforms": ["k8s-*"], "services": svc, "defaults": {"user_tags": "{context.namespace_annotations.example.com/aws-tags}"}}),
            ));
        }
    }
    let want = 60 - head.len();
    assert!(
        generated.len() >= want,
        "only {} generated parameter rules",
        generated.len()
    );
    generated.truncate(want);
    head.into_iter().chain(generated).collect()
}

/// A placement candidate.
fn candidate(broker: &str, service: &str, small: &str, large: &str, weight: u32) -> Value {
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

fn offerings() -> Vec<Value> {
    let az_mysql = || candidate("azure", "azure-mysql-5-7", "basic", "general-purpose", 0);
    let gcp_mysql = || {
        candidate(
            "gcp",
            "google-cloudsql-mysql",
            "mysql-db-f1-micro",
            "mysql-db-n1-standard-2",
            0,
        )
    };
    let aws_mysql = || candidate("aws", "rdsmysql", "dev", "production", 0);
    let az_pg = || candidate("azure", "azure-postgresql-10", "basic", "general-purpose", 0);
    let gcp_pg = || {
        candidate(
            "gcp",
            "google-cloudsql-postgres",
            "postgres-db-f1-micro",
            "postgres-db-n1-standard-2",
            0,
        )
    };
    let aws_pg = || candidate("aws", "rdspostgresql", "dev", "production", 0);
    let az_redis = || candidate("azure", "azure-rediscache", "basic", "standard", 0);
    let gcp_redis = || candidate("gcp", "google-memorystore-redis", "basic", "standard_ha", 0);
    let aws_redis = || candidate("aws", "elasticache", "custom", "production", 0);
    let az_blob = || {
        candidate(
            "azure",
            "azure-storage-blob-storage-account-and-container",
            "all-in-one",
            "all-in-one",
            0,
        )
    };
    let gcp_gcs = || candidate("gcp", "google-storage", "standard", "multiregional", 0);
    let aws_s3 = || candidate("aws", "s3", "custom", "production", 0);
    let weighted = |mut c: Value, w: u32| {
        c["weight"] = json!(w);
        c
    };
    vec![
        offering(
            "mysql",
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
            "postgres",
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
            "redis",
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
            "objectstore",
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

/// YAML flow style, one rule per line: keys bare when they can be, every string quoted.
fn flow(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    let bare = k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    let key = if bare {
                        k.clone()
                    } else {
                        Value::String(k.clone()).to_string()
                    };
                    format!("{key}: {}", flow(v))
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(flow).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// The policy file (YAML) over `plans`, with exactly [`RULES`] named rules.
pub fn policy_yaml(plans: &[FixturePlan]) -> String {
    let visibility = visibility_rules(plans);
    let deny = deny_rules(plans);
    let parameters = parameter_rules(plans);
    let offerings = offerings();
    let placement: usize = offerings
        .iter()
        .map(|o| o["placement"].as_array().map_or(0, Vec::len))
        .sum();
    let total = visibility.len() + deny.len() + parameters.len() + placement;
    assert_eq!(total, RULES, "the benchmark policy must have {RULES} rules");

    let mut yaml = format!(
        "# Generated by policies/benches/policy200: {} visibility, {} deny, {} parameter and {placement} \
         placement rules.\nvisibility:\n  rules:\n",
        visibility.len(),
        deny.len(),
        parameters.len()
    );
    for r in &visibility {
        yaml.push_str(&format!("    - {}\n", flow(r)));
    }
    yaml.push_str("offerings:\n");
    for o in &offerings {
        yaml.push_str(&format!("  - {}\n", flow(o)));
    }
    yaml.push_str("parameters:\n");
    for r in &parameters {
        yaml.push_str(&format!("  - {}\n", flow(r)));
    }
    yaml.push_str("deny:\n");
    for r in &deny {
        yaml.push_str(&format!("  - {}\n", flow(r)));
    }
    yaml.push_str("schema_validation: true\n");
    if let Some(path) = std::env::var_os("OSB_BENCH_DUMP_POLICY") {
        if let Err(e) = std::fs::write(&path, &yaml) {
            eprintln!("cannot write {}: {e}", PathBuf::from(path).display());
        }
    }
    yaml
}
