//! OSB catalog wire types: `{"services": [...]}` as a broker serves it.
//!
//! Only what the gateway reads or rewrites is typed (`id`, `name`, `description`, `plans`); every
//! other field, known to OSB or vendor-specific, is carried through unchanged in `extra`
//! (`#[serde(flatten)]`, with `serde_json`'s `preserve_order`). Values that are `null` stay `null`
//! (GCP's `"parameters": null` schemas survive), strings where the spec wants numbers stay strings
//! (AWS's defaults), and schemas are never re-shaped.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A catalog: the body of `GET /v2/catalog`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Catalog {
    pub services: Vec<Service>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A service offering.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Service {
    pub name: String,
    pub id: String,
    pub description: String,
    pub plans: Vec<Plan>,
    /// Every other field (`bindable`, `tags`, `metadata`, `instances_retrievable`, vendor keys…).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A plan of a service offering.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub name: String,
    pub id: String,
    pub description: String,
    /// Every other field (`free`, `bindable`, `schemas`, `maintenance_info`, vendor keys…).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Service {
    /// The offering's `bindable` (OSB requires it; a broker that omits it is taken as not bindable).
    pub fn bindable(&self) -> bool {
        self.flag("bindable").unwrap_or(false)
    }

    /// A boolean field of the offering, if present and boolean.
    pub fn flag(&self, key: &str) -> Option<bool> {
        self.extra.get(key).and_then(Value::as_bool)
    }
}

impl Service {
    /// The offering's `tags` (strings only).
    pub fn tags(&self) -> Vec<String> {
        self.extra
            .get("tags")
            .and_then(Value::as_array)
            .map(|tags| tags.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

impl Plan {
    /// The plan's `free` (OSB: true when absent).
    pub fn free(&self) -> bool {
        self.flag("free").unwrap_or(true)
    }

    /// A boolean field of the plan, if present and boolean (plan values override the offering's).
    pub fn flag(&self, key: &str) -> Option<bool> {
        self.extra.get(key).and_then(Value::as_bool)
    }
}
