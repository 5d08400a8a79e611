//! Facts: what the gateway knows about a plan or a call, handed to the policy.
//!
//! The gateway fills these from the catalog, the authenticated platform and the request; the
//! policy never sees HTTP. Rules refer to facts by path: `platform`, `operation`, `instance_id`,
//! `service`, `plan`, `broker`, `context.<key>…`, `parameters.<key>…`.

use serde_json::{Map, Value};

/// The OSB call a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Provision,
    Update,
    Deprovision,
    Bind,
    Unbind,
}

impl Operation {
    /// The OSB word.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Provision => "provision",
            Operation::Update => "update",
            Operation::Deprovision => "deprovision",
            Operation::Bind => "bind",
            Operation::Unbind => "unbind",
        }
    }

    /// Parses the OSB word.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "provision" => Operation::Provision,
            "update" => Operation::Update,
            "deprovision" => Operation::Deprovision,
            "bind" => Operation::Bind,
            "unbind" => Operation::Unbind,
            _ => return None,
        })
    }
}

/// A plan as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct PlanFacts<'a> {
    /// The broker owning it; `gateway` for a logical offering.
    pub broker: &'a str,
    /// The published service name (`azure.azure-mysql-5-7`, `mysql`).
    pub service: &'a str,
    pub plan: &'a str,
    /// The service's tags.
    pub tags: &'a [String],
    /// The plan's `free` (OSB: true when absent).
    pub free: bool,
}

/// A platform's call as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    pub platform: &'a str,
    pub operation: Operation,
    pub instance_id: &'a str,
    /// The plan the call is about (for a logical offering: the logical plan).
    pub plan: PlanFacts<'a>,
    /// The request's `context` object, if any.
    pub context: Option<&'a Value>,
    /// The request's `parameters`, if any.
    pub parameters: Option<&'a Map<String, Value>>,
}

impl CallFacts<'_> {
    /// The value of a fact path as text (numbers and booleans as JSON), or `None` when absent.
    pub fn fact(&self, path: &str) -> Option<String> {
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
            _ => None,
        };
        match path {
            "platform" => Some(self.platform.to_owned()),
            "operation" => Some(self.operation.as_str().to_owned()),
            "instance_id" => Some(self.instance_id.to_owned()),
            "service" => Some(self.plan.service.to_owned()),
            "plan" => Some(self.plan.plan.to_owned()),
            "broker" => Some(self.plan.broker.to_owned()),
            _ => {
                if let Some(rest) = path.strip_prefix("context.") {
                    lookup(self.context?, rest).and_then(scalar)
                } else if let Some(rest) = path.strip_prefix("parameters.") {
                    let (first, more) = rest.split_once('.').map_or((rest, None), |(f, m)| (f, Some(m)));
                    let value = self.parameters?.get(first)?;
                    match more {
                        Some(more) => lookup(value, more).and_then(scalar),
                        None => scalar(value),
                    }
                } else {
                    None
                }
            }
        }
    }
}

/// `a.b.c` inside a JSON value. A key that itself contains dots (Kubernetes annotations such as
/// `example.com/team`) is found too: the longest key that matches a prefix of the path wins.
fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return Some(value);
    }
    let object = value.as_object()?;
    if let Some(v) = object.get(path) {
        return Some(v);
    }
    let mut split = path.len();
    while let Some(dot) = path.get(..split).and_then(|p| p.rfind('.')) {
        let (key, rest) = (path.get(..dot)?, path.get(dot + 1..)?);
        if let Some(v) = object.get(key) {
            if let Some(found) = lookup(v, rest) {
                return Some(found);
            }
        }
        split = dot;
    }
    None
}

/// Fact paths are `platform`, `operation`, `instance_id`, `service`, `plan`, `broker`,
/// `context.…` or `parameters.…`.
pub fn is_fact_path(path: &str) -> bool {
    matches!(
        path,
        "platform" | "operation" | "instance_id" | "service" | "plan" | "broker"
    ) || path.strip_prefix("context.").is_some_and(|r| !r.is_empty())
        || path.strip_prefix("parameters.").is_some_and(|r| !r.is_empty())
}
