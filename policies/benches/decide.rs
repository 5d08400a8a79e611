//! Benchmark: the policy step of one OSB call under a 200-rule and a 2,000-rule policy (issues 4
//! and 22).
//!
//! `cargo bench -p osb-policies --bench decide` times whole per-call decisions as the gateway's
//! `Decider::provision` makes them (gateway/src/decide.rs): visibility and deny rules (`admit`),
//! placement for a logical offering (`place`), parameter rules (`parameters`), then the check of
//! the resulting parameters against the upstream plan's JSON schema, compiled once beforehand as the
//! gateway's schema cache holds it. The policies are [`policy200`]'s: 200 rules over the real
//! Azure, AWS and GCP catalogs, and the same grown tenfold (ten generations of the 200 rules, the
//! copies about other brokers of the same clouds, with the same platforms: 600 visibility, 600
//! deny, 600 parameter, 200 placement rules). The copies keep the mix of platform selectors: two
//! thirds of the visibility rules and a few deny rules name only concrete platforms and are
//! skipped by the rule index for other platforms; the rest, and every parameter rule, are walked
//! on every call, so at 2,000 rules a call walks ten times the rules it walks at 200 (printed per
//! size). `POLICY_SIZES` (default `200,2000`, multiples of 200) picks the sizes. Three
//! representative calls, the same at every size:
//!
//! - `allowed`: `k8s-prod-eu` provisions `azure.azure-postgresql-10/general-purpose`; no visibility
//!   or deny rule matches, so every candidate the rule index gives for `k8s-prod-eu` is walked,
//!   and every parameter rule (not indexed); six parameter rules set or check values.
//! - `denied-late`: `k8s-prod-us` provisions `aws.rdsoracle/production` from a sandbox cost center;
//!   the last deny rule (60th of 60, 600th of 600) refuses it.
//! - `placed`: `k8s-prod-eu` provisions the logical `postgres/small`; the sixth placement rule
//!   places it (weighted, stable per instance id) on GCP.
//!
//! First criterion's groups (means and medians) per size, `<size>/decision/...` and
//! `<size>/stage/...`; then a percentile pass: `DECISIONS` (default 100000) individual decisions
//! per call and size, each timed with `Instant`, sorted, p50/p99/p99.9 printed, then p50 and p99
//! side by side with the ratio of the largest size to the smallest. Without `--bench` (`cargo test
//! --benches`) every benchmark runs once and the pass is short.
//!
//! Deliberately left out: the gateway's id lookups (catalog route table, logical table) and the
//! schema cache lookup (a moka `get`), which are hash lookups independent of the policy's size.

// A benchmark, not a request path: a broken fixture may panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[allow(dead_code)] // shared with routing/benches/render.rs, which uses other parts of it
mod policy200;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use osb_config::FileFormat;
use osb_policies::policy::RuleIndex;
use osb_policies::schema::parameters_schema;
use osb_policies::{CallFacts, Denial, Explanation, Operation, PlanFacts, Policy, Schema};
use serde_json::{Map, Value, json};

use policy200::FixturePlan;

/// A platform's provision, owned; [`Call::facts`] lends it to the policy.
struct Call {
    label: &'static str,
    platform: &'static str,
    instance_id: String,
    /// `gateway` and the offering's name for a logical offering.
    broker: String,
    service: String,
    plan: String,
    tags: Vec<String>,
    free: bool,
    /// Upstream service name of a routed plan (`None`: logical, placed per call).
    upstream_service: Option<String>,
    context: Value,
    parameters: Map<String, Value>,
}

impl Call {
    fn facts(&self) -> CallFacts<'_> {
        CallFacts {
            platform: self.platform,
            operation: Operation::Provision,
            instance_id: &self.instance_id,
            plan: PlanFacts {
                broker: &self.broker,
                service: &self.service,
                plan: &self.plan,
                tags: &self.tags,
                free: self.free,
            },
            context: Some(&self.context),
            parameters: Some(&self.parameters),
        }
    }
}

/// What a decision came to.
#[derive(Debug)]
enum Outcome {
    /// Forward to `broker`'s `service`/`plan` with `parameters` (`None`: as received).
    Allowed {
        broker: String,
        service: String,
        plan: String,
        parameters: Option<Map<String, Value>>,
        explanation: Explanation,
    },
    /// 403/400/503 naming the rule.
    Denied(Denial),
    /// 400: the parameters break the upstream plan's schema.
    Invalid(Vec<String>),
}

/// Compiled provision schemas by `broker/service/plan` (upstream names).
type Schemas = HashMap<String, Schema>;

fn schema_key(broker: &str, service: &str, plan: &str) -> String {
    format!("{broker}/{service}/{plan}")
}

/// The policy step of a provision, in the gateway's order; `check_schema: false` stops after the
/// parameter rules.
fn decide(policy: &Policy, schemas: &Schemas, call: &Call, check_schema: bool) -> Outcome {
    let facts = call.facts();
    let mut explanation = match policy.admit(&facts) {
        Ok(e) => e,
        Err(denial) => return Outcome::Denied(denial),
    };
    let (broker, service, plan) = match &call.upstream_service {
        Some(upstream) => (call.broker.clone(), upstream.clone(), call.plan.clone()),
        None => {
            let Some(offering) = policy.offering(&call.service) else {
                unreachable!("the benchmark only provisions offerings of its policy")
            };
            match policy.place(offering, &call.plan, &facts, &|_| true) {
                Ok(placement) => {
                    explanation.0.extend(placement.explanation.0);
                    (placement.broker, placement.service, placement.plan)
                }
                Err(denial) => return Outcome::Denied(denial),
            }
        }
    };
    let outcome = match policy.parameters(&facts) {
        Ok(p) => p,
        Err(denial) => return Outcome::Denied(denial),
    };
    explanation.0.extend(outcome.explanation.0);
    let changed = outcome.parameters.as_ref() != facts.parameters;
    if check_schema && policy.schema_validation {
        if let Some(schema) = schemas.get(&schema_key(&broker, &service, &plan)) {
            let value = outcome
                .parameters
                .as_ref()
                .or(facts.parameters)
                .map(|p| Value::Object(p.clone()));
            if let Err(errors) = schema.check(value.as_ref()) {
                return Outcome::Invalid(errors);
            }
            explanation
                .0
                .push("parameters match the plan's provision schema".to_owned());
        }
    }
    Outcome::Allowed {
        broker,
        service,
        plan,
        parameters: changed.then_some(outcome.parameters).flatten(),
        explanation,
    }
}

fn kubernetes(namespace: &str, annotations: Value) -> Value {
    json!({
        "platform": "kubernetes",
        "namespace": namespace,
        "clusterid": "5f0c8d3e-1b7a-4c2e-9d41-0a6b2c3d4e5f",
        "instance_name": "db",
        "namespace_annotations": annotations,
    })
}

fn routed(
    label: &'static str,
    platform: &'static str,
    plans: &[FixturePlan],
    service: &str,
    plan: &str,
) -> Call {
    let p = plans
        .iter()
        .find(|p| p.service == service && p.plan == plan)
        .expect("the plan is in the fixture catalogs");
    Call {
        label,
        platform,
        instance_id: "0b6e1f9a-3c2d-4e5f-8a7b-1c2d3e4f5a6b".to_owned(),
        broker: p.broker.to_owned(),
        service: p.service.clone(),
        plan: p.plan.clone(),
        tags: p.tags.clone(),
        free: p.free,
        upstream_service: Some(p.upstream_service.clone()),
        context: Value::Null,
        parameters: Map::new(),
    }
}

fn calls(policy: &Policy, plans: &[FixturePlan]) -> Vec<Call> {
    let mut allowed = routed(
        "allowed",
        "k8s-prod-eu",
        plans,
        "azure.azure-postgresql-10",
        "general-purpose",
    );
    allowed.context = kubernetes(
        "payments-prod",
        json!({"example.com/cost-center": "cc-4711", "example.com/team": "payments", "example.com/tier": "prod"}),
    );
    allowed.parameters = json!({"cores": 4, "storage": 100}).as_object().cloned().unwrap();

    let mut denied = routed("denied-late", "k8s-prod-us", plans, "aws.rdsoracle", "production");
    denied.context = kubernetes(
        "team-07-web",
        json!({"example.com/cost-center": "sandbox-42", "example.com/team": "team-07"}),
    );
    denied.parameters = json!({"AccessCidr": "10.0.0.0/16", "VpcId": "vpc-0a1b2c3d", "region": "us-east-1"})
        .as_object()
        .cloned()
        .unwrap();

    let offering = policy.offering("postgres").expect("postgres is an offering");
    let mut placed = Call {
        label: "placed",
        platform: "k8s-prod-eu",
        instance_id: String::new(),
        broker: "gateway".to_owned(),
        service: "postgres".to_owned(),
        plan: "small".to_owned(),
        tags: offering.tags.clone(),
        free: true,
        upstream_service: None,
        context: kubernetes(
            "analytics-etl",
            json!({"example.com/cost-center": "cc-4711", "example.com/team": "analytics"}),
        ),
        parameters: json!({"region": "europe-west1"}).as_object().cloned().unwrap(),
    };
    // An instance id the weighted rule places on GCP (whose schema takes these parameters).
    placed.instance_id = (0u32..)
        .map(|n| format!("{n:08x}-7d1e-4c0a-9b2f-5e6d7c8b9a0f"))
        .find(|id| {
            let mut facts = placed.facts();
            facts.instance_id = id;
            policy
                .place(offering, "small", &facts, &|_| true)
                .is_ok_and(|p| p.broker == "gcp")
        })
        .unwrap();
    vec![allowed, denied, placed]
}

/// Each call must come out as its name says, or the timings measure the wrong path.
fn check(policy: &Policy, schemas: &Schemas, calls: &[Call]) {
    for call in calls {
        let outcome = decide(policy, schemas, call, true);
        match (call.label, &outcome) {
            (
                "allowed",
                Outcome::Allowed {
                    broker,
                    service,
                    parameters: Some(p),
                    explanation,
                    ..
                },
            ) => {
                assert_eq!(
                    (broker.as_str(), service.as_str()),
                    ("azure", "azure-postgresql-10")
                );
                // No visibility or deny rule matched: every candidate was walked.
                let walked_all = ["is visible to k8s-prod-eu by the default", "no deny rule matched"];
                for line in walked_all {
                    assert!(explanation.0.iter().any(|l| l.ends_with(line)), "{outcome:?}");
                }
                assert_eq!(p.get("location"), Some(&json!("westeurope")), "{outcome:?}");
                assert_eq!(
                    p.get("resourceGroup"),
                    Some(&json!("payments-prod")),
                    "{outcome:?}"
                );
                assert_eq!(p.get("sslEnforcement"), Some(&json!("enabled")), "{outcome:?}");
                assert_eq!(p.get("backupRetention"), Some(&json!(35)), "{outcome:?}");
            }
            ("denied-late", Outcome::Denied(denial)) => {
                assert_eq!(denial.rule, policy200::DENIED);
                assert_eq!(
                    policy.deny.last().map(|r| r.name.as_str()),
                    Some(policy200::DENIED)
                );
            }
            (
                "placed",
                Outcome::Allowed {
                    broker,
                    service,
                    plan,
                    parameters: Some(p),
                    explanation,
                },
            ) => {
                assert_eq!(
                    (broker.as_str(), service.as_str(), plan.as_str()),
                    ("gcp", "google-cloudsql-postgres", "postgres-db-f1-micro")
                );
                assert_eq!(p.get("cost_center"), Some(&json!("cc-4711")));
                assert!(
                    explanation
                        .0
                        .iter()
                        .any(|l| l.contains("\"postgres-eu-spread\" matches"))
                );
            }
            (label, Outcome::Invalid(errors)) => {
                wrong_outcome(label, &format!("schema errors: {}", errors.join("; ")));
            }
            (label, outcome) => wrong_outcome(label, &format!("{outcome:#?}")),
        }
    }
}

fn wrong_outcome(label: &str, outcome: &str) {
    eprintln!("call {label} came out wrong: {outcome}");
    std::process::exit(1);
}

/// Nearest-rank percentiles over individually timed runs of `f`.
struct Percentiles {
    mean: Duration,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
}

fn time_each(n: usize, mut f: impl FnMut()) -> Percentiles {
    for _ in 0..n / 10 {
        f();
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        f();
        samples.push(start.elapsed());
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    Percentiles {
        mean: samples.iter().sum::<Duration>() / samples.len().max(1) as u32,
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: samples.last().copied().unwrap_or_default(),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// One policy under test: its size, the policy and the three calls (checked).
struct Setup {
    size: usize,
    policy: Policy,
    calls: Vec<Call>,
}

/// `POLICY_SIZES`, else 200 and 2,000 rules.
fn sizes() -> Vec<usize> {
    match std::env::var("POLICY_SIZES") {
        Ok(v) => v
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("POLICY_SIZES: rule counts, comma-separated")
            })
            .collect(),
        Err(_) => vec![policy200::RULES, 10 * policy200::RULES],
    }
}

/// How many of a list of `rules` the index offers a call from `platform`: the rules a decision
/// walks when none of them matches.
fn walked(index: &RuleIndex, platform: &str, rules: usize) -> usize {
    index.candidates(platform, rules).count()
}

/// The `size`-rule policy compiled, its calls made and checked, its shape printed.
fn setup(plans: &[FixturePlan], schemas: &Schemas, size: usize) -> Setup {
    let yaml = policy200::policy_yaml_sized(plans, size);
    let started = Instant::now();
    let policy = Policy::parse(&yaml, FileFormat::Yaml, "<policy200>").unwrap_or_else(|e| {
        eprintln!("the generated {size}-rule policy does not compile:\n{e}");
        std::process::exit(1)
    });
    let compile = started.elapsed();
    let calls = calls(&policy, plans);
    check(&policy, schemas, &calls);
    let (v, d) = (policy.visibility.len(), policy.deny.len());
    println!(
        "policy: {size} rules ({v} visibility, {d} deny, {} parameter, {} placement in {} offerings); \
         parse + compile {:.1} ms; walked when none matches: k8s-prod-eu {} of {v} visibility + {} of {d} \
         deny, k8s-prod-us {} of {d} deny; every parameter rule",
        policy.parameters.len(),
        policy.offerings.iter().map(|o| o.placement.len()).sum::<usize>(),
        policy.offerings.len(),
        compile.as_secs_f64() * 1e3,
        walked(&policy.visibility_index, "k8s-prod-eu", v),
        walked(&policy.deny_index, "k8s-prod-eu", d),
        walked(&policy.deny_index, "k8s-prod-us", d),
    );
    Setup { size, policy, calls }
}

/// Criterion's groups for one policy: whole decisions, then the stages of the allowed and placed
/// calls (the schema check, independent of the policy, is a control).
fn criterion_groups(c: &mut Criterion, setup: &Setup, schemas: &Schemas) {
    let Setup { size, policy, calls } = setup;
    let mut group = c.benchmark_group(format!("{size}/decision"));
    for call in calls {
        group.bench_function(call.label, |b| {
            b.iter(|| decide(policy, schemas, black_box(call), true));
        });
    }
    group.finish();
    let [allowed, _, placed] = &calls[..] else {
        unreachable!("three calls")
    };
    let (v, d) = (policy.visibility.len(), policy.deny.len());
    let admit = format!(
        "admit (allowed: {} of {v} visibility + {} of {d} deny rules)",
        walked(&policy.visibility_index, allowed.platform, v),
        walked(&policy.deny_index, allowed.platform, d),
    );
    let mut group = c.benchmark_group(format!("{size}/stage"));
    group.bench_function(admit, |b| {
        b.iter(|| policy.admit(&black_box(allowed).facts()));
    });
    let parameters = format!(
        "parameters (allowed: {} parameter rules)",
        policy.parameters.len()
    );
    group.bench_function(parameters, |b| {
        b.iter(|| policy.parameters(&black_box(allowed).facts()));
    });
    let offering = policy.offering("postgres").unwrap();
    group.bench_function("place (placed: 6th of 6 rules, weighted)", |b| {
        b.iter(|| policy.place(offering, "small", &black_box(placed).facts(), &|_| true));
    });
    let Outcome::Allowed { parameters, .. } = decide(policy, schemas, allowed, false) else {
        unreachable!("checked above")
    };
    let value = parameters.map(Value::Object);
    let schema = &schemas[&schema_key("azure", "azure-postgresql-10", "general-purpose")];
    group.bench_function("schema check (allowed: azure-postgresql-10)", |b| {
        b.iter(|| schema.check(black_box(value.as_ref())));
    });
    group.finish();
}

/// The percentile pass: `n` individually timed decisions per call, stages and size, then p50 and
/// p99 of each size side by side.
fn percentiles(setups: &[Setup], schemas: &Schemas, n: usize) {
    let timer = time_each(n, || {});
    println!(
        "\nper-decision latency, µs: {n} decisions per row, each timed with Instant (timer overhead p50 {} ns)",
        timer.p50.as_nanos()
    );
    println!(
        "{:>6} {:<12} {:<36} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "rules", "call", "stages", "mean", "p50", "p99", "p99.9", "max"
    );
    let mut rows: Vec<(&str, &str, Vec<Percentiles>)> = Vec::new();
    for (i, first) in setups[0].calls.iter().enumerate() {
        for check_schema in [true, false] {
            let stages = match (first.upstream_service.is_none(), check_schema) {
                _ if first.label == "denied-late" => "admit (denied by the last deny rule)",
                (false, true) => "admit + parameters + schema",
                (false, false) => "admit + parameters",
                (true, true) => "admit + place + parameters + schema",
                (true, false) => "admit + place + parameters",
            };
            if first.label == "denied-late" && !check_schema {
                continue; // denied in admit: the same path
            }
            let mut by_size = Vec::new();
            for Setup { size, policy, calls } in setups {
                let call = &calls[i];
                let p = time_each(n, || {
                    black_box(decide(policy, schemas, black_box(call), check_schema));
                });
                let label = if call.label == "denied-late" {
                    format!("admit (denied by rule {0} of {0})", policy.deny.len())
                } else {
                    stages.to_owned()
                };
                println!(
                    "{size:>6} {:<12} {label:<36} {:>7} {:>7} {:>7} {:>7} {:>8}",
                    call.label,
                    us(p.mean),
                    us(p.p50),
                    us(p.p99),
                    us(p.p999),
                    us(p.max)
                );
                by_size.push(p);
            }
            rows.push((first.label, stages, by_size));
        }
    }

    let (Some(small), Some(large)) = (setups.first(), setups.last()) else {
        return;
    };
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
    print!(
        "\np50 / p99 per decision, µs, by policy size\n{:<12} {:<36}",
        "call", "stages"
    );
    for s in setups {
        print!(" {:>15}", format!("{} rules", s.size));
    }
    println!("  ratio {}/{} p50 / p99", large.size, small.size);
    for (call, stages, by_size) in &rows {
        print!("{call:<12} {stages:<36}");
        for p in by_size {
            print!(" {:>15}", format!("{} / {}", us(p.p50), us(p.p99)));
        }
        let (a, b) = (&by_size[0], &by_size[by_size.len() - 1]);
        println!("  {:.1} / {:.1}", ratio(b.p50, a.p50), ratio(b.p99, a.p99));
    }
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let catalogs = policy200::fixture_catalogs();
    let plans = policy200::fixture_plans(&catalogs);

    let started = Instant::now();
    let schemas: Schemas = plans
        .iter()
        .filter_map(|p| {
            let schema = parameters_schema(p.schemas.as_ref()?, Operation::Provision)?;
            let compiled = Schema::compile(schema).ok()?;
            Some((schema_key(p.broker, &p.upstream_service, &p.plan), compiled))
        })
        .collect();
    println!(
        "{} plans in 3 catalogs; {} provision schemas compiled in {:.0} ms",
        plans.len(),
        schemas.len(),
        started.elapsed().as_secs_f64() * 1e3,
    );
    let setups: Vec<Setup> = sizes()
        .into_iter()
        .map(|size| setup(&plans, &schemas, size))
        .collect();
    if setups.is_empty() {
        return;
    }

    let mut c = Criterion::default().configure_from_args();
    for s in &setups {
        criterion_groups(&mut c, s, &schemas);
    }
    c.final_summary();

    let n: usize = match std::env::var("DECISIONS") {
        Ok(v) => v.parse().expect("DECISIONS is a number"),
        Err(_) if bench_mode => 100_000,
        Err(_) => 200,
    };
    if n > 0 {
        percentiles(&setups, &schemas, n);
    }
}
