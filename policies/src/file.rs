//! The policy file as written (YAML or TOML): the reference for every key of the policy language.
//!
//! ```yaml
//! visibility:                 # who sees which plans; first matching rule wins
//!   default: visible          # or hidden
//!   rules:
//!     - name: dev-sees-free-plans-only
//!       platforms: [k8s-dev]
//!       free: false           # matches paid plans
//!       effect: hide
//! offerings:                  # services the gateway itself presents
//!   - name: mysql
//!     description: MySQL on the right cloud
//!     plans: [{name: small, description: 2 vCPU}, {name: large, description: 8 vCPU}]
//!     placement:              # first matching rule wins
//!       - name: eu
//!         when: {parameters.region: ["eu-*"]}
//!         candidates:
//!           - {broker: azure, service: azure-mysql-5-7, plans: {small: basic, large: standard}}
//! parameters:                 # defaults, forced, allowed and forbidden parameters
//!   - name: cost-center
//!     defaults: {cost_center: "{context.namespace_annotations.cost-center}"}
//! deny:                       # calls refused with a reason
//!   - name: no-sql-from-dev
//!     platforms: [k8s-dev]
//!     services: ["azure.azure-sql-*"]
//!     reason: SQL databases are provisioned from production clusters only
//! quotas:                     # limits on what is kept, counted from the registry
//!   - name: three-databases-per-namespace
//!     platforms: ["k8s-*"]
//!     tags: [mysql, postgresql]
//!     per: [platform, context.namespace]   # one count per platform and namespace
//!     limit: 3
//!     reason: each namespace keeps at most three databases
//! ```
//!
//! Lists of names are globs (`*` any run, `?` one character). Selectors given together must all
//! match; the entries of one list are alternatives. Unknown keys are errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The whole policy file.
#[derive(Debug, Default, Deserialize)]
pub struct PolicyFile {
    #[serde(default)]
    pub visibility: VisibilityFile,
    #[serde(default)]
    pub offerings: Vec<OfferingFile>,
    #[serde(default)]
    pub parameters: Vec<ParameterRuleFile>,
    #[serde(default)]
    pub deny: Vec<DenyRuleFile>,
    /// Check parameters against the upstream plan's JSON schema before forwarding. Default true.
    pub schema_validation: Option<bool>,
    /// Rate limits per platform (inbound) and per broker (outbound).
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub quotas: Vec<QuotaFile>,
}

/// `limits:` rate limits; the first entry whose `name` glob matches applies; none: unlimited.
#[derive(Debug, Default, Deserialize)]
pub struct LimitsFile {
    #[serde(default)]
    pub platforms: Vec<PlatformLimitFile>,
    #[serde(default)]
    pub brokers: Vec<BrokerLimitFile>,
}

/// `limits.platforms[]`: what one platform may send, catalog reads and other calls apart.
#[derive(Debug, Default, Deserialize)]
pub struct PlatformLimitFile {
    /// Platform names (a glob).
    pub name: Option<String>,
    /// Sustained `GET /v2/catalog` per second.
    pub catalog_per_sec: Option<u32>,
    /// Catalog reads allowed at once above the rate. Default: `catalog_per_sec`.
    pub catalog_burst: Option<u32>,
    /// Sustained instance and binding calls per second.
    pub calls_per_sec: Option<u32>,
    /// Calls allowed at once above the rate. Default: `calls_per_sec`.
    pub calls_burst: Option<u32>,
}

/// `limits.brokers[]`: what the gateway sends one upstream broker (protects cloud API quotas).
#[derive(Debug, Default, Deserialize)]
pub struct BrokerLimitFile {
    /// Broker names (a glob).
    pub name: Option<String>,
    pub calls_per_sec: Option<u32>,
    pub calls_burst: Option<u32>,
}

/// `visibility:`
#[derive(Debug, Default, Deserialize)]
pub struct VisibilityFile {
    /// `visible` (default) or `hidden`: what a plan no rule matches is.
    pub default: Option<String>,
    #[serde(default)]
    pub rules: Vec<VisibilityRuleFile>,
}

/// `visibility.rules[]`
#[derive(Debug, Default, Deserialize)]
pub struct VisibilityRuleFile {
    pub name: Option<String>,
    pub platforms: Option<Vec<String>>,
    pub services: Option<Vec<String>>,
    pub plans: Option<Vec<String>>,
    pub brokers: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub free: Option<bool>,
    /// `show` or `hide`.
    pub effect: Option<String>,
}

/// `offerings[]`: a logical offering.
#[derive(Debug, Default, Deserialize)]
pub struct OfferingFile {
    /// The published name (no namespace): `mysql`.
    pub name: Option<String>,
    pub description: Option<String>,
    pub bindable: Option<bool>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Passed through to the catalog (displayName, …).
    pub metadata: Option<Value>,
    #[serde(default)]
    pub plans: Vec<OfferingPlanFile>,
    #[serde(default)]
    pub placement: Vec<PlacementRuleFile>,
}

/// `offerings[].plans[]`
#[derive(Debug, Default, Deserialize)]
pub struct OfferingPlanFile {
    pub name: Option<String>,
    pub description: Option<String>,
    pub free: Option<bool>,
    pub bindable: Option<bool>,
    pub metadata: Option<Value>,
}

/// `offerings[].placement[]`: when it applies, and where it places.
#[derive(Debug, Default, Deserialize)]
pub struct PlacementRuleFile {
    pub name: Option<String>,
    /// Fact path → globs, all must match: `platform`, `context.namespace`,
    /// `context.namespace_annotations.team`, `context.organization_name`, `parameters.region`, …
    #[serde(default)]
    pub when: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub candidates: Vec<CandidateFile>,
}

/// `offerings[].placement[].candidates[]`
#[derive(Debug, Default, Deserialize)]
pub struct CandidateFile {
    pub broker: Option<String>,
    /// The upstream service's name (as the broker's catalog has it).
    pub service: Option<String>,
    /// Offering plan name → upstream plan name.
    #[serde(default)]
    pub plans: BTreeMap<String, String>,
    /// Share among the healthy weighted candidates (stable per instance id). 0 (default) makes the
    /// candidate a failover, taken in order when no weighted candidate is healthy.
    pub weight: Option<u32>,
}

/// `parameters[]`
#[derive(Debug, Default, Deserialize)]
pub struct ParameterRuleFile {
    pub name: Option<String>,
    pub platforms: Option<Vec<String>>,
    pub services: Option<Vec<String>>,
    pub plans: Option<Vec<String>>,
    pub brokers: Option<Vec<String>>,
    /// `provision`, `update`, `bind`. Default: provision and update.
    pub operations: Option<Vec<String>>,
    /// Set when absent. A string `{fact.path}` takes the fact's value; a default whose fact is
    /// missing is skipped.
    #[serde(default)]
    pub defaults: BTreeMap<String, Value>,
    /// Always set (overrides what the platform sent).
    #[serde(default)]
    pub force: BTreeMap<String, Value>,
    /// When present, the value must be one of these (strings are globs).
    #[serde(default)]
    pub allowed: BTreeMap<String, Vec<Value>>,
    /// Parameter names (globs) that must not be sent.
    #[serde(default)]
    pub forbid: Vec<String>,
}

/// `deny[]`
#[derive(Debug, Default, Deserialize)]
pub struct DenyRuleFile {
    pub name: Option<String>,
    pub platforms: Option<Vec<String>>,
    pub services: Option<Vec<String>>,
    pub plans: Option<Vec<String>>,
    pub brokers: Option<Vec<String>>,
    /// `provision`, `update`, `deprovision`, `bind`, `unbind`. Default: all.
    pub operations: Option<Vec<String>>,
    /// Fact path → globs, all must match (as in placement).
    #[serde(default)]
    pub when: BTreeMap<String, Vec<String>>,
    /// Shown to the platform.
    pub reason: Option<String>,
}

/// `quotas[]`: at most `limit` live instances (or bindings) matching the selector and `when`, counted
/// separately for each value of the `per` facts. A new instance (binding) over the limit is refused
/// before anything is forwarded; every matching quota must have room.
#[derive(Debug, Default, Deserialize)]
pub struct QuotaFile {
    pub name: Option<String>,
    pub platforms: Option<Vec<String>>,
    pub services: Option<Vec<String>>,
    pub plans: Option<Vec<String>>,
    pub brokers: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub free: Option<bool>,
    /// Fact path → globs, all must match (as in deny rules).
    #[serde(default)]
    pub when: BTreeMap<String, Vec<String>>,
    /// Fact paths: one count per distinct combination of their values (`[platform,
    /// context.namespace]`: per namespace of each platform). None: one count for everything matched.
    #[serde(default)]
    pub per: Vec<String>,
    /// `instances` (default) or `bindings`.
    pub resource: Option<String>,
    /// How many may live at once (in-flight provisions included).
    pub limit: Option<u64>,
    /// Shown to the platform when the quota is full.
    pub reason: Option<String>,
}
