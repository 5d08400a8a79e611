//! The policy the policy benchmarks run: exactly 200 named rules over the real OSBA (Azure), AWS
//! and GCP catalogs in `fixtures/catalogs`, written the way a platform team with six platforms
//! (`k8s-prod-eu`, `k8s-prod-us`, `k8s-staging`, `k8s-dev`, `cf-prod`, `cf-dev`) would; and the
//! same policy grown to any multiple of 200 rules ([`policy_yaml_sized`], e.g. 2,000).
//!
//! | section | rules per 200 | what |
//! |---|---|---|
//! | visibility | 60 | big and `custom` plans hidden outside production, one rule per service; tag rules; Cloud Foundry and dev platform rules last |
//! | deny | 60 | namespace rules, per-team quota freezes (`when` on namespace and annotation), per-service "production plans are not for dev-tier namespaces", region rules; the last one fires for [`DENIED`] calls |
//! | parameters | 60 | per-cloud location and region defaults with `allowed`, templates from the context, forbidden names, per-service forced and defaulted values taken from the plans' schemas |
//! | placement | 20 | four logical offerings (`mysql`, `postgres`, `redis`, `objectstore`) with rules on parameters, context and platform, weighted candidates and failover |
//!
//! 40 of the 60 visibility rules and 3 of the 60 deny rules name only concrete platforms (the rule
//! index lists them under those platforms); the others name a glob (`k8s-*`, `cf-*`, 19 and 2) or
//! no platform (1 and 55) and are candidates on every platform. So a call from `k8s-prod-eu` that
//! no rule matches walks 20 of the visibility and 59 of the deny rules. Parameter and placement
//! rules are not indexed: every one is walked.
//!
//! A policy of `200·k` rules is `k` generations of these 200 (module `scale`): generation 1 is the
//! 200-rule policy unchanged, generation `g` the same rules about the brokers `azure-g<g>`,
//! `aws-g<g>`, `gcp-g<g>` and the offerings `mysql-g<g>`, …, with the same platforms, the next 25
//! teams, and names suffixed `-g<g>`. Each section keeps its share (600 visibility, 600 deny, 600
//! parameter and 200 placement rules in 40 offerings at 2,000), the deny rule [`DENIED`] stays the
//! very last one, and the calls of the benchmarks (to generation 1's brokers) match in the larger
//! policy exactly the rules they match in the 200-rule one.
//!
//! Service and plan names are the catalogs' own (published as `<broker>.<service>`), so selectors
//! match the way they would in production. Shared by `policies/benches/decide.rs` (per-call
//! decisions) and `routing/benches/render.rs` (catalog views after a reload), which includes this
//! file by path. Set `OSB_BENCH_DUMP_POLICY=<file>` to write the generated YAML out (a policy of
//! another size than 200 to `<file>.<size>`).
//!
//! Not a test fixture: nothing here is checked except the rule count and that the file compiles;
//! the benches assert the outcome of the calls they time.

mod offerings;
mod rules;
mod scale;

use std::path::PathBuf;

use serde_json::{Map, Value};

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

fn rule(name: String, fields: Value) -> Value {
    let mut rule = Map::new();
    rule.insert("name".to_owned(), Value::String(name));
    if let Value::Object(fields) = fields {
        rule.extend(fields);
    }
    Value::Object(rule)
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
    policy_yaml_sized(plans, RULES)
}

/// The policy file (YAML) over `plans` with `size` named rules, a multiple of [`RULES`]: that
/// many generations of the 200-rule policy, the first being [`policy_yaml`]'s.
pub fn policy_yaml_sized(plans: &[FixturePlan], size: usize) -> String {
    assert!(
        size > 0 && size.is_multiple_of(RULES),
        "the benchmark policy grows by {RULES} rules, not to {size}"
    );
    let generations = 1..=size / RULES;
    let visibility: Vec<Value> = generations
        .clone()
        .flat_map(|g| rules::visibility_rules(plans, g))
        .collect();
    let mut deny: Vec<Value> = generations
        .clone()
        .flat_map(|g| rules::deny_rules(plans, g))
        .collect();
    // DENIED closes the first generation; it closes the whole list.
    let last = deny
        .iter()
        .position(|r| r["name"] == DENIED)
        .expect("the first generation has DENIED");
    let denied = deny.remove(last);
    deny.push(denied);
    let parameters: Vec<Value> = generations
        .clone()
        .flat_map(|g| rules::parameter_rules(plans, g))
        .collect();
    let offerings: Vec<Value> = generations.flat_map(offerings::offerings).collect();
    let placement: usize = offerings
        .iter()
        .map(|o| o["placement"].as_array().map_or(0, Vec::len))
        .sum();
    let total = visibility.len() + deny.len() + parameters.len() + placement;
    assert_eq!(total, size, "the benchmark policy must have {size} rules");

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
        let mut path = PathBuf::from(path);
        if size != RULES {
            path.as_mut_os_string().push(format!(".{size}"));
        }
        if let Err(e) = std::fs::write(&path, &yaml) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
    yaml
}
