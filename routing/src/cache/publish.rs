//! Publishing a new [`CatalogSnapshot`]: the brokers' catalogs merged (on the blocking pool), passed
//! through the catalog guard, serialized once with a strong ETag, and swapped in. A status-only
//! publish keeps the catalog and its generation.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{info, warn};

use super::view::strong_etag;
use super::{Availability, BrokerState, CatalogCache, CatalogSnapshot, Freshness, HeldCatalog};
use crate::RoutingError;
use crate::catalog::{BrokerCatalog, Catalog, HeldPlan, LivePlan, RouteTable, guard, merge, removes_plans};
use crate::clock::now_ms;
use crate::store::Store;
use crate::upstream::UpstreamBroker;

/// What a publish recomputes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Publish {
    /// Broker statuses only (the catalog stays).
    Status,
    /// Merge the brokers' catalogs again (one changed), then guard.
    Merge,
    /// Guard the last merge again (instances changed, a removal was confirmed).
    Recheck,
}

impl CatalogCache {
    /// Publishes a new snapshot. `changed`: a broker's catalog changed, or the brokers did (merge
    /// again); otherwise the merged catalog stays and statuses are updated. The first call always
    /// merges.
    pub(super) async fn publish(&self, states: &[BrokerState], changed: bool) {
        let mode = if changed { Publish::Merge } else { Publish::Status };
        self.publish_as(states, mode).await;
    }

    pub(super) async fn publish_as(&self, states: &[BrokerState], mode: Publish) {
        let previous = self.snapshot.load_full();
        let missing: Vec<String> = states
            .iter()
            .filter(|s| s.catalog.is_none())
            .map(|s| s.status.name.clone())
            .collect();
        let availability = if missing.is_empty() {
            Availability::Complete
        } else if Instant::now() >= self.grace_deadline
            || !matches!(previous.availability, Availability::Starting { .. })
        {
            // Once served, the catalog is not withheld again (a broker a reload added is missing).
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
        for state in states {
            let current =
                state.status.consecutive_failures == 0 && state.status.freshness != Freshness::Pending;
            self.brokers.set_catalog_current(&state.status.name, current);
        }
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
    pub(super) async fn merge(&self, states: &[BrokerState]) -> Option<(Arc<Catalog>, Arc<RouteTable>)> {
        let held: Vec<(Arc<UpstreamBroker>, Option<Arc<HeldCatalog>>)> = states
            .iter()
            .map(|s| (s.client.clone(), s.catalog.clone()))
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
    pub(super) async fn guard(
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
}

/// Live (not orphaned) instances per gateway plan id, with where they live (counted by the
/// store, which holds no more than one record in memory at a time to do it).
pub(super) async fn live_plans(store: &dyn Store) -> Result<HashMap<String, LivePlan>, RoutingError> {
    let mut live: HashMap<String, LivePlan> = HashMap::new();
    for count in store.live_plans().await? {
        let entry = live.entry(count.plan_id).or_insert_with(|| LivePlan {
            instances: 0,
            broker: count.broker,
            upstream_service_id: count.upstream_service_id,
        });
        entry.instances += usize::try_from(count.instances).unwrap_or(usize::MAX);
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

/// Merges and logs what the merge dropped or warns about.
pub(super) fn build_merged(
    held: &[(Arc<UpstreamBroker>, Option<Arc<HeldCatalog>>)],
    separator: &str,
) -> (Arc<Catalog>, Arc<RouteTable>) {
    // Parsed again from the bytes held (the catalogs are kept as bytes between merges).
    let validated: Vec<_> = held
        .iter()
        .filter_map(|(broker, catalog)| {
            let catalog = catalog.as_ref()?;
            match catalog.validated(broker.name()) {
                Ok(validated) => Some((broker, validated)),
                Err(e) => {
                    warn!(broker = broker.name(), error = %e, "A held catalog no longer validates; left out of the merge.");
                    None
                }
            }
        })
        .collect();
    let inputs: Vec<BrokerCatalog<'_>> = validated
        .iter()
        .map(|(broker, validated)| BrokerCatalog {
            broker: broker.settings(),
            services: &validated.services,
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
