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
//!
//! # Layout
//! - this file: the snapshot types, [`CatalogCache`], its construction and the background tasks;
//! - `refresh`: fetching one broker's catalog (conditional), validating and persisting it, and the
//!   operators' dry run ([`CatalogCache::candidate`]);
//! - `publish`: merging the brokers' catalogs into a new [`CatalogSnapshot`] through the guard;
//! - `held`: plans held back by the guard, confirmations of their removal, live instance counts;
//! - `view`: what one platform is served, rendered once per catalog and policy generation.

mod held;

/// The store keys of the catalogs the guard keeps besides each broker's (the catalog last served,
/// the removals confirmed): a backup of the store takes them too.
pub const GUARD_CATALOG_KEYS: [&str; 2] = [held::SERVED_KEY, held::CONFIRMED_KEY];

mod publish;
mod refresh;
mod view;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use osb_config::{CatalogLimits, Settings};
use serde::Serialize;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

use crate::RoutingError;
use crate::brokers::Brokers;
use crate::catalog::{Catalog, HeldPlan, RouteTable, Validated, validate_bounded};
use crate::policy::PolicyState;
use crate::store::Store;
use crate::upstream::{UpstreamBroker, Validators};

pub use self::view::{CatalogView, strong_etag};

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

/// `GET /v2/catalog` cannot be answered yet.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the catalogs of {} are not in yet", missing.join(", "))]
pub struct Unavailable {
    pub missing: Vec<String>,
}

/// A broker's validated catalog, kept as its bytes (a parsed catalog takes several times its size
/// in memory, and is needed only when the catalogs are merged again), and what identifies them.
#[derive(Debug)]
struct HeldCatalog {
    body: Bytes,
    /// The limits it was validated within (a reload may change the broker's).
    limits: CatalogLimits,
    validators: Validators,
    digest: [u8; 32],
    services: usize,
    plans: usize,
    dropped: usize,
}

impl HeldCatalog {
    /// `body`, which `validated` came from within `limits`.
    fn new(
        validated: &Validated,
        body: Bytes,
        limits: CatalogLimits,
        validators: Validators,
        digest: [u8; 32],
    ) -> Self {
        HeldCatalog {
            body,
            limits,
            validators,
            digest,
            services: validated.services.len(),
            plans: validated.services.iter().map(|s| s.plans.len()).sum(),
            dropped: validated.dropped.len(),
        }
    }

    /// The catalog validated again (as when it was held: same bytes, same limits), to be merged.
    ///
    /// # Errors
    /// Not expected: these bytes passed the same validation before.
    fn validated(&self, broker: &str) -> Result<Validated, RoutingError> {
        validate_bounded(broker, &self.body, &self.limits)
    }
}

#[derive(Debug)]
struct BrokerState {
    /// The client this state's catalog is fetched with (a reload may replace it).
    client: Arc<UpstreamBroker>,
    catalog: Option<Arc<HeldCatalog>>,
    status: BrokerStatus,
}

impl BrokerState {
    /// A broker's state at start or when a reload adds it: its persisted catalog, if usable.
    async fn load(client: Arc<UpstreamBroker>, store: &dyn Store) -> Self {
        let mut status = BrokerStatus {
            name: client.name().to_owned(),
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
        let catalog = match refresh::load_persisted(store, client.settings()).await {
            Some((held, fetched_at_ms)) => {
                status.freshness = Freshness::Stale;
                status.source = Some(CatalogSource::Store);
                status.fetched_at_ms = Some(fetched_at_ms);
                count_into(&mut status, &held);
                Some(Arc::new(held))
            }
            None => None,
        };
        BrokerState {
            client,
            catalog,
            status,
        }
    }
}

/// Each broker's refresher by broker name: what wakes it, and its task once started.
type Refreshers = HashMap<String, (Arc<Notify>, Option<JoinHandle<()>>)>;

/// See the module docs.
pub struct CatalogCache {
    brokers: Arc<Brokers>,
    separator: String,
    store: Arc<dyn Store>,
    grace_deadline: Instant,
    /// One per broker, in the configuration's order. Held across a merge so merges never
    /// interleave.
    states: Mutex<Vec<BrokerState>>,
    snapshot: ArcSwap<CatalogSnapshot>,
    views: moka::sync::Cache<String, Arc<CatalogView>>,
    /// Each broker's refresher: what wakes it, and its task.
    refreshers: std::sync::Mutex<Refreshers>,
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
    /// [`CatalogCache::stop`] was called: no refresher starts any more.
    stopped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for CatalogCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogCache")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl CatalogCache {
    /// Builds the cache of `brokers`' catalogs, loading every broker's persisted catalog. A
    /// persisted catalog that fails to load is logged and skipped.
    pub async fn new(settings: &Settings, store: Arc<dyn Store>, brokers: Arc<Brokers>) -> Arc<Self> {
        let mut states = Vec::new();
        for client in brokers.clients() {
            states.push(BrokerState::load(client, store.as_ref()).await);
        }
        let refreshers = states
            .iter()
            .map(|s| (s.status.name.clone(), (Arc::new(Notify::new()), None)))
            .collect();
        let served_before = match store.load_catalog(held::SERVED_KEY).await {
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
            grace_deadline: Instant::now() + settings.catalog.startup_grace,
            states: Mutex::new(Vec::new()),
            snapshot: ArcSwap::from_pointee(empty_snapshot()),
            views: moka::sync::Cache::new(10_000),
            refreshers: std::sync::Mutex::new(refreshers),
            generation: AtomicU64::new(0),
            view_hits: AtomicU64::new(0),
            view_misses: AtomicU64::new(0),
            last_merged: std::sync::Mutex::new(None),
            served_before: std::sync::Mutex::new(served_before),
            confirmed: std::sync::Mutex::new(HashSet::new()),
            recheck: Notify::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        };
        cache.load_confirmed().await;
        cache.publish(&states, false).await;
        *cache.states.lock().await = states;
        Arc::new(cache)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.snapshot.load_full()
    }

    /// The catalog `platform` is served: body and ETag.
    ///
    /// # Errors
    /// [`Unavailable`] during start-up while a broker's first catalog is still missing.
    pub fn view(&self, platform: &str, policy: &PolicyState) -> Result<Arc<CatalogView>, Unavailable> {
        let snapshot = self.snapshot.load();
        if let Availability::Starting { missing } = &snapshot.availability {
            return Err(Unavailable {
                missing: missing.clone(),
            });
        }
        let current = |v: &Arc<CatalogView>| {
            v.generation == snapshot.generation && v.policy_generation == policy.generation
        };
        if let Some(view) = self.views.get(platform).filter(current) {
            self.view_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(view);
        }
        self.view_misses.fetch_add(1, Ordering::Relaxed);
        let view = Arc::new(view::render(platform, &snapshot, policy));
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

    /// Asks the refresher of `name` (or of every broker, for `None`) to refresh now.
    /// Returns `false` for an unknown broker.
    pub fn request_refresh(&self, name: Option<&str>) -> bool {
        let mut found = false;
        for (broker, (wake, _)) in self.refreshers().iter() {
            if name.is_none_or(|n| n == broker) {
                wake.notify_one();
                found = true;
            }
        }
        found
    }

    fn refreshers(&self) -> std::sync::MutexGuard<'_, Refreshers> {
        self.refreshers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the refresher of `broker` (replacing one running).
    fn start_refresher(self: &Arc<Self>, broker: &str) {
        // Decided under the lock `stop` takes, so no refresher starts after it.
        let mut refreshers = self.refreshers();
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let wake = Arc::new(Notify::new());
        let cache = Arc::clone(self);
        let (name, woken) = (broker.to_owned(), wake.clone());
        let task = tokio::spawn(async move { cache.refresh_loop(&name, &woken).await });
        if let Some((_, Some(old))) = refreshers.insert(broker.to_owned(), (wake, Some(task))) {
            old.abort();
        }
    }

    /// Starts one refresher per broker, the start-up grace timer and the re-check of held plans.
    /// [`CatalogCache::stop`] stops the refreshers (also those a reload started); abort the handles
    /// returned to stop the rest.
    pub fn spawn_refreshers(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let names: Vec<String> = self.refreshers().keys().cloned().collect();
        for name in names {
            self.start_refresher(&name);
        }
        let mut handles = Vec::new();
        let cache = Arc::clone(self);
        handles.push(tokio::spawn(async move { cache.recheck_loop().await }));
        let cache = Arc::clone(self);
        handles.push(tokio::spawn(async move {
            tokio::time::sleep_until(cache.grace_deadline).await;
            let states = cache.states.lock().await;
            cache.publish(&states, false).await;
            if let Availability::Partial { missing } = &cache.snapshot().availability {
                warn!(missing = %missing.join(","), "Start-up grace ran out; serving the catalog without these brokers.");
            }
        }));
        handles
    }

    /// Stops every broker's refresher, for good (a reload after this starts none).
    pub fn stop(&self) {
        let mut refreshers = self.refreshers();
        self.stopped.store(true, Ordering::Release);
        for (_, (_, task)) in refreshers.iter_mut() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
    }

    /// Follows a reload of the brokers (see [`Brokers::reconfigure`]): a broker added gets its
    /// persisted catalog (if the store has one) and a refresher that fetches at once; a broker
    /// removed leaves the merge (the catalog guard holds its plans that have live instances); a
    /// broker changed keeps serving its catalog until its new client's first refresh. The
    /// catalog is merged again once; the new brokers' services appear when their catalogs arrive.
    pub async fn reconfigure(self: &Arc<Self>) {
        let clients = self.brokers.clients();
        let mut states = self.states.lock().await;
        let mut old: HashMap<String, BrokerState> =
            states.drain(..).map(|s| (s.status.name.clone(), s)).collect();
        let mut restart = Vec::new();
        for client in clients {
            let name = client.name().to_owned();
            let state = match old.remove(&name) {
                Some(state) if Arc::ptr_eq(&state.client, &client) => state,
                Some(mut state) => {
                    state.client = client;
                    restart.push(name);
                    state
                }
                None => {
                    restart.push(name);
                    BrokerState::load(client, self.store.as_ref()).await
                }
            };
            states.push(state);
        }
        // Stopped while the states are held: a refresh of a removed or changed broker that was
        // waiting for them must not write what the old client fetched.
        for name in old.keys() {
            if let Some((_, Some(task))) = self.refreshers().remove(name) {
                task.abort();
            }
        }
        for name in &restart {
            if let Some((_, task)) = self.refreshers().get_mut(name) {
                if let Some(task) = task.take() {
                    task.abort();
                }
            }
        }
        self.publish(&states, true).await;
        drop(states);
        for name in &restart {
            self.start_refresher(name);
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

fn count_into(status: &mut BrokerStatus, held: &HeldCatalog) {
    status.services = held.services;
    status.plans = held.plans;
    status.dropped = held.dropped;
}
