//! The configuration file, reloaded while serving: when it changes (looked at once a second, see
//! `watch`), on SIGHUP, or on `POST /admin/reload`, the whole file is validated again and then
//! what can change without a restart is swapped in.
//!
//! Applied in place:
//! - **brokers** added, removed or changed (URL, credentials, TLS, limits…): a changed broker
//!   gets a new client and keeps serving its catalog until the new client's first refresh; an
//!   added one's services appear once its catalog is in (the catalog's ETag changes once); an
//!   unchanged one keeps its client, connections and circuit breaker. A call in flight finishes
//!   on the client it started with;
//! - **platforms** added, removed or changed (credentials);
//! - the rate limiters, metrics series and policy names follow both.
//!
//! A broker removed while it still has live instances or bindings in the registry is **held**: it
//! stays in force (its instances keep working, its services stay in the catalog) until they are
//! gone (looked at again every ten seconds) or an operator confirms the removal
//! (`osb-gateway admin reload --confirm-removal NAME`); its plans with live instances are then
//! kept in the catalog by the catalog guard. Everything else the file holds (listeners, store,
//! catalog and telemetry settings, the policy file's path) is read at start only: a change there
//! is reported as needing a restart and the rest applies. A file that does not validate, or that
//! would make the policy in force invalid, changes nothing (every problem logged and reported).
//! Each replica converges from its own file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use osb_config::{BrokerSettings, FileFormat, PlatformSettings, Settings};
use osb_routing::brokers::BrokerChanges;
use osb_routing::{Brokers, CatalogCache, Store};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::policy_file::{Names, PolicyFile};
use super::watch;
use crate::edge::auth::Platforms;
use crate::edge::limits::Limiters;
use crate::telemetry::metrics::Metrics;

/// Top-level keys applied without a restart.
const LIVE_KEYS: &[&str] = &["platforms", "brokers"];

/// How often held removals are looked at again.
const RECHECK_HELD: Duration = Duration::from_secs(10);

/// What one reload did (`GET`/`POST /admin/reload`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// When it ran (ms since the epoch).
    pub at_ms: u64,
    /// Whether the file was put in force (`false`: rejected, see `problems`).
    pub applied: bool,
    /// Why nothing changed, when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub problems: Vec<String>,
    pub brokers: BrokerChanges,
    pub platforms: PlatformChanges,
    /// Brokers the file removes that stay in force while they have live records.
    pub removals_held: Vec<HeldRemoval>,
    /// Top-level keys that changed but wait for the next start.
    pub restart_needed: Vec<String>,
}

/// What a reload changed of the platforms, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlatformChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// A broker the file no longer names, kept in force for its live records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldRemoval {
    pub broker: String,
    pub instances: u64,
    pub bindings: u64,
}

/// The parts of the gateway a reload changes.
pub struct ConfigFile {
    path: Option<PathBuf>,
    platforms: Arc<Platforms>,
    brokers: Arc<Brokers>,
    catalog: Arc<CatalogCache>,
    limiters: Arc<Limiters>,
    policy_file: Arc<PolicyFile>,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    /// The file's text as last applied (or at start), and brokers held back.
    applied: Mutex<Applied>,
    last: ArcSwap<Option<ReloadReport>>,
    /// One reload at a time (the watcher's thread and `POST /admin/reload` may both ask).
    reloading: tokio::sync::Mutex<()>,
}

struct Applied {
    text: String,
    held: Vec<String>,
    checked_held: Instant,
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The parts [`ConfigFile::new`] takes.
pub struct Parts {
    pub platforms: Arc<Platforms>,
    pub brokers: Arc<Brokers>,
    pub catalog: Arc<CatalogCache>,
    pub limiters: Arc<Limiters>,
    pub policy_file: Arc<PolicyFile>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
}

impl ConfigFile {
    /// The configuration file of `settings` (none for the demo's built-in configuration).
    pub fn new(settings: &Settings, parts: Parts) -> Arc<Self> {
        let path = Some(PathBuf::from(&settings.origin)).filter(|p| p.is_file());
        let text = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        Arc::new(ConfigFile {
            path,
            platforms: parts.platforms,
            brokers: parts.brokers,
            catalog: parts.catalog,
            limiters: parts.limiters,
            policy_file: parts.policy_file,
            metrics: parts.metrics,
            store: parts.store,
            applied: Mutex::new(Applied {
                text,
                held: Vec::new(),
                checked_held: Instant::now(),
            }),
            last: ArcSwap::from_pointee(None),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The last reload's report, if any ran.
    pub fn last(&self) -> Option<ReloadReport> {
        (*self.last.load_full()).clone()
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Watches the file (see the module docs) with [`watch::poll`]. Nothing to watch for a
    /// configuration without a file (the demo's). Abort the handle to stop.
    pub fn spawn_watcher(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let path = self.path.clone()?;
        let runtime = Handle::current();
        let file = Arc::clone(self);
        let mut seen = stamp(&path);
        watch::poll("osb-config-watch", "configuration file", move |forced| {
            let now = stamp(&path);
            let changed = now != seen;
            seen = now;
            let recheck = {
                let applied = file.applied();
                !applied.held.is_empty() && applied.checked_held.elapsed() >= RECHECK_HELD
            };
            if changed || forced || recheck {
                // This is the watcher's own thread, not one of the runtime's.
                runtime.block_on(file.reload(forced || recheck, &[]));
            }
        })
    }

    /// Reads the file and applies it (see the module docs). Unless `force`, a text equal to the
    /// one applied does nothing. `confirm` names held broker removals an operator confirmed.
    pub async fn reload(&self, force: bool, confirm: &[String]) -> ReloadReport {
        let _one_at_a_time = self.reloading.lock().await;
        // A held removal is looked at again in ten seconds, whatever this reload's outcome.
        self.applied().checked_held = Instant::now();
        let mut report = ReloadReport {
            at_ms: osb_routing::clock::now_ms(),
            ..ReloadReport::default()
        };
        let Some(path) = &self.path else {
            report.problems.push(
                "the gateway runs without a configuration file (the demo's): nothing to reload".to_owned(),
            );
            return report;
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                report
                    .problems
                    .push(format!("cannot read {}: {e}", path.display()));
                return self.finish(report);
            }
        };
        let before = self.applied().text.clone();
        if text == before && !force && confirm.is_empty() {
            report.applied = true;
            return report;
        }
        let settings = match load(path, &text) {
            Ok(settings) => settings,
            Err(problems) => {
                report.problems = problems;
                return self.finish(report);
            }
        };
        report.restart_needed = changed_keys(&before, &text, path)
            .into_iter()
            .filter(|key| !LIVE_KEYS.contains(&key.as_str()))
            .collect();

        // Brokers the file removes that still have live records stay, unless confirmed.
        let wanted = self
            .brokers_in_force(&settings.brokers, confirm, &mut report)
            .await;
        let names = Names {
            platforms: settings.platforms.iter().map(|p| p.name.clone()).collect(),
            brokers: wanted.iter().map(|b| b.name.clone()).collect(),
        };
        if let Err(problems) = self.policy_file.check_names(&names) {
            report.problems = problems
                .iter()
                .map(|p| format!("the policy in force would not be valid with this file: {p}"))
                .collect();
            return self.finish(report);
        }

        report.brokers = match self.brokers.reconfigure(&wanted) {
            Ok(changes) => changes,
            Err(e) => {
                report.problems.push(osb_routing::error::error_chain(&e));
                return self.finish(report);
            }
        };
        if !report.brokers.is_empty() {
            self.catalog.reconfigure().await;
        }
        report.platforms = platform_changes(&self.platforms.current(), &settings.platforms);
        if report.platforms != PlatformChanges::default() {
            self.platforms.replace(&settings.platforms);
        }
        self.limiters
            .set_names(names.platforms.clone(), names.brokers.clone());
        self.metrics.declare(&names.platforms, &names.brokers);
        self.policy_file.set_names(names);
        report.applied = true;
        {
            let mut applied = self.applied();
            applied.text = text;
            applied.held = report.removals_held.iter().map(|h| h.broker.clone()).collect();
            applied.checked_held = Instant::now();
        }
        self.finish(report)
    }

    /// The brokers to put in force: the file's, and (after them) those it removes that still have
    /// live records and whose removal was not confirmed (noted in `report`).
    async fn brokers_in_force(
        &self,
        wanted: &[BrokerSettings],
        confirm: &[String],
        report: &mut ReloadReport,
    ) -> Vec<BrokerSettings> {
        let mut brokers = wanted.to_vec();
        let removed: Vec<_> = self
            .brokers
            .clients()
            .into_iter()
            .filter(|c| !wanted.iter().any(|w| w.name == c.name()))
            .collect();
        if removed.is_empty() {
            return brokers;
        }
        let counts = match self.store.counts().await {
            Ok(counts) => Some(counts),
            Err(e) => {
                warn!(error = %e, "Cannot count live records: brokers the file removes are held.");
                None
            }
        };
        for client in removed {
            let name = client.name().to_owned();
            let (instances, bindings) = counts.as_ref().map_or((1, 0), |c| {
                (
                    c.instances.get(&name).copied().unwrap_or(0),
                    c.bindings.get(&name).copied().unwrap_or(0),
                )
            });
            if instances + bindings > 0 && !confirm.contains(&name) {
                report.removals_held.push(HeldRemoval {
                    broker: name,
                    instances,
                    bindings,
                });
                brokers.push(client.settings().clone());
            }
        }
        brokers
    }

    /// Logs and counts `report` and keeps it for the admin API.
    fn finish(&self, mut report: ReloadReport) -> ReloadReport {
        self.metrics.config_reload(report.applied);
        if report.applied {
            info!(
                brokers_added = %report.brokers.added.join(","),
                brokers_removed = %report.brokers.removed.join(","),
                brokers_changed = %report.brokers.changed.join(","),
                platforms_added = %report.platforms.added.join(","),
                platforms_removed = %report.platforms.removed.join(","),
                platforms_changed = %report.platforms.changed.join(","),
                "Configuration reloaded."
            );
            for held in &report.removals_held {
                warn!(
                    broker = %held.broker,
                    instances = held.instances,
                    bindings = held.bindings,
                    "Broker removed from the file is kept while it has live records \
                     (osb-gateway admin reload --confirm-removal to remove it anyway)."
                );
            }
            if !report.restart_needed.is_empty() {
                warn!(
                    keys = %report.restart_needed.join(", "),
                    "Configuration changed where a restart is needed; those changes wait for the next start."
                );
            }
        } else {
            report.description = Some(
                "the configuration file has problems; the configuration in force is unchanged".to_owned(),
            );
            warn!(
                problems = %report.problems.join("; "),
                "Configuration file rejected; the configuration in force is unchanged."
            );
        }
        self.last.store(Arc::new(Some(report.clone())));
        report
    }
}

/// Validates the file's text as a whole.
fn load(path: &Path, text: &str) -> Result<Settings, Vec<String>> {
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let base_dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let origin = path.display().to_string();
    osb_config::load_str(text, format_of(path), &origin, &base_dir, &env)
        .map(|loaded| loaded.settings)
        .map_err(|e| vec![e.to_string()])
}

fn platform_changes(old: &[PlatformSettings], new: &[PlatformSettings]) -> PlatformChanges {
    let same = |a: &PlatformSettings, b: &PlatformSettings| {
        a.basic.as_ref().map(|c| (&c.username, &c.password))
            == b.basic.as_ref().map(|c| (&c.username, &c.password))
            && a.bearer_token == b.bearer_token
            && a.password_file == b.password_file
            && a.bearer_token_file == b.bearer_token_file
    };
    let mut changes = PlatformChanges::default();
    for platform in new {
        match old.iter().find(|o| o.name == platform.name) {
            None => changes.added.push(platform.name.clone()),
            Some(o) if !same(o, platform) => changes.changed.push(platform.name.clone()),
            Some(_) => {}
        }
    }
    changes.removed = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.name == o.name))
        .map(|o| o.name.clone())
        .collect();
    // The order matters too (the first matching credential names the platform).
    if changes == PlatformChanges::default() && old.iter().map(|p| &p.name).ne(new.iter().map(|p| &p.name)) {
        changes.changed = new.iter().map(|p| p.name.clone()).collect();
    }
    changes
}

/// What tells that the file changed: its modification time and length (a Kubernetes ConfigMap
/// update swaps a symlink: the metadata followed through it changes too).
fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// The file's format by its extension (YAML unless `.toml`).
fn format_of(path: &Path) -> FileFormat {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => FileFormat::Toml,
        _ => FileFormat::Yaml,
    }
}

/// The top-level keys whose values differ between two texts of the file.
fn changed_keys(before: &str, after: &str, path: &Path) -> Vec<String> {
    let format = format_of(path);
    let table = |text: &str| {
        config::Config::builder()
            .add_source(config::File::from_str(text, format))
            .build()
            .ok()
            .and_then(|c| c.cache.into_table().ok())
            .unwrap_or_default()
    };
    let (before, after) = (table(before), table(after));
    let keys: BTreeSet<String> = before
        .keys()
        .chain(after.keys())
        .filter(|key| before.get(*key) != after.get(*key))
        .cloned()
        .collect();
    keys.into_iter().collect()
}
