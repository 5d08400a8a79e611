//! The catalog cache: each broker's last good catalog, the merged catalog built from them, and the
//! background refreshers that keep both current.
//!
//! ```text
//!  refresher(broker) ──fetch (conditional)──▶ validate ──▶ persist (store) ──▶ merge ──▶ ArcSwap<CatalogSnapshot>
//!        ▲   every 0.8 × refresh_interval; backoff on failure                              │
//!        └── wake (admin refresh)                          GET /v2/catalog ◀── view(platform) (moka)
//! ```
//!
//! - **Stale on error**: a failed refresh keeps the last good catalog and marks the broker `stale`.
//! - **Persisted**: the last good body of every broker is saved in the store and loaded at start, so a
//!   restart during an upstream outage still serves that broker's services.
//! - **Never silently partial**: until every broker has a catalog (fetched or persisted) or the
//!   start-up grace ran out, [`CatalogCache::view`] answers [`Unavailable`]; platforms that see
//!   services vanish mark them removed.
//! - **Serialized once per change**: the merged catalog is rendered to bytes with a strong ETag when
//!   a broker's catalog changes; a refresh that returns the same bytes (or 304) re-merges nothing.
//!   Per-platform views are cached in moka by platform and rebuilt when the snapshot changes.
//! - **Guarded**: a merge that would drop a plan with live instances keeps serving it (see
//!   [`crate::catalog::guard`]) until its instances are gone (re-checked when told that instances
//!   changed, and every few seconds while anything is held) or an operator confirms the removal.
//!   The catalog last served is persisted (store key `@served`), so the guard also holds across a
//!   restart and a configuration change; confirmations are shared through the store
//!   (`@confirmed`) with every replica. `@` keys are not broker names (those cannot hold `@`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use osb_config::{BrokerSettings, Settings};
use osb_policies::{PlanFacts, Policy};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::RoutingError;
use crate::catalog::{
    BrokerCatalog, Catalog, HeldPlan, LiveCounts, LivePlan, LogicalTable, RouteTable, Service, Validated,
    guard, merge, offering_service, removes_plans, validate_bounded,
};
use crate::registry::ResourceState;
use crate::store::{Store, StoredCatalog};
use crate::upstream::{CallHeaders, CatalogFetch, UpstreamBroker, Validators};

/// How current a broker's catalog is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// No catalog yet: never fetched, nothing persisted.
    Pending,
    /// The last refresh succeeded.
    Fresh,
    /// Serving the last good catalog: the last refresh failed, or it came from the store at start.
    Stale,
}

/// Where the catalog in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogSource {
    Upstream,
    Store,
}

/// What operators (health, admin API, metrics) see of one broker's catalog.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerStatus {
    pub name: String,
    pub freshness: Freshness,
    pub source: Option<CatalogSource>,
    /// When the catalog in use was fetched from the broker (ms since the epoch).
    pub fetched_at_ms: Option<u64>,
    /// When the last refresh finished, successful or not.
    pub last_attempt_ms: Option<u64>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// Refreshes since start, by outcome (for metrics).
    pub refreshes_ok: u64,
    pub refreshes_not_modified: u64,
    pub refreshes_failed: u64,
    pub services: usize,
    pub plans: usize,
    /// Services and plans left out because they were invalid.
    pub dropped: usize,
}

/// Whether the merged catalog may be served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Availability {
    /// Every broker's catalog is in.
    Complete,
    /// Start-up grace still running and `missing` brokers have no catalog yet: don't serve.
    Starting { missing: Vec<String> },
    /// Grace ran out; serving without `missing` brokers.
    Partial { missing: Vec<String> },
}

/// One consistent picture: the merged catalog, its routes, and every broker's status.
#[derive(Debug)]
pub struct CatalogSnapshot {
    /// Bumped when the served catalog (or its routes or held plans) changes; a change of broker
    /// status alone keeps it.
    pub generation: u64,
    pub catalog: Arc<Catalog>,
    /// `catalog` serialized once.
    pub body: Bytes,
    /// Strong ETag of `body`.
    pub etag: String,
    pub routes: Arc<RouteTable>,
    pub brokers: Vec<BrokerStatus>,
    pub availability: Availability,
    /// Plans served only because the catalog guard holds them (their broker dropped them while
    /// they have live instances). They have no route: nothing new is provisioned on them.
    pub held: Arc<Vec<HeldPlan>>,
}

impl CatalogSnapshot {
    /// The held plan `plan_id`, if it is one.
    pub fn held_plan(&self, plan_id: &str) -> Option<&HeldPlan> {
        self.held.iter().find(|h| h.plan_id == plan_id)
    }
}

/// Store key of the catalog last served (what the guard compares the next merge with).
const SERVED_KEY: &str = "@served";
/// Store key of the removals operators confirmed (JSON list of plan or service ids).
const CONFIRMED_KEY: &str = "@confirmed";
/// How often held plans are re-checked without being told that instances changed.
const HELD_RECHECK_EVERY: Duration = Duration::from_secs(10);

/// What a publish recomputes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// Broker statuses only (the catalog stays).
    Status,
    /// Merge the brokers' catalogs again (one changed), then guard.
    Merge,
    /// Guard the last merge again (instances changed, a removal was confirmed).
    Recheck,
}

/// The catalog one platform is served: what the policy lets it see, logical offerings included.
#[derive(Debug)]
pub struct CatalogView {
    generation: u64,
    policy_generation: u64,
    pub body: Bytes,
    pub etag: String,
}

/// The policy in force and what is derived from it once per change.
#[derive(Debug)]
pub struct PolicyState {
    pub policy: Arc<Policy>,
    /// Bumped on every reload.
    pub generation: u64,
    /// Recognises logical offering ids.
    pub logical: LogicalTable,
    /// The logical offerings' catalog entries.
    pub offerings: Vec<Service>,
}

impl PolicyState {
    /// Derives the logical-offering table and catalog entries of `policy`.
    pub fn new(policy: Arc<Policy>, generation: u64) -> Self {
        PolicyState {
            logical: LogicalTable::new(&policy),
            offerings: policy.offerings.iter().map(offering_service).collect(),
            policy,
            generation,
        }
    }
}

/// `GET /v2/catalog` cannot be answered yet.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the catalogs of {} are not in yet", missing.join(", "))]
pub struct Unavailable {
    pub missing: Vec<String>,
}

/// A broker's validated catalog and what identifies its bytes.
#[derive(Debug)]
struct HeldCatalog {
    validated: Validated,
    validators: Validators,
    digest: [u8; 32],
}

#[derive(Debug)]
struct BrokerState {
    catalog: Option<Arc<HeldCatalog>>,
    status: BrokerStatus,
}

/// See the module docs.
pub struct CatalogCache {
    brokers: Vec<Arc<UpstreamBroker>>,
    separator: String,
    store: Arc<dyn Store>,
    policy: ArcSwap<PolicyState>,
    grace_deadline: Instant,
    /// Index-aligned with `brokers`. Held across a merge so merges never interleave.
    states: Mutex<Vec<BrokerState>>,
    snapshot: ArcSwap<CatalogSnapshot>,
    views: moka::sync::Cache<String, Arc<CatalogView>>,
    wake: Vec<Notify>,
    generation: AtomicU64,
    /// Views served from the cache, and rendered.
    view_hits: AtomicU64,
    view_misses: AtomicU64,
    /// The last merge, before the guard: what a re-check guards again.
    last_merged: std::sync::Mutex<Option<(Arc<Catalog>, Arc<RouteTable>)>>,
    /// The catalog served before this process started (from the store), for the first guard.
    served_before: std::sync::Mutex<Option<Catalog>>,
    /// Plan and service ids whose removal an operator confirmed.
    confirmed: std::sync::Mutex<HashSet<String>>,
    /// Wakes the re-check of held plans.
    recheck: Notify,
}

impl std::fmt::Debug for CatalogCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogCache")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl CatalogCache {
    /// Builds the cache from the settings, loading every broker's persisted catalog.
    ///
    /// # Errors
    /// A broker client cannot be built. A persisted catalog that fails to load is logged and skipped.
    pub async fn new(settings: &Settings, store: Arc<dyn Store>) -> Result<Arc<Self>, RoutingError> {
        let brokers = settings
            .brokers
            .iter()
            .map(|b| UpstreamBroker::new(b).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let mut states = Vec::with_capacity(brokers.len());
        for broker in &brokers {
            let mut status = BrokerStatus {
                name: broker.name().to_owned(),
                freshness: Freshness::Pending,
                source: None,
                fetched_at_ms: None,
                last_attempt_ms: None,
                last_error: None,
                consecutive_failures: 0,
                refreshes_ok: 0,
                refreshes_not_modified: 0,
                refreshes_failed: 0,
                services: 0,
                plans: 0,
                dropped: 0,
            };
            let catalog = match load_persisted(store.as_ref(), broker.settings()).await {
                Some((held, fetched_at_ms)) => {
                    status.freshness = Freshness::Stale;
                    status.source = Some(CatalogSource::Store);
                    status.fetched_at_ms = Some(fetched_at_ms);
                    count_into(&mut status, &held.validated);
                    Some(Arc::new(held))
                }
                None => None,
            };
            states.push(BrokerState { catalog, status });
        }
        let wake = brokers.iter().map(|_| Notify::new()).collect();
        let served_before = match store.load_catalog(SERVED_KEY).await {
            Ok(Some(stored)) => serde_json::from_slice::<Catalog>(&stored.body).ok(),
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "Could not load the catalog served before; nothing is held across this restart.");
                None
            }
        };
        let cache = CatalogCache {
            brokers,
            separator: settings.catalog.name_separator.clone(),
            store,
            policy: ArcSwap::from_pointee(PolicyState::new(Arc::new(Policy::default()), 0)),
            grace_deadline: Instant::now() + settings.catalog.startup_grace,
            states: Mutex::new(Vec::new()),
            snapshot: ArcSwap::from_pointee(empty_snapshot()),
            views: moka::sync::Cache::new(10_000),
            wake,
            generation: AtomicU64::new(0),
            view_hits: AtomicU64::new(0),
            view_misses: AtomicU64::new(0),
            last_merged: std::sync::Mutex::new(None),
            served_before: std::sync::Mutex::new(served_before),
            confirmed: std::sync::Mutex::new(HashSet::new()),
            recheck: Notify::new(),
        };
        cache.load_confirmed().await;
        cache.publish(&states, None).await;
        *cache.states.lock().await = states;
        Ok(Arc::new(cache))
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.snapshot.load_full()
    }

    /// The catalog `platform` is served: body and ETag.
    ///
    /// # Errors
    /// [`Unavailable`] during start-up while a broker's first catalog is still missing.
    pub fn view(&self, platform: &str) -> Result<Arc<CatalogView>, Unavailable> {
        let snapshot = self.snapshot.load();
        if let Availability::Starting { missing } = &snapshot.availability {
            return Err(Unavailable {
                missing: missing.clone(),
            });
        }
        let policy = self.policy.load();
        let current = |v: &Arc<CatalogView>| {
            v.generation == snapshot.generation && v.policy_generation == policy.generation
        };
        if let Some(view) = self.views.get(platform).filter(current) {
            self.view_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(view);
        }
        self.view_misses.fetch_add(1, Ordering::Relaxed);
        let view = Arc::new(render(platform, &snapshot, &policy));
        self.views.insert(platform.to_owned(), view.clone());
        Ok(view)
    }

    /// (views served from the cache, views rendered) since start.
    pub fn view_counts(&self) -> (u64, u64) {
        (
            self.view_hits.load(Ordering::Relaxed),
            self.view_misses.load(Ordering::Relaxed),
        )
    }

    /// Puts a new policy in force: later catalog views and decisions use it.
    pub fn set_policy(&self, policy: Arc<Policy>) -> u64 {
        let generation = self.policy.load().generation + 1;
        self.policy.store(Arc::new(PolicyState::new(policy, generation)));
        self.views.invalidate_all();
        generation
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<PolicyState> {
        self.policy.load_full()
    }

    /// Whether calls may be placed on `broker`: its circuit is not open and its last catalog
    /// refresh succeeded.
    pub fn is_healthy(&self, broker: &str) -> bool {
        if self.broker(broker).is_none_or(|b| b.is_open()) {
            return false;
        }
        self.snapshot
            .load()
            .brokers
            .iter()
            .any(|b| b.name == broker && b.consecutive_failures == 0 && b.freshness != Freshness::Pending)
    }

    /// The upstream broker named `name`.
    pub fn broker(&self, name: &str) -> Option<&Arc<UpstreamBroker>> {
        self.brokers.iter().find(|b| b.name() == name)
    }

    /// Asks the refresher of `name` (or of every broker, for `None`) to refresh now.
    /// Returns `false` for an unknown broker.
    pub fn request_refresh(&self, name: Option<&str>) -> bool {
        let mut found = false;
        for (broker, wake) in self.brokers.iter().zip(&self.wake) {
            if name.is_none_or(|n| n == broker.name()) {
                wake.notify_one();
                found = true;
            }
        }
        found
    }

    /// Starts one refresher per broker and the start-up grace timer. Abort the handles to stop.
    pub fn spawn_refreshers(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut handles: Vec<JoinHandle<()>> = (0..self.brokers.len())
            .map(|index| {
                let cache = Arc::clone(self);
                tokio::spawn(async move { cache.refresh_loop(index).await })
            })
            .collect();
        let cache = Arc::clone(self);
        handles.push(tokio::spawn(async move { cache.recheck_loop().await }));
        let cache = Arc::clone(self);
        handles.push(tokio::spawn(async move {
            tokio::time::sleep_until(cache.grace_deadline).await;
            let states = cache.states.lock().await;
            cache.publish(&states, None).await;
            if let Availability::Partial { missing } = &cache.snapshot().availability {
                warn!(missing = %missing.join(","), "Start-up grace ran out; serving the catalog without these brokers.");
            }
        }));
        handles
    }

    async fn refresh_loop(&self, index: usize) {
        let Some(broker) = self.brokers.get(index) else {
            return;
        };
        let interval = broker.settings().refresh_interval;
        loop {
            let delay = match self.refresh(index).await {
                Ok(()) => interval.mul_f64(0.8),
                Err(failures) => backoff(failures, interval),
            };
            if let Some(wake) = self.wake.get(index) {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = wake.notified() => {}
                }
            } else {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// Refreshes broker `index` once. `Err` carries the number of consecutive failures.
    async fn refresh(&self, index: usize) -> Result<(), u32> {
        let Some(broker) = self.brokers.get(index) else {
            return Ok(());
        };
        let held = {
            let states = self.states.lock().await;
            states.get(index).and_then(|s| s.catalog.clone())
        };
        let validators = held.as_ref().map(|h| h.validators.clone()).unwrap_or_default();
        let call = CallHeaders {
            request_identity: uuid::Uuid::new_v4().to_string(),
            operation: "catalog",
            ..CallHeaders::default()
        };

        let mut not_modified = false;
        let fetched = match broker.fetch_catalog(&validators, &call).await {
            Ok(CatalogFetch::NotModified) => {
                not_modified = true;
                None
            }
            Ok(CatalogFetch::Fetched { body, validators }) => {
                let digest: [u8; 32] = Sha256::digest(&body).into();
                if held.as_ref().is_some_and(|h| h.digest == digest) {
                    None
                } else {
                    let name = broker.name().to_owned();
                    let parse_body = body.clone();
                    let limits = broker.settings().catalog_limits;
                    let validated =
                        tokio::task::spawn_blocking(move || validate_bounded(&name, &parse_body, &limits))
                            .await;
                    match validated {
                        Ok(Ok(validated)) => Some((validated, validators, digest, body)),
                        Ok(Err(e)) => return Err(self.record_failure(index, &e).await),
                        Err(join) => {
                            let e = RoutingError::InvalidCatalog {
                                broker: broker.name().to_owned(),
                                reason: format!("validation task failed: {join}"),
                            };
                            return Err(self.record_failure(index, &e).await);
                        }
                    }
                }
            }
            Err(e) => return Err(self.record_failure(index, &e).await),
        };

        let now = now_ms();
        let mut states = self.states.lock().await;
        let Some(state) = states.get_mut(index) else {
            return Ok(());
        };
        let recovered = state.status.freshness != Freshness::Fresh;
        state.status.freshness = Freshness::Fresh;
        state.status.source = Some(CatalogSource::Upstream);
        state.status.last_attempt_ms = Some(now);
        state.status.fetched_at_ms = Some(now);
        state.status.last_error = None;
        state.status.consecutive_failures = 0;
        if not_modified {
            state.status.refreshes_not_modified += 1;
        } else {
            state.status.refreshes_ok += 1;
        }
        let changed = match fetched {
            None => {
                if recovered {
                    info!(broker = broker.name(), "Catalog is current again.");
                }
                None
            }
            Some((validated, validators, digest, body)) => {
                for dropped in &validated.dropped {
                    warn!(broker = broker.name(), what = %dropped.what, reason = %dropped.reason, "Dropped from the catalog.");
                }
                count_into(&mut state.status, &validated);
                info!(
                    broker = broker.name(),
                    services = state.status.services,
                    plans = state.status.plans,
                    dropped = state.status.dropped,
                    "Catalog refreshed."
                );
                let stored = StoredCatalog {
                    body,
                    validators: validators.clone(),
                    fetched_at_ms: now,
                };
                if let Err(e) = self.store.save_catalog(broker.name(), stored).await {
                    warn!(broker = broker.name(), error = %e, "Could not persist the catalog; it will not survive a restart.");
                }
                state.catalog = Some(Arc::new(HeldCatalog {
                    validated,
                    validators,
                    digest,
                }));
                Some(index)
            }
        };
        self.publish(&states, changed).await;
        Ok(())
    }

    async fn record_failure(&self, index: usize, error: &RoutingError) -> u32 {
        let mut states = self.states.lock().await;
        let Some(state) = states.get_mut(index) else {
            return 1;
        };
        let status = &mut state.status;
        status.consecutive_failures = status.consecutive_failures.saturating_add(1);
        status.refreshes_failed += 1;
        status.last_attempt_ms = Some(now_ms());
        status.last_error = Some(error_chain(error));
        status.freshness = if state.catalog.is_some() {
            Freshness::Stale
        } else {
            Freshness::Pending
        };
        let failures = status.consecutive_failures;
        if failures == 1 || failures.is_power_of_two() {
            warn!(
                broker = %status.name,
                error = %error_chain(error),
                failures,
                serving = if state.catalog.is_some() { "last good catalog" } else { "nothing" },
                "Catalog refresh failed."
            );
        }
        self.publish(&states, None).await;
        failures
    }

    /// Publishes a new snapshot. `changed` names a broker whose catalog changed (re-merge);
    /// `None` keeps the merged catalog and updates statuses only. The first call always merges.
    async fn publish(&self, states: &[BrokerState], changed: Option<usize>) {
        let mode = if changed.is_some() {
            Publish::Merge
        } else {
            Publish::Status
        };
        self.publish_as(states, mode).await;
    }

    async fn publish_as(&self, states: &[BrokerState], mode: Publish) {
        let previous = self.snapshot.load_full();
        let missing: Vec<String> = states
            .iter()
            .filter(|s| s.catalog.is_none())
            .map(|s| s.status.name.clone())
            .collect();
        let availability = if missing.is_empty() {
            Availability::Complete
        } else if Instant::now() >= self.grace_deadline {
            Availability::Partial { missing }
        } else {
            Availability::Starting { missing }
        };
        let brokers = states.iter().map(|s| s.status.clone()).collect();
        let mode = if previous.generation == 0 {
            Publish::Merge
        } else {
            mode
        };

        let (catalog, body, etag, routes, held) = if mode == Publish::Status {
            (
                previous.catalog.clone(),
                previous.body.clone(),
                previous.etag.clone(),
                previous.routes.clone(),
                previous.held.clone(),
            )
        } else {
            let last_merged = self
                .last_merged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let merged = match (mode, last_merged) {
                (Publish::Recheck, Some(last)) => Some(last),
                _ => self.merge(states).await,
            };
            let Some((merged, merged_routes)) = merged else {
                return;
            };
            *self
                .last_merged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((merged.clone(), merged_routes.clone()));
            let before = if previous.generation == 0 {
                self.served_before
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                    .map(Arc::new)
                    .unwrap_or_else(|| merged.clone())
            } else {
                previous.catalog.clone()
            };
            let (catalog, routes, held) = self.guard(&before, merged, merged_routes, &previous.held).await;
            if mode == Publish::Recheck && *held == *previous.held {
                return;
            }
            let (body, etag) = if Arc::ptr_eq(&catalog, &previous.catalog) {
                (previous.body.clone(), previous.etag.clone())
            } else {
                let render = catalog.clone();
                match tokio::task::spawn_blocking(move || serialize(&render)).await {
                    Ok(rendered) => rendered,
                    Err(e) => {
                        warn!(error = %e, "Catalog serialization failed; keeping the previous catalog.");
                        return;
                    }
                }
            };
            if body != previous.body {
                self.save_served(&body).await;
            }
            (catalog, body, etag, routes, held)
        };
        // A status-only publish serves the same catalog: it keeps the generation, so what is
        // cached per generation (platform views, compiled parameter schemas) stays valid.
        let generation = if mode == Publish::Status {
            previous.generation
        } else {
            self.generation.fetch_add(1, Ordering::SeqCst) + 1
        };
        self.snapshot.store(Arc::new(CatalogSnapshot {
            generation,
            catalog,
            body,
            etag,
            routes,
            brokers,
            availability,
            held,
        }));
    }

    /// Merges the brokers' catalogs (on the blocking pool: a megabyte of OSBA takes a while).
    async fn merge(&self, states: &[BrokerState]) -> Option<(Arc<Catalog>, Arc<RouteTable>)> {
        let held: Vec<(Arc<UpstreamBroker>, Option<Arc<HeldCatalog>>)> = self
            .brokers
            .iter()
            .cloned()
            .zip(states.iter().map(|s| s.catalog.clone()))
            .collect();
        let separator = self.separator.clone();
        match tokio::task::spawn_blocking(move || build_merged(&held, &separator)).await {
            Ok(built) => Some(built),
            Err(e) => {
                warn!(error = %e, "Catalog merge failed; keeping the previous catalog.");
                None
            }
        }
    }

    /// The catalog to serve for `merged`: the guard keeps plans of `before` with live instances.
    async fn guard(
        &self,
        before: &Catalog,
        merged: Arc<Catalog>,
        routes: Arc<RouteTable>,
        held_before: &[HeldPlan],
    ) -> (Arc<Catalog>, Arc<RouteTable>, Arc<Vec<HeldPlan>>) {
        if !removes_plans(before, &merged) {
            return (merged, routes, Arc::new(Vec::new()));
        }
        let live = match live_plans(self.store.as_ref()).await {
            Ok(live) => live,
            Err(e) => {
                // Cannot tell which removed plans still have instances: keep holding what was held.
                warn!(error = %e, "Could not count live instances; the catalog guard keeps what it held.");
                held_before
                    .iter()
                    .map(|h| {
                        (
                            h.plan_id.clone(),
                            LivePlan {
                                instances: h.instances,
                                broker: h.broker.clone(),
                                upstream_service_id: String::new(),
                            },
                        )
                    })
                    .collect()
            }
        };
        self.load_confirmed().await;
        let confirmed = self.confirmed();
        let guarded = guard(before, &merged, &live, &confirmed, held_before, now_ms());
        if guarded.held.is_empty() {
            return (merged, routes, Arc::new(Vec::new()));
        }
        let mut routes = (*routes).clone();
        for service in &guarded.catalog.services {
            if routes.service(&service.id).is_some() {
                continue;
            }
            let held = guarded.held.iter().find(|h| h.service_id == service.id);
            let upstream = held.and_then(|h| live.get(&h.plan_id));
            if let (Some(held), Some(upstream)) = (held, upstream) {
                routes.add_held_service(service, &held.broker, &upstream.upstream_service_id);
            }
        }
        for held in &guarded.held {
            if !held_before.iter().any(|h| h.plan_id == held.plan_id) {
                warn!(
                    broker = %held.broker,
                    service = %held.service_name,
                    plan = %held.plan_name,
                    instances = held.instances,
                    "A catalog change would remove a plan with live instances; still serving it."
                );
            }
        }
        for released in held_before
            .iter()
            .filter(|h| !guarded.held.iter().any(|g| g.plan_id == h.plan_id))
        {
            info!(broker = %released.broker, service = %released.service_name, plan = %released.plan_name, "Held plan released.");
        }
        (
            Arc::new(guarded.catalog),
            Arc::new(routes),
            Arc::new(guarded.held),
        )
    }

    /// Saves the catalog now served (the next start's guard compares with it).
    async fn save_served(&self, body: &Bytes) {
        let stored = StoredCatalog {
            body: body.clone(),
            validators: Validators::default(),
            fetched_at_ms: now_ms(),
        };
        if let Err(e) = self.store.save_catalog(SERVED_KEY, stored).await {
            warn!(error = %e, "Could not persist the served catalog; the guard will not hold across a restart.");
        }
    }

    /// Adds the confirmations kept in the store (other replicas' included).
    async fn load_confirmed(&self) {
        let stored = match self.store.load_catalog(CONFIRMED_KEY).await {
            Ok(Some(stored)) => serde_json::from_slice::<Vec<String>>(&stored.body).unwrap_or_default(),
            Ok(None) => Vec::new(),
            Err(e) => {
                warn!(error = %e, "Could not load confirmed catalog removals.");
                return;
            }
        };
        self.confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(stored);
    }

    /// Plan and service ids whose removal an operator confirmed.
    pub fn confirmed(&self) -> HashSet<String> {
        self.confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Confirms the removal of held plans: those with these plan or service ids, or every held
    /// plan for `None`. They leave the served catalog at once (instances on them keep routing by
    /// the registry). Returns the plans released.
    ///
    /// # Errors
    /// The confirmation could not be saved in the store (nothing changed).
    pub async fn confirm_removal(&self, ids: Option<&[String]>) -> Result<Vec<HeldPlan>, RoutingError> {
        let states = self.states.lock().await;
        let snapshot = self.snapshot();
        let released: Vec<HeldPlan> = snapshot
            .held
            .iter()
            .filter(|h| ids.is_none_or(|ids| ids.iter().any(|id| *id == h.plan_id || *id == h.service_id)))
            .cloned()
            .collect();
        if released.is_empty() {
            return Ok(released);
        }
        let mut confirmed = self.confirmed();
        confirmed.extend(released.iter().map(|h| h.plan_id.clone()));
        // Forget confirmations of plans published again (a later removal is guarded anew).
        let merged = self
            .last_merged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some((merged, _)) = merged {
            let published: HashSet<&str> = merged
                .services
                .iter()
                .flat_map(|s| std::iter::once(s.id.as_str()).chain(s.plans.iter().map(|p| p.id.as_str())))
                .collect();
            confirmed.retain(|id| !published.contains(id.as_str()));
        }
        let mut list: Vec<&String> = confirmed.iter().collect();
        list.sort();
        let body = serde_json::to_vec(&list).map_err(|e| RoutingError::Store(format!("encode: {e}")))?;
        self.store
            .save_catalog(
                CONFIRMED_KEY,
                StoredCatalog {
                    body: Bytes::from(body),
                    validators: Validators::default(),
                    fetched_at_ms: now_ms(),
                },
            )
            .await?;
        *self
            .confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = confirmed;
        self.publish_as(&states, Publish::Recheck).await;
        Ok(released)
    }

    /// Tells the guard that instances may have gone (a deprovision finished, an instance was
    /// abandoned): held plans are re-checked soon.
    pub fn instances_changed(&self) {
        if !self.snapshot.load().held.is_empty() {
            self.recheck.notify_one();
        }
    }

    /// Re-checks held plans now (and returns once the new snapshot is published).
    pub async fn recheck_held(&self) {
        if self.snapshot.load().held.is_empty() {
            return;
        }
        let states = self.states.lock().await;
        self.publish_as(&states, Publish::Recheck).await;
    }

    async fn recheck_loop(&self) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(HELD_RECHECK_EVERY) => {}
                () = self.recheck.notified() => {}
            }
            self.recheck_held().await;
        }
    }

    /// Every broker's catalog fetched now (not applied, not persisted) and merged as the gateway
    /// would: what a refresh would change (the operators' dry run). A broker that cannot be
    /// fetched contributes the catalog in use; its error is returned beside the merge.
    pub async fn candidate(&self) -> (Catalog, Vec<(String, String)>) {
        let held: Vec<Option<Arc<HeldCatalog>>> = {
            let states = self.states.lock().await;
            states.iter().map(|s| s.catalog.clone()).collect()
        };
        let mut errors = Vec::new();
        let mut fetched: Vec<(Arc<UpstreamBroker>, Option<Arc<HeldCatalog>>)> = Vec::new();
        for (broker, held) in self.brokers.iter().zip(held) {
            let call = CallHeaders {
                request_identity: uuid::Uuid::new_v4().to_string(),
                operation: "catalog",
                ..CallHeaders::default()
            };
            let fresh = match broker.fetch_catalog(&Validators::default(), &call).await {
                Ok(CatalogFetch::Fetched { body, validators }) => {
                    match validate_bounded(broker.name(), &body, &broker.settings().catalog_limits) {
                        Ok(validated) => Some(Arc::new(HeldCatalog {
                            validated,
                            validators,
                            digest: Sha256::digest(&body).into(),
                        })),
                        Err(e) => {
                            errors.push((broker.name().to_owned(), error_chain(&e)));
                            None
                        }
                    }
                }
                Ok(CatalogFetch::NotModified) => None,
                Err(e) => {
                    errors.push((broker.name().to_owned(), error_chain(&e)));
                    None
                }
            };
            fetched.push((broker.clone(), fresh.or(held)));
        }
        let separator = self.separator.clone();
        let merged = tokio::task::spawn_blocking(move || build_merged(&fetched, &separator)).await;
        match merged {
            Ok((catalog, _)) => (Arc::unwrap_or_clone(catalog), errors),
            Err(e) => {
                errors.push(("gateway".to_owned(), format!("merge failed: {e}")));
                (Catalog::default(), errors)
            }
        }
    }

    /// Live (not orphaned) instances per gateway plan and service id.
    ///
    /// # Errors
    /// The store failed.
    pub async fn live_counts(&self) -> Result<LiveCounts, RoutingError> {
        let mut counts = LiveCounts::default();
        for record in self.store.instances().await? {
            if matches!(record.state, ResourceState::Orphaned(_)) {
                continue;
            }
            *counts.plans.entry(record.plan_id).or_default() += 1;
            *counts.services.entry(record.service_id).or_default() += 1;
        }
        Ok(counts)
    }
}

/// Live (not orphaned) instances per gateway plan id, with where they live.
async fn live_plans(store: &dyn Store) -> Result<HashMap<String, LivePlan>, RoutingError> {
    let mut live: HashMap<String, LivePlan> = HashMap::new();
    for record in store.instances().await? {
        if matches!(record.state, ResourceState::Orphaned(_)) {
            continue;
        }
        let entry = live.entry(record.plan_id).or_insert_with(|| LivePlan {
            instances: 0,
            broker: record.broker,
            upstream_service_id: record.upstream_service_id,
        });
        entry.instances += 1;
    }
    Ok(live)
}

/// A catalog's bytes and their strong ETag.
fn serialize(catalog: &Catalog) -> (Bytes, String) {
    // Serializing a `Catalog` of JSON values cannot fail; an empty body would be caught by tests.
    let body = Bytes::from(serde_json::to_vec(catalog).unwrap_or_default());
    let etag = strong_etag(&body);
    (body, etag)
}

/// What `platform` sees: each plan the policy shows it (a service with no visible plan is left out),
/// then the logical offerings. Reuses the merged bytes when nothing is hidden or added.
fn render(platform: &str, snapshot: &CatalogSnapshot, policy: &PolicyState) -> CatalogView {
    let mut services = Vec::with_capacity(snapshot.catalog.services.len() + policy.offerings.len());
    let mut changed = !policy.offerings.is_empty();
    let visible = |broker: &str, service: &Service, tags: &[String]| -> Vec<crate::catalog::Plan> {
        service
            .plans
            .iter()
            .filter(|p| {
                let facts = PlanFacts {
                    broker,
                    service: &service.name,
                    plan: &p.name,
                    tags,
                    free: p.free(),
                };
                policy.policy.visibility(platform, &facts).visible
            })
            .cloned()
            .collect()
    };
    for service in &snapshot.catalog.services {
        let broker = snapshot.routes.service(&service.id).map_or("", |r| &*r.broker);
        let plans = visible(broker, service, &service.tags());
        if plans.len() != service.plans.len() {
            changed = true;
        }
        if !plans.is_empty() {
            services.push(Service {
                plans,
                ..service.clone()
            });
        }
    }
    for offering in &policy.offerings {
        let plans = visible("gateway", offering, &offering.tags());
        if !plans.is_empty() {
            services.push(Service {
                plans,
                ..offering.clone()
            });
        }
    }
    if !changed {
        return CatalogView {
            generation: snapshot.generation,
            policy_generation: policy.generation,
            body: snapshot.body.clone(),
            etag: snapshot.etag.clone(),
        };
    }
    let catalog = Catalog {
        services,
        extra: serde_json::Map::new(),
    };
    let body = Bytes::from(serde_json::to_vec(&catalog).unwrap_or_default());
    CatalogView {
        generation: snapshot.generation,
        policy_generation: policy.generation,
        etag: strong_etag(&body),
        body,
    }
}

/// Merges and logs what the merge dropped or warns about.
fn build_merged(
    held: &[(Arc<UpstreamBroker>, Option<Arc<HeldCatalog>>)],
    separator: &str,
) -> (Arc<Catalog>, Arc<RouteTable>) {
    let inputs: Vec<BrokerCatalog<'_>> = held
        .iter()
        .filter_map(|(broker, catalog)| {
            catalog.as_ref().map(|c| BrokerCatalog {
                broker: broker.settings(),
                services: &c.validated.services,
            })
        })
        .collect();
    let merged = merge(&inputs, separator);
    for (broker, dropped) in &merged.dropped {
        warn!(broker = %broker, what = %dropped.what, reason = %dropped.reason, "Dropped from the merged catalog.");
    }
    for w in &merged.warnings {
        warn!(broker = %w.broker, service = %w.service, warning = %w.message, "Catalog entry some platforms will reject.");
    }
    (Arc::new(merged.catalog), Arc::new(merged.routes))
}

/// The catalog of `broker` the store holds, if it is usable (within the broker's limits: a
/// catalog persisted before a limit was lowered is left aside, and the broker waits for a new one).
async fn load_persisted(store: &dyn Store, settings: &BrokerSettings) -> Option<(HeldCatalog, u64)> {
    let broker = settings.name.as_str();
    let stored = match store.load_catalog(broker).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return None,
        Err(e) => {
            warn!(broker, error = %e, "Could not load the persisted catalog.");
            return None;
        }
    };
    let (name, limits, body) = (broker.to_owned(), settings.catalog_limits, stored.body.clone());
    let validated = tokio::task::spawn_blocking(move || validate_bounded(&name, &body, &limits))
        .await
        .unwrap_or_else(|join| {
            Err(RoutingError::InvalidCatalog {
                broker: broker.to_owned(),
                reason: format!("validation task failed: {join}"),
            })
        });
    match validated {
        Ok(validated) => {
            let digest = Sha256::digest(&stored.body).into();
            info!(
                broker,
                services = validated.services.len(),
                "Loaded the persisted catalog."
            );
            Some((
                HeldCatalog {
                    validated,
                    validators: stored.validators,
                    digest,
                },
                stored.fetched_at_ms,
            ))
        }
        Err(e) => {
            warn!(broker, error = %e, "Ignoring an unusable persisted catalog.");
            None
        }
    }
}

fn empty_snapshot() -> CatalogSnapshot {
    let body = Bytes::from_static(b"{\"services\":[]}");
    CatalogSnapshot {
        generation: 0,
        catalog: Arc::new(Catalog::default()),
        etag: strong_etag(&body),
        body,
        routes: Arc::new(RouteTable::default()),
        brokers: Vec::new(),
        availability: Availability::Starting { missing: Vec::new() },
        held: Arc::new(Vec::new()),
    }
}

fn count_into(status: &mut BrokerStatus, validated: &Validated) {
    status.services = validated.services.len();
    status.plans = validated.services.iter().map(|s| s.plans.len()).sum();
    status.dropped = validated.dropped.len();
}

/// `"<32 hex digits of SHA-256>"`: identical bytes give identical ETags on every replica.
pub fn strong_etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut etag = String::with_capacity(34);
    etag.push('"');
    for byte in digest.iter().take(16) {
        etag.push_str(&format!("{byte:02x}"));
    }
    etag.push('"');
    etag
}

/// Retry delay after `failures` consecutive failures: 1 s doubling, at most the refresh interval
/// and at most 60 s.
fn backoff(failures: u32, interval: Duration) -> Duration {
    let exp = Duration::from_secs(1u64 << failures.saturating_sub(1).min(6));
    exp.min(interval).min(Duration::from_secs(60))
}

/// The error and its sources, `: `-joined (reqwest hides the useful part in a source).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(1, hour), Duration::from_secs(1));
        assert_eq!(backoff(2, hour), Duration::from_secs(2));
        assert_eq!(backoff(5, hour), Duration::from_secs(16));
        assert_eq!(backoff(30, hour), Duration::from_secs(60));
        assert_eq!(backoff(30, Duration::from_secs(5)), Duration::from_secs(5));
    }

    #[test]
    fn etags_are_strong_and_content_addressed() {
        let a = strong_etag(b"{}");
        assert_eq!(a.len(), 34);
        assert!(a.starts_with('"') && a.ends_with('"'));
        assert_eq!(a, strong_etag(b"{}"));
        assert_ne!(a, strong_etag(b"{ }"));
    }
}
