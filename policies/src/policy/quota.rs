//! Quotas: limits on what a platform keeps (live instances or bindings), as the policy states them,
//! and which quotas a new instance or binding counts toward.
//!
//! The policy only names the counts: a [`QuotaHold`] is one quota's count for the call's values of
//! its `per` facts (its `key`), with the limit. The registry counts the records holding each key and
//! refuses, atomically with the write of the new record, one that would pass a limit.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Compiler, Conditions, Selector, selector};
use crate::decide::conditions_hold;
use crate::facts::{CallFacts, Operation, is_fact_path};
use crate::file::QuotaFile;
use crate::policy::Policy;

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Counted {
    Instances,
    Bindings,
}

impl Counted {
    /// `instances` or `bindings`.
    pub fn as_str(self) -> &'static str {
        match self {
            Counted::Instances => "instances",
            Counted::Bindings => "bindings",
        }
    }

    /// The call that creates one.
    fn created_by(self) -> Operation {
        match self {
            Counted::Instances => Operation::Provision,
            Counted::Bindings => Operation::Bind,
        }
    }
}

/// A quota rule.
#[derive(Debug, Clone)]
pub struct QuotaRule {
    pub name: String,
    pub selector: Selector,
    pub when: Conditions,
    /// Fact paths: one count per combination of their values.
    pub per: Vec<String>,
    pub counted: Counted,
    pub limit: u64,
    pub reason: String,
}

/// One count a new instance or binding would join: the quota, the call's values of its `per`
/// facts, and the store key of that count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaHold {
    pub quota: String,
    /// `per` fact → the call's value (`None`: the call has no such fact).
    pub bucket: Vec<(String, Option<String>)>,
    /// What the registry counts: the quota's name and the bucket, as one string.
    pub key: String,
    pub limit: u64,
    pub counted: Counted,
    #[serde(skip)]
    pub reason: String,
}

impl QuotaHold {
    /// The bucket as the platform and operators read it: `context.namespace=team-a, platform=k8s`.
    pub fn bucket_text(&self) -> String {
        self.bucket
            .iter()
            .map(|(fact, value)| format!("{fact}={}", value.as_deref().unwrap_or("(none)")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Keys longer than this keep a digest of their bucket instead (stores index keys).
const MAX_KEY: usize = 512;

/// The store key of `quota`'s count for `values`: the name, a unit separator, the values as JSON (so
/// no two buckets share a key whatever their values hold).
pub fn quota_key(quota: &str, values: &[Option<String>]) -> String {
    let bucket = serde_json::to_string(values).unwrap_or_default();
    let key = format!("{quota}\u{1f}{bucket}");
    if key.len() <= MAX_KEY {
        return key;
    }
    let digest = Sha256::digest(bucket.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{quota}\u{1f}#{hex}")
}

/// The values of the `per` facts a store key was made of (`None` for a key that keeps a digest).
pub fn bucket_of_key(key: &str) -> Option<Vec<Option<String>>> {
    let (_, bucket) = key.split_once('\u{1f}')?;
    serde_json::from_str(bucket).ok()
}

/// The quota a store key belongs to.
pub fn quota_of_key(key: &str) -> &str {
    key.split_once('\u{1f}').map_or(key, |(quota, _)| quota)
}

impl Policy {
    /// The counts a new instance (for a provision) or binding (for a bind) joins: every quota whose
    /// selector and conditions match the call, in file order.
    pub fn quotas_for(&self, call: &CallFacts<'_>) -> Vec<QuotaHold> {
        self.quotas
            .iter()
            .filter(|q| {
                q.counted.created_by() == call.operation
                    && q.selector.matches(call.platform, &call.plan)
                    && conditions_hold(&q.when, call)
            })
            .map(|q| {
                let values: Vec<Option<String>> = q.per.iter().map(|path| call.fact(path)).collect();
                QuotaHold {
                    quota: q.name.clone(),
                    key: quota_key(&q.name, &values),
                    bucket: q.per.iter().cloned().zip(values).collect(),
                    limit: q.limit,
                    counted: q.counted,
                    reason: q.reason.clone(),
                }
            })
            .collect()
    }

    /// The quota named `name`.
    pub fn quota(&self, name: &str) -> Option<&QuotaRule> {
        self.quotas.iter().find(|q| q.name == name)
    }
}

/// Compiles `quotas:`.
pub(super) fn compile(c: &mut Compiler<'_>, quotas: &[QuotaFile]) -> Vec<QuotaRule> {
    let mut rules = Vec::new();
    for (i, q) in quotas.iter().enumerate() {
        let key = format!("quotas[{i}]");
        let name = c.rule_name(&key, q.name.as_ref());
        if name.contains('\u{1f}') {
            c.problem(format!("{key}.name"), "must not contain control characters");
        }
        let when = c.conditions(&key, &q.when);
        for path in &q.per {
            // Parameters may be secrets: a count's values are shown to operators and platforms.
            let countable = is_fact_path(path)
                && !matches!(path.as_str(), "operation" | "instance_id")
                && !path.starts_with("parameters.");
            if !countable {
                c.problem(
                    format!("{key}.per"),
                    format!(
                        "{path:?} cannot be counted by: use platform, service, plan, broker or context.… (parameters may be secret)"
                    ),
                );
            }
        }
        let counted = match q.resource.as_deref() {
            None | Some("instances") => Counted::Instances,
            Some("bindings") => Counted::Bindings,
            Some(other) => {
                c.problem(
                    format!("{key}.resource"),
                    format!("expected instances or bindings, got {other:?}"),
                );
                Counted::Instances
            }
        };
        let limit = q.limit.unwrap_or_else(|| {
            c.problem(format!("{key}.limit"), "is required (0 refuses every new one)");
            0
        });
        let reason = q.reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| {
            c.problem(
                format!("{key}.reason"),
                "a quota needs a reason (the platform is shown it)",
            );
            String::new()
        });
        rules.push(QuotaRule {
            name,
            selector: selector(
                q.platforms.as_ref(),
                q.services.as_ref(),
                q.plans.as_ref(),
                q.brokers.as_ref(),
                q.tags.as_ref(),
                q.free,
            ),
            when,
            per: q.per.clone(),
            counted,
            limit,
            reason,
        });
    }
    rules
}
