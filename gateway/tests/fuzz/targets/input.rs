//! Turning fuzzer bytes into inputs: a byte reader, structure-aware JSON mutation, the seeds.
//!
//! Every target reads its bytes through [`Input`]. The first byte picks *raw* mode (the rest of
//! the bytes are the document, for libFuzzer to mutate freely) or *structured* mode: a real seed
//! (a fixture catalog, an example config or policy) is parsed, mutated node by node under the
//! control of the remaining bytes, and serialized again. Structured mode is what reaches the
//! gateway's own validation (duplicate ids, wrong types, missing fields, names too long) instead
//! of stopping in the JSON or YAML parser; raw mode keeps the parsers honest.
//!
//! Reading past the end yields zeros, so every byte string is a valid input and a crash file
//! replays exactly. Nothing here panics on any input.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// A cursor over the fuzzer's bytes.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((first, rest)) => {
                self.data = rest;
                *first
            }
            None => 0,
        }
    }

    /// A number in `0..n` (0 when `n` is 0 or 1).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let wide = usize::from(self.byte()) << 8 | usize::from(self.byte());
        wide % n
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items` (the first when empty input).
    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> Option<&'t T> {
        let i = self.below(items.len());
        items.get(i)
    }

    /// Up to `max` raw bytes.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let len = self.below(max.saturating_add(1)).min(self.data.len());
        let (taken, rest) = self.data.split_at(len);
        self.data = rest;
        taken
    }

    /// A short string: from the dictionary, or raw bytes made text.
    pub fn text(&mut self) -> String {
        if self.one_in(3) {
            String::from_utf8_lossy(self.bytes(24)).into_owned()
        } else {
            self.pick(STRINGS).map_or_else(String::new, |s| (*s).to_owned())
        }
    }

    /// Whether the bytes are used raw (one input in four) rather than to mutate a seed.
    pub fn raw_mode(&mut self) -> bool {
        self.byte().is_multiple_of(4)
    }
}

// === dictionaries ===

/// Strings that matter somewhere: OSB words, id shapes, globs, templates, limits.
pub const STRINGS: &[&str] = &[
    "",
    " ",
    "a",
    "kubernetes",
    "cloudfoundry",
    "k8s-prod",
    "k8s-dev",
    "azure",
    "aws",
    "gcp",
    "gateway",
    "mysql",
    "small",
    "basic",
    "2.17",
    "2.x",
    "3.0",
    "*",
    "**",
    "?",
    "eu-*",
    "[",
    "{context.namespace}",
    "{context.namespace_annotations.example.com/cost-center}",
    "{parameters.region}",
    "{",
    "}",
    "context.namespace",
    "parameters.region",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "336323c1-0f35-5c41-a8e6-2e2ebf90e4b7",
    "%",
    "%zz",
    "%C3%A4",
    "%00",
    "a/b",
    "a.b",
    "a b",
    "ä",
    "\u{0}",
    "\u{feff}",
    "\u{10ffff}",
    "\r\n",
    "http://127.0.0.1:1",
    "https://[::1]:65535/x",
    "broker:8080",
    "keep",
    "rewrite",
    "show",
    "hide",
    "visible",
    "hidden",
    "embedded",
    "postgres",
    "provision",
    "bind",
    "true",
    "-1",
    "0",
    "18446744073709551616",
    "1e400",
];

/// Keys worth inserting: OSB catalog and body fields, config and policy keys.
pub const KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "plans",
    "services",
    "bindable",
    "plan_updateable",
    "instances_retrievable",
    "bindings_retrievable",
    "free",
    "tags",
    "metadata",
    "schemas",
    "service_instance",
    "service_binding",
    "create",
    "update",
    "parameters",
    "$schema",
    "type",
    "properties",
    "required",
    "maintenance_info",
    "version",
    "service_id",
    "plan_id",
    "context",
    "platform",
    "namespace",
    "previous_values",
    "bind_resource",
    "organization_guid",
    "space_guid",
    "app_guid",
    "listen",
    "admin",
    "store",
    "kind",
    "path",
    "url",
    "platforms",
    "brokers",
    "username",
    "password",
    "password_env",
    "bearer_token",
    "ids",
    "rename",
    "api_version",
    "timeout_secs",
    "refresh_interval_secs",
    "catalog",
    "name_separator",
    "startup_grace_secs",
    "max_body_bytes",
    "visibility",
    "default",
    "rules",
    "effect",
    "services",
    "offerings",
    "placement",
    "when",
    "candidates",
    "broker",
    "service",
    "weight",
    "defaults",
    "force",
    "allowed",
    "forbid",
    "deny",
    "operations",
    "reason",
    "limits",
    "calls_per_sec",
    "calls_burst",
    "catalog_per_sec",
    "schema_validation",
];

/// A scalar (or tiny container) value.
pub fn scalar(input: &mut Input<'_>) -> Value {
    match input.below(12) {
        0 => Value::Null,
        1 => Value::Bool(input.one_in(2)),
        2 => Value::from(0),
        3 => Value::from(-1),
        4 => Value::from(u64::MAX),
        5 => Value::from(i64::MIN),
        6 => serde_json::Number::from_f64(1e300).map_or(Value::Null, Value::Number),
        7 => Value::String("x".repeat(input.below(600))),
        8 => Value::Array(Vec::new()),
        9 => Value::Object(Map::new()),
        10 => Value::from(u64::from(input.byte())),
        _ => Value::String(input.text()),
    }
}

// === structure-aware JSON mutation ===

/// Applies up to `max_rounds` mutations to `value`, each at a node picked by pre-order index.
pub fn mutate(value: &mut Value, input: &mut Input<'_>, max_rounds: usize) {
    let rounds = input.below(max_rounds) + 1;
    for _ in 0..rounds {
        let count = count_nodes(value);
        let target = input.below(count);
        let op = input.byte();
        // A donor subtree for copy operations (makes duplicate ids, names, plans).
        let donor_index = input.below(count);
        let donor = node(value, donor_index).cloned();
        if let Some(node) = node_mut(value, target) {
            apply(node, op, donor, input);
        }
    }
}

fn apply(node: &mut Value, op: u8, donor: Option<Value>, input: &mut Input<'_>) {
    match op % 10 {
        // Replace with a scalar.
        0 | 1 => *node = scalar(input),
        // Remove a member or an element.
        2 | 3 => match node {
            Value::Object(map) if !map.is_empty() => {
                let i = input.below(map.len());
                let key = map.keys().nth(i).cloned();
                if let Some(key) = key {
                    map.remove(&key);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let i = input.below(items.len());
                items.remove(i);
            }
            _ => *node = Value::Null,
        },
        // Insert a member or an element.
        4 => match node {
            Value::Object(map) => {
                let key = input.pick(KEYS).map_or("x", |k| *k).to_owned();
                let value = match donor {
                    Some(d) if input.one_in(2) => d,
                    _ => scalar(input),
                };
                map.insert(key, value);
            }
            Value::Array(items) => {
                let value = match donor {
                    Some(d) if input.one_in(2) => d,
                    _ => scalar(input),
                };
                let at = input.below(items.len() + 1);
                items.insert(at.min(items.len()), value);
            }
            _ => *node = scalar(input),
        },
        // Duplicate an element (same id, same name: collisions).
        5 => {
            if let Value::Array(items) = node {
                let i = input.below(items.len());
                if let Some(copy) = items.get(i).cloned() {
                    items.push(copy);
                }
            } else if let Some(d) = donor {
                *node = d;
            }
        }
        // Replace with a copy of another node.
        6 => {
            if let Some(d) = donor {
                *node = d;
            }
        }
        // Wrap in an array or an object.
        7 => {
            let inner = std::mem::take(node);
            *node = if input.one_in(2) {
                Value::Array(vec![inner])
            } else {
                let key = input.pick(KEYS).map_or("x", |k| *k).to_owned();
                Value::Object(Map::from_iter([(key, inner)]))
            };
        }
        // Edit a string.
        8 => {
            if let Value::String(s) = node {
                edit_string(s, input);
            } else {
                *node = Value::String(input.text());
            }
        }
        // Turn the value into its text (or a number into a string, AWS-style).
        _ => {
            let text = match &*node {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            *node = Value::String(text);
        }
    }
}

fn edit_string(s: &mut String, input: &mut Input<'_>) {
    match input.below(6) {
        0 => s.clear(),
        1 => s.push_str(&input.text()),
        2 => {
            let extra = input.text();
            s.insert_str(0, &extra);
        }
        3 => *s = s.repeat(input.below(8) + 2),
        4 => *s = s.to_uppercase(),
        _ => {
            let keep = input.below(s.chars().count() + 1);
            *s = s.chars().take(keep).collect();
        }
    }
}

/// Number of nodes (every value, containers included).
pub fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

fn node(value: &Value, index: usize) -> Option<&Value> {
    fn walk<'v>(value: &'v Value, index: &mut usize) -> Option<&'v Value> {
        if *index == 0 {
            return Some(value);
        }
        *index -= 1;
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => return None,
        };
        for child in children {
            if let Some(found) = walk(child, index) {
                return Some(found);
            }
        }
        None
    }
    let mut index = index;
    walk(value, &mut index)
}

fn node_mut(value: &mut Value, index: usize) -> Option<&mut Value> {
    fn walk<'v>(value: &'v mut Value, index: &mut usize) -> Option<&'v mut Value> {
        if *index == 0 {
            return Some(value);
        }
        *index -= 1;
        let children: Box<dyn Iterator<Item = &mut Value>> = match value {
            Value::Array(items) => Box::new(items.iter_mut()),
            Value::Object(map) => Box::new(map.values_mut()),
            _ => return None,
        };
        for child in children {
            if let Some(found) = walk(child, index) {
                return Some(found);
            }
        }
        None
    }
    let mut index = index;
    walk(value, &mut index)
}

// === seeds ===

/// The real catalogs of `fixtures/catalogs`, parsed once.
pub fn catalog_seeds() -> &'static [Value] {
    static SEEDS: OnceLock<Vec<Value>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        [
            &include_bytes!("../../../../fixtures/catalogs/osbapi-spec-example-catalog.json")[..],
            include_bytes!("../../../../fixtures/catalogs/aws-servicebroker-catalog.json"),
            include_bytes!("../../../../fixtures/catalogs/gcp-service-broker-catalog.json"),
            include_bytes!("../../../../fixtures/catalogs/azure-osba-catalog.json"),
        ]
        .iter()
        .filter_map(|bytes| serde_json::from_slice(bytes).ok())
        .collect()
    })
}

/// A seed catalog cut to a window of at most `max_services` services (keeps iterations fast:
/// OSBA's catalog alone is a megabyte), then mutated.
pub fn mutated_catalog(input: &mut Input<'_>, max_services: usize) -> Value {
    let seeds = catalog_seeds();
    let Some(Value::Object(seed)) = input.pick(seeds) else {
        return Value::Null;
    };
    // Copy the window only: cloning a whole megabyte catalog per input would dominate the run.
    let mut catalog = Map::new();
    for (key, value) in seed {
        let value = match value {
            Value::Array(services) if key == "services" => {
                let start = input.below(services.len());
                let len = input.below(max_services) + 1;
                Value::Array(services.iter().skip(start).take(len).cloned().collect())
            }
            other => other.clone(),
        };
        catalog.insert(key.clone(), value);
    }
    let mut catalog = Value::Object(catalog);
    mutate(&mut catalog, input, 6);
    catalog
}

/// A YAML document parsed into JSON (through the `config` crate, as the gateway reads it).
pub fn yaml_seed(text: &str) -> Value {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Yaml))
        .build()
        .ok()
        .and_then(|c| c.try_deserialize::<Value>().ok())
        .unwrap_or(Value::Null)
}

/// Settings from YAML through the real loader (the harness's own config: a failure is a bug here).
pub fn settings(yaml: &str) -> osb_config::Settings {
    match osb_config::load_str(
        yaml,
        osb_config::FileFormat::Yaml,
        "fuzz.yaml",
        std::path::Path::new("/"),
        &Default::default(),
    ) {
        Ok(loaded) => loaded.settings,
        Err(e) => panic!("the fuzz harness's settings do not load:\n{e}"),
    }
}
