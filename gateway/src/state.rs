//! What every request handler shares: the settings and the parts of the gateway, side by side.
//!
//! State is built once, before the listeners' servers start, and cloned into each worker's app: a
//! cache or limiter created inside the app factory would silently be per-thread.

use std::sync::Arc;

use osb_config::Settings;
use osb_routing::{Brokers, CatalogCache, Policies, Registry};

use crate::edge::auth::Platforms;
use crate::edge::limits::Limiters;
use crate::ops::config_file::ConfigFile;
use crate::ops::policy_file::PolicyFile;
use crate::osb::decide::{Decider, SchemaCache};
use crate::telemetry::audit::AuditLog;
use crate::telemetry::metrics::Metrics;

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// Platform credentials (secret files re-read when they change).
    pub platforms: std::sync::Arc<Platforms>,
    /// The merged catalog and each platform's view of it (only a cache).
    pub catalog: Arc<CatalogCache>,
    /// The upstream brokers' clients and health.
    pub brokers: Arc<Brokers>,
    /// The policy in force.
    pub policies: Arc<Policies>,
    pub registry: Registry,
    /// The policy file and its reloads.
    pub policy_file: Arc<PolicyFile>,
    /// The configuration file and its reloads (brokers, platforms).
    pub config_file: Arc<ConfigFile>,
    /// Compiled plan schemas.
    pub schemas: SchemaCache,
    pub metrics: Arc<Metrics>,
    pub limiters: Arc<Limiters>,
    /// The audit log (platform calls, operator actions).
    pub audit: AuditLog,
}

impl AppState {
    /// Runs `decide` with the current catalog, policy and broker health (calls, explain).
    pub fn with_decider<T>(&self, decide: impl FnOnce(&Decider<'_>) -> T) -> T {
        let snapshot = self.catalog.snapshot();
        let policy = self.policies.current();
        let healthy = |broker: &str| self.brokers.is_healthy(broker);
        decide(&Decider {
            snapshot: &snapshot,
            policy: &policy,
            healthy: &healthy,
            schemas: &self.schemas,
        })
    }
}
