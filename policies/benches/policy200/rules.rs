//! The visibility, deny and parameter rules of one generation of the benchmark policy (see the
//! module doc of `policy200`): 60 of each per generation, generation 1 being the 200-rule policy
//! exactly as it always was. Later generations are the same rules re-targeted by
//! [`super::scale::retarget`], except the team quota freezes, which go on to the next 25 teams.

use osb_policies::glob::Glob;
use serde_json::{Value, json};

use super::scale::retarget;
use super::{DENIED, FixturePlan, properties, rule, services};

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

/// The 60 visibility rules of `generation` (1: the 200-rule policy's).
pub(super) fn visibility_rules(plans: &[FixturePlan], generation: usize) -> Vec<Value> {
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
    head.into_iter()
        .chain(generated)
        .chain(tail)
        .map(|r| retarget(r, generation))
        .collect()
}

/// The 60 deny rules of `generation`; generation 1 ends with [`DENIED`], later ones with a copy of
/// it about their own brokers.
pub(super) fn deny_rules(plans: &[FixturePlan], generation: usize) -> Vec<Value> {
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
    // Generation g freezes teams 25(g-1)+1 ..= 25g.
    let first = 25 * (generation as u32 - 1) + 1;
    let teams: Vec<Value> = (first..first + 25)
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
    let retargeted = |rules: Vec<Value>| rules.into_iter().map(move |r| retarget(r, generation));
    let (head, per_service, tail) = (retargeted(head), retargeted(per_service), retargeted(tail));
    // Interleave teams and services as a file grown over time would be.
    let mut middle = Vec::new();
    let (mut t, mut s) = (teams.into_iter(), per_service);
    loop {
        match (t.next(), s.next()) {
            (None, None) => break,
            (a, b) => middle.extend(a.into_iter().chain(b)),
        }
    }
    head.chain(middle).chain(tail).collect()
}

const EU: [&str; 3] = ["k8s-prod-eu", "k8s-staging", "k8s-dev"];
/// The logical offerings of generation 1 (`services` of the parameter rules about them).
pub(super) const OFFERINGS: [&str; 4] = ["mysql", "postgres", "redis", "objectstore"];

/// The 60 parameter rules of `generation`.
pub(super) fn parameter_rules(plans: &[FixturePlan], generation: usize) -> Vec<Value> {
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
    head.into_iter()
        .chain(generated)
        .map(|r| retarget(r, generation))
        .collect()
}
