//! Target `policy`: the policy file through the parser and compiler (`osb_policies::Policy::parse`),
//! then every decision of a policy that compiled, and the rate limiters built from its limits.
//!
//! Properties: a file is either a policy or a list of problems, each naming the origin and saying
//! what is wrong; a compiled policy answers every decision (visibility, admit, parameters,
//! placement) for any facts without panicking, and its limits build limiters that answer.

use std::sync::OnceLock;

use osb_config::FileFormat;
use osb_gateway::edge::limits::{Class, Limiters};
use osb_policies::{CallFacts, Operation, PlanFacts, Policy, PolicyError};
use serde_json::{Map, Value};

use super::input::{Input, mutate, yaml_seed};

const EXAMPLE: &str = include_str!("../../../../config/examples/policy.yaml");

fn seed() -> &'static Value {
    static SEED: OnceLock<Value> = OnceLock::new();
    SEED.get_or_init(|| yaml_seed(EXAMPLE))
}

/// Settings naming the platforms and brokers the limiters know.
fn settings() -> &'static osb_config::Settings {
    static SETTINGS: OnceLock<osb_config::Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let yaml = "platforms:\n  - {name: k8s-prod, username: u, password: pw}\n  \
                    - {name: k8s-dev, username: d, password: pw}\n  - {name: cf, bearer_token: t}\n\
                    brokers:\n  - {name: azure, url: \"http://127.0.0.1:1\"}\n  \
                    - {name: aws, url: \"http://127.0.0.1:2\"}\n";
        super::input::settings(yaml)
    })
}

pub fn policy(data: &[u8]) {
    let mut input = Input::new(data);
    let (text, format) = if input.raw_mode() {
        let format = if input.one_in(3) {
            FileFormat::Toml
        } else {
            FileFormat::Yaml
        };
        (
            String::from_utf8_lossy(input.bytes(usize::MAX)).into_owned(),
            format,
        )
    } else if input.one_in(8) {
        // The example as written (comments, flow style), with a line dropped or doubled.
        let mut lines: Vec<&str> = EXAMPLE.lines().collect();
        let at = input.below(lines.len());
        if input.one_in(2) {
            if at < lines.len() {
                lines.remove(at);
            }
        } else if let Some(line) = lines.get(at).copied() {
            lines.insert(at, line);
        }
        (lines.join("\n"), FileFormat::Yaml)
    } else {
        // JSON is YAML: the mutated example, as a YAML document.
        let mut value = seed().clone();
        mutate(&mut value, &mut input, 6);
        (value.to_string(), FileFormat::Yaml)
    };
    match Policy::parse(&text, format, "policy.yaml") {
        Err(PolicyError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "an invalid policy without a problem");
            for problem in &problems {
                assert_eq!(problem.origin, "policy.yaml");
                assert!(
                    !problem.message.is_empty(),
                    "a problem without a message at {}",
                    problem.key
                );
            }
        }
        Ok(policy) => decide(&policy, &mut input),
    }
}

/// Asks a compiled policy every question the gateway asks, with facts from the input.
fn decide(policy: &Policy, input: &mut Input<'_>) {
    let mut context = Map::new();
    context.insert("platform".to_owned(), Value::from("kubernetes"));
    context.insert("namespace".to_owned(), Value::from(input.text()));
    let mut annotations = Map::new();
    annotations.insert("example.com/cost-center".to_owned(), Value::from(input.text()));
    context.insert("namespace_annotations".to_owned(), Value::Object(annotations));
    let context = Value::Object(context);
    let mut parameters = Map::new();
    for _ in 0..input.below(4) {
        parameters.insert(input.text(), super::input::scalar(input));
    }
    let tags = vec![input.text()];
    for _ in 0..4 {
        let platform = input.text();
        let service = input.text();
        let plan = input.text();
        let broker = input.text();
        let facts = PlanFacts {
            broker: &broker,
            service: &service,
            plan: &plan,
            tags: &tags,
            free: input.one_in(2),
        };
        let operation = *input
            .pick(&[
                Operation::Provision,
                Operation::Update,
                Operation::Deprovision,
                Operation::Bind,
                Operation::Unbind,
            ])
            .unwrap_or(&Operation::Provision);
        let instance_id = input.text();
        let call = CallFacts {
            platform: &platform,
            operation,
            instance_id: &instance_id,
            plan: facts,
            context: (!input.one_in(4)).then_some(&context),
            parameters: (!input.one_in(4)).then_some(&parameters),
        };
        let _ = policy.visibility(&platform, &facts);
        let _ = policy.admit(&call);
        if let Err(denial) = policy.parameters(&call) {
            assert!(!denial.rule.is_empty() && !denial.reason.is_empty());
        }
        let healthy_mask = input.byte();
        for offering in &policy.offerings {
            for (i, offering_plan) in offering.plans.iter().enumerate() {
                let healthy = |broker: &str| (healthy_mask >> ((broker.len() + i) % 8)) & 1 == 1;
                if let Ok(placement) = policy.place(offering, &offering_plan.name, &call, &healthy) {
                    assert!(healthy(&placement.broker), "placed on an unhealthy broker");
                }
            }
        }
    }
    {
        let limiters = Limiters::new(settings());
        for platform in ["k8s-prod", "k8s-dev", "cf"] {
            for class in [Class::Catalog, Class::Calls] {
                let _ = limiters.check_platform(1, &policy.limits, platform, class);
            }
        }
        for broker in ["azure", "aws"] {
            let _ = limiters.check_broker(1, &policy.limits, broker);
        }
    }
}
