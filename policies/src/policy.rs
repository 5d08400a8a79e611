//! The compiled policy: the file checked whole (every problem reported), globs compiled, names
//! unique. A `Policy` is immutable; the gateway swaps a new one in on reload.

mod index;
mod names;
mod quota;

pub use index::{Candidates, RuleIndex};
pub use quota::{Counted, QuotaHold, QuotaRule, bucket_of_key, quota_key, quota_of_key};

use std::collections::{BTreeMap, HashSet};

use osb_config::{FileFormat, Problem, parse_document};
use serde_json::Value;

use crate::PolicyError;
use crate::facts::{Operation, is_fact_path};
use crate::file::*;
use crate::glob::Glob;

/// Which plans (and calls) a rule is about; every selector given must match.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub platforms: Option<Vec<Glob>>,
    pub services: Option<Vec<Glob>>,
    pub plans: Option<Vec<Glob>>,
    pub brokers: Option<Vec<Glob>>,
    pub tags: Option<Vec<String>>,
    pub free: Option<bool>,
}

/// A visibility rule.
#[derive(Debug, Clone)]
pub struct VisibilityRule {
    pub name: String,
    pub selector: Selector,
    pub show: bool,
}

/// A logical offering presented by the gateway.
#[derive(Debug, Clone)]
pub struct Offering {
    pub name: String,
    pub description: String,
    pub bindable: bool,
    pub tags: Vec<String>,
    pub metadata: Option<Value>,
    pub plans: Vec<OfferingPlan>,
    pub placement: Vec<PlacementRule>,
}

/// A plan of a logical offering.
#[derive(Debug, Clone)]
pub struct OfferingPlan {
    pub name: String,
    pub description: String,
    pub free: bool,
    pub bindable: Option<bool>,
    pub metadata: Option<Value>,
}

/// Fact path → globs, all must match.
pub type Conditions = Vec<(String, Vec<Glob>)>;

/// One placement rule of an offering.
#[derive(Debug, Clone)]
pub struct PlacementRule {
    pub name: String,
    pub when: Conditions,
    pub candidates: Vec<Candidate>,
}

/// Where a placement can land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub broker: String,
    /// Upstream service name.
    pub service: String,
    /// Offering plan → upstream plan name.
    pub plans: BTreeMap<String, String>,
    pub weight: u32,
}

/// A parameter rule.
#[derive(Debug, Clone)]
pub struct ParameterRule {
    pub name: String,
    pub selector: Selector,
    pub operations: Vec<Operation>,
    pub defaults: BTreeMap<String, Value>,
    pub force: BTreeMap<String, Value>,
    pub allowed: BTreeMap<String, Vec<Value>>,
    pub forbid: Vec<Glob>,
}

/// A deny rule.
#[derive(Debug, Clone)]
pub struct DenyRule {
    pub name: String,
    pub selector: Selector,
    pub operations: Option<Vec<Operation>>,
    pub when: Conditions,
    pub reason: String,
}

/// A rate: so many per second sustained, so many at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: u32,
    pub burst: u32,
}

/// A platform's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlatformLimit {
    pub catalog: Option<Rate>,
    pub calls: Option<Rate>,
}

/// Rate limits by name glob, first match wins.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub platforms: Vec<(Glob, PlatformLimit)>,
    pub brokers: Vec<(Glob, Rate)>,
}

impl Limits {
    /// The limits of platform `name`.
    pub fn platform(&self, name: &str) -> PlatformLimit {
        self.platforms
            .iter()
            .find(|(g, _)| g.matches(name))
            .map(|(_, l)| *l)
            .unwrap_or_default()
    }

    /// The limit of broker `name`.
    pub fn broker(&self, name: &str) -> Option<Rate> {
        self.brokers
            .iter()
            .find(|(g, _)| g.matches(name))
            .map(|(_, r)| *r)
    }
}

/// The policy: see the crate docs and [`crate::file`] for the language.
#[derive(Debug, Clone)]
pub struct Policy {
    pub default_visible: bool,
    pub visibility: Vec<VisibilityRule>,
    pub offerings: Vec<Offering>,
    pub parameters: Vec<ParameterRule>,
    pub deny: Vec<DenyRule>,
    pub schema_validation: bool,
    pub limits: Limits,
    pub quotas: Vec<QuotaRule>,
    /// `visibility` by the platform each rule names (built with the policy).
    pub visibility_index: RuleIndex,
    /// `deny` likewise.
    pub deny_index: RuleIndex,
}

impl Default for Policy {
    /// No file: everything visible, no offerings, no rules, schemas checked.
    fn default() -> Self {
        Policy {
            default_visible: true,
            visibility: Vec::new(),
            offerings: Vec::new(),
            parameters: Vec::new(),
            deny: Vec::new(),
            schema_validation: true,
            limits: Limits::default(),
            quotas: Vec::new(),
            visibility_index: RuleIndex::default(),
            deny_index: RuleIndex::default(),
        }
    }
}

/// Collects problems while compiling.
struct Compiler<'a> {
    origin: &'a str,
    problems: Vec<Problem>,
    names: HashSet<String>,
}

impl Compiler<'_> {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: self.origin.to_owned(),
            key: key.into(),
            message: message.into(),
        });
    }

    /// A rule's name: required and unique across the file (decisions name it).
    fn rule_name(&mut self, key: &str, name: Option<&String>) -> String {
        match name.filter(|n| !n.is_empty()) {
            Some(name) => {
                if !self.names.insert(name.clone()) {
                    self.problem(format!("{key}.name"), format!("rule name {name:?} is used twice"));
                }
                name.clone()
            }
            None => {
                self.problem(
                    format!("{key}.name"),
                    "every rule needs a name (decisions cite it)",
                );
                String::new()
            }
        }
    }

    fn conditions(&mut self, key: &str, when: &BTreeMap<String, Vec<String>>) -> Conditions {
        when.iter()
            .map(|(path, globs)| {
                if !is_fact_path(path) {
                    self.problem(
                        format!("{key}.when.{path}"),
                        "unknown fact: use platform, operation, instance_id, service, plan, broker, context.… or parameters.…",
                    );
                }
                (path.clone(), globs.iter().map(|g| Glob::new(g)).collect())
            })
            .collect()
    }

    fn operations(&mut self, key: &str, words: &[String]) -> Vec<Operation> {
        words
            .iter()
            .filter_map(|w| {
                let op = Operation::parse(w);
                if op.is_none() {
                    self.problem(
                        format!("{key}.operations"),
                        format!("unknown operation {w:?}: provision, update, deprovision, bind, unbind"),
                    );
                }
                op
            })
            .collect()
    }
}

fn globs(list: Option<&Vec<String>>) -> Option<Vec<Glob>> {
    list.map(|l| l.iter().map(|g| Glob::new(g)).collect())
}

fn selector(
    platforms: Option<&Vec<String>>,
    services: Option<&Vec<String>>,
    plans: Option<&Vec<String>>,
    brokers: Option<&Vec<String>>,
    tags: Option<&Vec<String>>,
    free: Option<bool>,
) -> Selector {
    Selector {
        platforms: globs(platforms),
        services: globs(services),
        plans: globs(plans),
        brokers: globs(brokers),
        tags: tags.cloned(),
        free,
    }
}

impl Policy {
    /// Parses and compiles a policy file (YAML, or TOML for `FileFormat::Toml`).
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] with every problem, each naming `origin` and the key path.
    pub fn parse(text: &str, format: FileFormat, origin: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = parse_document(text, format, origin).map_err(PolicyError::Invalid)?;
        Self::compile(&file, origin)
    }

    /// Compiles a parsed policy file.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] with every problem.
    pub fn compile(file: &PolicyFile, origin: &str) -> Result<Policy, PolicyError> {
        let mut c = Compiler {
            origin,
            problems: Vec::new(),
            names: HashSet::new(),
        };

        let default_visible = match file.visibility.default.as_deref().unwrap_or("visible") {
            "visible" => true,
            "hidden" => false,
            other => {
                c.problem(
                    "visibility.default",
                    format!("expected visible or hidden, got {other:?}"),
                );
                true
            }
        };
        let mut visibility = Vec::new();
        for (i, rule) in file.visibility.rules.iter().enumerate() {
            let key = format!("visibility.rules[{i}]");
            let name = c.rule_name(&key, rule.name.as_ref());
            let show = match rule.effect.as_deref() {
                Some("show") => true,
                Some("hide") => false,
                other => {
                    c.problem(
                        format!("{key}.effect"),
                        format!("expected show or hide, got {other:?}"),
                    );
                    true
                }
            };
            let selector = selector(
                rule.platforms.as_ref(),
                rule.services.as_ref(),
                rule.plans.as_ref(),
                rule.brokers.as_ref(),
                rule.tags.as_ref(),
                rule.free,
            );
            visibility.push(VisibilityRule { name, selector, show });
        }

        let mut offerings = Vec::new();
        let mut offering_names = HashSet::new();
        for (i, o) in file.offerings.iter().enumerate() {
            let key = format!("offerings[{i}]");
            let name = o.name.clone().unwrap_or_default();
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
            if !valid_name {
                c.problem(
                    format!("{key}.name"),
                    format!("expected lower-case letters, digits, '-', '.', got {name:?}"),
                );
            } else if !offering_names.insert(name.clone()) {
                c.problem(
                    format!("{key}.name"),
                    format!("offering {name:?} is defined twice"),
                );
            }
            let mut plans = Vec::new();
            let mut plan_names = HashSet::new();
            for (j, p) in o.plans.iter().enumerate() {
                let plan_name = p.name.clone().unwrap_or_default();
                if plan_name.is_empty() || !plan_names.insert(plan_name.clone()) {
                    c.problem(
                        format!("{key}.plans[{j}].name"),
                        format!("plan names must be non-empty and unique, got {plan_name:?}"),
                    );
                }
                plans.push(OfferingPlan {
                    description: p.description.clone().unwrap_or_else(|| plan_name.clone()),
                    name: plan_name,
                    free: p.free.unwrap_or(true),
                    bindable: p.bindable,
                    metadata: p.metadata.clone(),
                });
            }
            if plans.is_empty() {
                c.problem(format!("{key}.plans"), "an offering needs at least one plan");
            }
            let mut placement = Vec::new();
            for (j, rule) in o.placement.iter().enumerate() {
                let rule_key = format!("{key}.placement[{j}]");
                let rule_name = c.rule_name(&rule_key, rule.name.as_ref());
                let when = c.conditions(&rule_key, &rule.when);
                let mut candidates = Vec::new();
                for (k, cand) in rule.candidates.iter().enumerate() {
                    let cand_key = format!("{rule_key}.candidates[{k}]");
                    let broker = cand.broker.clone().unwrap_or_default();
                    let service = cand.service.clone().unwrap_or_default();
                    if broker.is_empty() {
                        c.problem(format!("{cand_key}.broker"), "is required");
                    }
                    if service.is_empty() {
                        c.problem(
                            format!("{cand_key}.service"),
                            "is required (the upstream service's name)",
                        );
                    }
                    for plan in cand.plans.keys() {
                        if !plan_names.contains(plan) {
                            c.problem(
                                format!("{cand_key}.plans.{plan}"),
                                format!("{plan:?} is not a plan of offering {name:?}"),
                            );
                        }
                    }
                    for plan in &plan_names {
                        if !cand.plans.contains_key(plan) {
                            c.problem(
                                format!("{cand_key}.plans"),
                                format!("plan {plan:?} is not mapped to an upstream plan"),
                            );
                        }
                    }
                    candidates.push(Candidate {
                        broker,
                        service,
                        plans: cand.plans.clone(),
                        weight: cand.weight.unwrap_or(0),
                    });
                }
                if candidates.is_empty() {
                    c.problem(
                        format!("{rule_key}.candidates"),
                        "a placement rule needs at least one candidate",
                    );
                }
                placement.push(PlacementRule {
                    name: rule_name,
                    when,
                    candidates,
                });
            }
            if placement.is_empty() {
                c.problem(
                    format!("{key}.placement"),
                    "an offering needs at least one placement rule",
                );
            }
            offerings.push(Offering {
                description: o.description.clone().unwrap_or_else(|| name.clone()),
                name,
                bindable: o.bindable.unwrap_or(true),
                tags: o.tags.clone(),
                metadata: o.metadata.clone(),
                plans,
                placement,
            });
        }

        let mut parameters = Vec::new();
        for (i, rule) in file.parameters.iter().enumerate() {
            let key = format!("parameters[{i}]");
            let name = c.rule_name(&key, rule.name.as_ref());
            let operations = match &rule.operations {
                Some(words) => c.operations(&key, words),
                None => vec![Operation::Provision, Operation::Update],
            };
            for (param, value) in &rule.defaults {
                if let Some(path) = template_path(value) {
                    if !is_fact_path(path) {
                        c.problem(
                            format!("{key}.defaults.{param}"),
                            format!("unknown fact {path:?}"),
                        );
                    }
                }
            }
            if rule.defaults.is_empty()
                && rule.force.is_empty()
                && rule.allowed.is_empty()
                && rule.forbid.is_empty()
            {
                c.problem(
                    key.clone(),
                    "a parameter rule needs defaults, force, allowed or forbid",
                );
            }
            parameters.push(ParameterRule {
                name,
                selector: selector(
                    rule.platforms.as_ref(),
                    rule.services.as_ref(),
                    rule.plans.as_ref(),
                    rule.brokers.as_ref(),
                    None,
                    None,
                ),
                operations,
                defaults: rule.defaults.clone(),
                force: rule.force.clone(),
                allowed: rule.allowed.clone(),
                forbid: rule.forbid.iter().map(|g| Glob::new(g)).collect(),
            });
        }

        let mut deny = Vec::new();
        for (i, rule) in file.deny.iter().enumerate() {
            let key = format!("deny[{i}]");
            let name = c.rule_name(&key, rule.name.as_ref());
            let operations = rule.operations.as_ref().map(|words| c.operations(&key, words));
            let when = c.conditions(&key, &rule.when);
            let reason = match rule.reason.clone().filter(|r| !r.is_empty()) {
                Some(reason) => reason,
                None => {
                    c.problem(
                        format!("{key}.reason"),
                        "a deny rule needs a reason (the platform is shown it)",
                    );
                    String::new()
                }
            };
            deny.push(DenyRule {
                name,
                selector: selector(
                    rule.platforms.as_ref(),
                    rule.services.as_ref(),
                    rule.plans.as_ref(),
                    rule.brokers.as_ref(),
                    None,
                    None,
                ),
                operations,
                when,
                reason,
            });
        }

        let mut limits = Limits::default();
        let rate = |c: &mut Compiler<'_>, key: &str, per_sec: Option<u32>, burst: Option<u32>| match (
            per_sec, burst,
        ) {
            (None, None) => None,
            (Some(0), _) | (_, Some(0)) => {
                c.problem(
                    key,
                    "rates and bursts must be at least 1 (leave them out for no limit)",
                );
                None
            }
            (Some(per_sec), burst) => Some(Rate {
                per_sec,
                burst: burst.unwrap_or(per_sec),
            }),
            (None, Some(_)) => {
                c.problem(key, "a burst needs a rate (per_sec)");
                None
            }
        };
        for (i, l) in file.limits.platforms.iter().enumerate() {
            let key = format!("limits.platforms[{i}]");
            let Some(name) = l.name.clone().filter(|n| !n.is_empty()) else {
                c.problem(format!("{key}.name"), "is required (a platform name or glob)");
                continue;
            };
            let catalog = rate(&mut c, &key, l.catalog_per_sec, l.catalog_burst);
            let calls = rate(&mut c, &key, l.calls_per_sec, l.calls_burst);
            limits
                .platforms
                .push((Glob::new(&name), PlatformLimit { catalog, calls }));
        }
        for (i, l) in file.limits.brokers.iter().enumerate() {
            let key = format!("limits.brokers[{i}]");
            let Some(name) = l.name.clone().filter(|n| !n.is_empty()) else {
                c.problem(format!("{key}.name"), "is required (a broker name or glob)");
                continue;
            };
            match rate(&mut c, &key, l.calls_per_sec, l.calls_burst) {
                Some(r) => limits.brokers.push((Glob::new(&name), r)),
                None => c.problem(key, "calls_per_sec is required"),
            }
        }

        let quotas = quota::compile(&mut c, &file.quotas);

        if c.problems.is_empty() {
            Ok(Policy {
                quotas,
                default_visible,
                visibility_index: RuleIndex::of(visibility.iter().map(|r| &r.selector)),
                deny_index: RuleIndex::of(deny.iter().map(|r| &r.selector)),
                visibility,
                offerings,
                parameters,
                deny,
                schema_validation: file.schema_validation.unwrap_or(true),
                limits,
            })
        } else {
            Err(PolicyError::Invalid(c.problems))
        }
    }

    /// The offering named `name`.
    pub fn offering(&self, name: &str) -> Option<&Offering> {
        self.offerings.iter().find(|o| o.name == name)
    }
}

/// `"{context.namespace}"` → `Some("context.namespace")`.
pub fn template_path(value: &Value) -> Option<&str> {
    value.as_str()?.strip_prefix('{')?.strip_suffix('}')
}
