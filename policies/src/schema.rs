//! Parameters checked against an upstream plan's JSON schema before anything is forwarded.
//!
//! Plans carry schemas under `schemas.service_instance.create|update.parameters` and
//! `schemas.service_binding.create.parameters` (OSB says draft-04; AWS's use draft-06 keys, which
//! the `$schema` they declare selects). A schema that is `null` or absent checks nothing (GCP's
//! update schemas are `{"parameters": null}`). Error messages mask the offending values: they may
//! be secrets, and they end up in logs.

use jsonschema::{Draft, Validator};
use serde_json::Value;

use crate::facts::Operation;

/// A compiled parameters schema.
#[derive(Debug)]
pub struct Schema {
    validator: Validator,
}

/// The parameters schema of `plan` (a catalog plan object) for `operation`, if it has one.
pub fn plan_schema(plan: &Value, operation: Operation) -> Option<&Value> {
    parameters_schema(plan.get("schemas")?, operation)
}

/// The parameters schema for `operation` in a plan's `schemas` object, if it has one.
pub fn parameters_schema(schemas: &Value, operation: Operation) -> Option<&Value> {
    let schema = match operation {
        Operation::Provision => schemas.get("service_instance")?.get("create")?,
        Operation::Update => schemas.get("service_instance")?.get("update")?,
        Operation::Bind => schemas.get("service_binding")?.get("create")?,
        Operation::Deprovision | Operation::Unbind => return None,
    };
    schema.get("parameters").filter(|p| p.is_object())
}

impl Schema {
    /// Compiles `schema` (draft from its `$schema`, else draft-04 as OSB specifies). Remote `$ref`s
    /// are not fetched.
    ///
    /// # Errors
    /// The schema itself is invalid: the message says why.
    pub fn compile(schema: &Value) -> Result<Schema, String> {
        let declared = schema.get("$schema").and_then(Value::as_str).unwrap_or_default();
        let draft = if declared.contains("draft-06") {
            Draft::Draft6
        } else if declared.contains("draft-07") {
            Draft::Draft7
        } else {
            Draft::Draft4
        };
        let validator = jsonschema::options()
            .with_draft(draft)
            .build(schema)
            .map_err(|e| format!("invalid schema: {}", e.masked()))?;
        Ok(Schema { validator })
    }

    /// Checks `parameters` (`None`: an empty object).
    ///
    /// # Errors
    /// One message per violation, `at /path: what` with values masked.
    pub fn check(&self, parameters: Option<&Value>) -> Result<(), Vec<String>> {
        let empty = Value::Object(serde_json::Map::new());
        let instance = parameters.unwrap_or(&empty);
        let errors: Vec<String> = self
            .validator
            .iter_errors(instance)
            .map(|e| {
                let path = e.instance_path().to_string();
                let at = if path.is_empty() { "/".to_owned() } else { path };
                format!("at {at}: {}", e.masked())
            })
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}
