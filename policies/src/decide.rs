//! Decisions: visibility of a plan, deny rules, placement of a logical offering, parameter rules.
//!
//! Every decision carries an [`Explanation`]: the rules that made it, in order, so operators can ask
//! why (`osb-gateway explain`). Explanations name parameters but never print their values (they
//! may be secrets).

use serde_json::{Map, Value};

use crate::facts::{CallFacts, Operation, PlanFacts};
use crate::glob::any_matches;
use crate::policy::{Candidate, Conditions, Offering, Policy, Selector, template_path};

/// The rules behind a decision, in the order they applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explanation(pub Vec<String>);

impl Explanation {
    fn push(&mut self, line: impl Into<String>) {
        self.0.push(line.into());
    }
}

/// Why a call is refused, before anything is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule that decided (or a fixed word for built-in refusals).
    pub rule: String,
    pub reason: String,
    pub kind: DenialKind,
    pub explanation: Explanation,
}

/// How a denial maps to HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialKind {
    /// A rule forbids it (403 `PolicyDenied`).
    Forbidden,
    /// The request is wrong for the policy: a value outside `allowed`, a schema violation (400).
    Invalid,
    /// No healthy candidate to place on (503).
    Unavailable,
}

/// Whether a plan is visible to a platform, and which rule said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    pub visible: bool,
    /// `None`: the default decided.
    pub rule: Option<String>,
}

/// Where a logical offering's instance lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub broker: String,
    /// Upstream service name.
    pub service: String,
    /// Upstream plan name.
    pub plan: String,
    /// The placement rule that matched.
    pub rule: String,
    /// The rule's other healthy candidates for the plan, in the order a provision fails over to
    /// them when the chosen broker cannot have received it: weighted ones by their stable order for
    /// the instance, then the failover (weight 0) ones in file order.
    pub alternatives: Vec<Alternative>,
    pub explanation: Explanation,
}

/// A candidate a provision can fail over to: broker, upstream service and plan names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    pub broker: String,
    pub service: String,
    pub plan: String,
}

/// Parameters after the parameter rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameters {
    /// `None` when the platform sent none and no rule added any.
    pub parameters: Option<Map<String, Value>>,
    /// The names the rules set (defaults) or forced, in the order they did.
    pub changed: Vec<String>,
    pub explanation: Explanation,
}

impl Selector {
    /// Whether this selector matches `platform` and `plan`.
    pub fn matches(&self, platform: &str, plan: &PlanFacts<'_>) -> bool {
        any_matches(self.platforms.as_deref(), platform)
            && any_matches(self.services.as_deref(), plan.service)
            && any_matches(self.plans.as_deref(), plan.plan)
            && any_matches(self.brokers.as_deref(), plan.broker)
            && self
                .tags
                .as_ref()
                .is_none_or(|tags| tags.iter().any(|t| plan.tags.contains(t)))
            && self.free.is_none_or(|free| free == plan.free)
    }
}

/// All conditions hold for the call's facts (a missing fact fails its condition).
pub(crate) fn conditions_hold(conditions: &Conditions, call: &CallFacts<'_>) -> bool {
    conditions.iter().all(|(path, globs)| {
        call.fact(path)
            .is_some_and(|value| globs.iter().any(|g| g.matches(&value)))
    })
}

impl Policy {
    /// Whether `platform` sees `plan`: the first visibility rule that matches decides, else the
    /// default.
    pub fn visibility(&self, platform: &str, plan: &PlanFacts<'_>) -> Visibility {
        self.visibility_index
            .candidates(platform, self.visibility.len())
            .filter_map(|i| self.visibility.get(i))
            .find(|rule| rule.selector.matches(platform, plan))
            .map_or(
                Visibility {
                    visible: self.default_visible,
                    rule: None,
                },
                |rule| Visibility {
                    visible: rule.show,
                    rule: Some(rule.name.clone()),
                },
            )
    }

    /// The first deny rule matching the call, if any.
    pub fn denial(&self, call: &CallFacts<'_>) -> Option<Denial> {
        let rule = self
            .deny_index
            .candidates(call.platform, self.deny.len())
            .filter_map(|i| self.deny.get(i))
            .find(|rule| {
                rule.operations
                    .as_ref()
                    .is_none_or(|ops| ops.contains(&call.operation))
                    && rule.selector.matches(call.platform, &call.plan)
                    && conditions_hold(&rule.when, call)
            })?;
        Some(Denial {
            rule: rule.name.clone(),
            reason: rule.reason.clone(),
            kind: DenialKind::Forbidden,
            explanation: Explanation(vec![format!("deny rule {:?} matched", rule.name)]),
        })
    }

    /// Visibility, then deny rules: whether the call may go ahead at all.
    ///
    /// # Errors
    /// The [`Denial`].
    pub fn admit(&self, call: &CallFacts<'_>) -> Result<Explanation, Denial> {
        let mut explanation = Explanation::default();
        let visibility = self.visibility(call.platform, &call.plan);
        let by = visibility
            .rule
            .as_deref()
            .map_or_else(|| "the default".to_owned(), |r| format!("rule {r:?}"));
        if !visibility.visible {
            explanation.push(format!(
                "plan {}/{} is hidden from {} by {by}",
                call.plan.service, call.plan.plan, call.platform
            ));
            return Err(Denial {
                rule: visibility.rule.unwrap_or_else(|| "visibility.default".to_owned()),
                reason: format!(
                    "plan {} of {} is not available to this platform",
                    call.plan.plan, call.plan.service
                ),
                kind: DenialKind::Forbidden,
                explanation,
            });
        }
        explanation.push(format!(
            "plan {}/{} is visible to {} by {by}",
            call.plan.service, call.plan.plan, call.platform
        ));
        if let Some(mut denial) = self.denial(call) {
            explanation.0.append(&mut denial.explanation.0);
            denial.explanation = explanation;
            return Err(denial);
        }
        explanation.push("no deny rule matched");
        Ok(explanation)
    }

    /// Places a provision of `offering`'s plan `plan`: the first placement rule whose conditions
    /// hold; among its candidates that map the plan and whose broker `is_healthy`, a weighted choice
    /// stable per instance id, else the first healthy unweighted (failover) candidate.
    ///
    /// # Errors
    /// A [`Denial`]: no rule matches ([`DenialKind::Forbidden`]), or no candidate is healthy
    /// ([`DenialKind::Unavailable`]).
    pub fn place(
        &self,
        offering: &Offering,
        plan: &str,
        call: &CallFacts<'_>,
        is_healthy: &dyn Fn(&str) -> bool,
    ) -> Result<Placement, Denial> {
        let mut explanation = Explanation::default();
        let Some(rule) = offering.placement.iter().find(|rule| {
            let holds = conditions_hold(&rule.when, call);
            explanation.push(format!(
                "placement rule {:?} {}",
                rule.name,
                if holds { "matches" } else { "does not match" }
            ));
            holds
        }) else {
            return Err(Denial {
                rule: format!("offerings.{}.placement", offering.name),
                reason: format!("no placement rule of {} applies to this request", offering.name),
                kind: DenialKind::Forbidden,
                explanation,
            });
        };
        let usable: Vec<&Candidate> = rule
            .candidates
            .iter()
            .filter(|c| c.plans.contains_key(plan))
            .collect();
        let healthy: Vec<&Candidate> = usable
            .iter()
            .copied()
            .filter(|c| {
                let ok = is_healthy(&c.broker);
                if !ok {
                    explanation.push(format!("candidate {} skipped: unhealthy", c.broker));
                }
                ok
            })
            .collect();
        let mut weighted: Vec<&Candidate> = healthy.iter().copied().filter(|c| c.weight > 0).collect();
        let total: u32 = weighted.iter().map(|c| c.weight).sum();
        rendezvous_order(&mut weighted, call.instance_id);
        // The order to try: weighted by their stable order, then failovers in file order.
        let order: Vec<&Candidate> = weighted
            .iter()
            .copied()
            .chain(healthy.iter().copied().filter(|c| c.weight == 0))
            .collect();
        let chosen = order.first().copied();
        if let Some(c) = chosen {
            explanation.push(if c.weight > 0 {
                format!(
                    "candidate {} chosen: weight {} of {total}, stable for instance {}",
                    c.broker, c.weight, call.instance_id
                )
            } else {
                format!("candidate {} chosen: first healthy in order", c.broker)
            });
        }
        let alternatives: Vec<Alternative> = order
            .iter()
            .skip(1)
            .map(|c| Alternative {
                broker: c.broker.clone(),
                service: c.service.clone(),
                plan: c.plans.get(plan).cloned().unwrap_or_default(),
            })
            .collect();
        if !alternatives.is_empty() {
            let names: Vec<&str> = alternatives.iter().map(|a| a.broker.as_str()).collect();
            explanation.push(format!(
                "if {} cannot be reached, fails over to {} in this order",
                chosen.map_or("", |c| c.broker.as_str()),
                names.join(", ")
            ));
        }
        let Some(candidate) = chosen else {
            return Err(Denial {
                rule: rule.name.clone(),
                reason: format!("no healthy broker can place {}/{plan} right now", offering.name),
                kind: DenialKind::Unavailable,
                explanation,
            });
        };
        Ok(Placement {
            broker: candidate.broker.clone(),
            service: candidate.service.clone(),
            plan: candidate.plans.get(plan).cloned().unwrap_or_default(),
            rule: rule.name.clone(),
            alternatives,
            explanation,
        })
    }

    /// The upstream plan for a plan change of a logical instance living on `broker`/`service`:
    /// the plan map of a candidate of the same broker and service.
    pub fn remap_plan(&self, offering: &Offering, broker: &str, service: &str, plan: &str) -> Option<String> {
        offering
            .placement
            .iter()
            .flat_map(|rule| rule.candidates.iter())
            .find(|c| c.broker == broker && c.service == service && c.plans.contains_key(plan))
            .and_then(|c| c.plans.get(plan).cloned())
    }

    /// Applies the parameter rules that match the call, in order: defaults (when absent), forced
    /// values, then allowed values and forbidden names.
    ///
    /// # Errors
    /// A [`Denial`] naming the rule: a forbidden parameter ([`DenialKind::Forbidden`]) or a value
    /// outside `allowed` ([`DenialKind::Invalid`]).
    pub fn parameters(&self, call: &CallFacts<'_>) -> Result<Parameters, Denial> {
        let mut explanation = Explanation::default();
        let mut parameters = call.parameters.cloned();
        let mut changed: Vec<String> = Vec::new();
        for rule in self.parameters.iter().filter(|r| {
            r.operations.contains(&call.operation) && r.selector.matches(call.platform, &call.plan)
        }) {
            for (name, value) in &rule.defaults {
                if parameters.as_ref().is_some_and(|p| p.contains_key(name)) {
                    continue;
                }
                let value = match template_path(value) {
                    Some(path) => match call.fact(path) {
                        Some(fact) => Value::String(fact),
                        None => {
                            explanation.push(format!(
                                "rule {:?}: default {name} skipped ({path} is absent)",
                                rule.name
                            ));
                            continue;
                        }
                    },
                    None => value.clone(),
                };
                parameters
                    .get_or_insert_with(Map::new)
                    .insert(name.clone(), value);
                explanation.push(format!("rule {:?}: default {name} set", rule.name));
                changed.push(name.clone());
            }
            for (name, value) in &rule.force {
                parameters
                    .get_or_insert_with(Map::new)
                    .insert(name.clone(), value.clone());
                explanation.push(format!("rule {:?}: {name} forced", rule.name));
                changed.push(name.clone());
            }
            for (name, allowed) in &rule.allowed {
                let Some(value) = parameters.as_ref().and_then(|p| p.get(name)) else {
                    continue;
                };
                let ok = allowed.iter().any(|a| match (a, value) {
                    (Value::String(pattern), Value::String(v)) => crate::glob::Glob::new(pattern).matches(v),
                    (a, v) => a == v,
                });
                if !ok {
                    explanation.push(format!("rule {:?}: {name} is not an allowed value", rule.name));
                    return Err(Denial {
                        rule: rule.name.clone(),
                        reason: format!(
                            "parameter {name} must be one of the values rule {} allows",
                            rule.name
                        ),
                        kind: DenialKind::Invalid,
                        explanation,
                    });
                }
            }
            if let Some(name) = parameters.as_ref().and_then(|p| {
                p.keys()
                    .find(|k| rule.forbid.iter().any(|g| g.matches(k)))
                    .cloned()
            }) {
                explanation.push(format!("rule {:?}: {name} is forbidden", rule.name));
                return Err(Denial {
                    rule: rule.name.clone(),
                    reason: format!("parameter {name} is not allowed (rule {})", rule.name),
                    kind: DenialKind::Forbidden,
                    explanation,
                });
            }
        }
        Ok(Parameters {
            parameters,
            changed,
            explanation,
        })
    }
}

/// Weighted rendezvous hashing: each candidate scores `-ln(u) / weight` with `u` a hash of
/// (instance id, broker) in (0, 1]; sorts the lowest score first. The same instance id always picks
/// the same first candidate while the set is unchanged, and losing a candidate only moves its own
/// instances (to the next in their order).
fn rendezvous_order(candidates: &mut [&Candidate], instance_id: &str) {
    let score = |c: &Candidate| {
        let hash = fnv1a(instance_id.as_bytes(), c.broker.as_bytes());
        // 53 bits of the hash as a uniform number in (0, 1].
        let u = ((hash >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
        -(u.ln()) / f64::from(c.weight)
    };
    candidates.sort_by(|a, b| score(a).total_cmp(&score(b)));
}

/// FNV-1a over two byte strings (stable across builds and machines, unlike `DefaultHasher`).
fn fnv1a(a: &[u8], b: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.iter().chain([0u8].iter()).chain(b.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Finalise (splitmix64) so similar ids spread over the whole range.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// `true` when a call of `operation` carries parameters the rules look at.
pub fn has_parameters(operation: Operation) -> bool {
    matches!(
        operation,
        Operation::Provision | Operation::Update | Operation::Bind
    )
}
