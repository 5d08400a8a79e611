//! Plans the catalog guard holds back (their broker dropped them while they have live instances):
//! the catalog last served and the operators' confirmations kept in the store, the re-checks that
//! release a plan once its instances are gone, and live instance counts for the admin API.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use tracing::warn;

use super::CatalogCache;
use super::publish::Publish;
use crate::RoutingError;
use crate::catalog::{HeldPlan, LiveCounts};
use crate::clock::now_ms;
use crate::store::StoredCatalog;
use crate::upstream::Validators;

/// Store key of the catalog last served (what the guard compares the next merge with).
pub(super) const SERVED_KEY: &str = "@served";
/// Store key of the removals operators confirmed (JSON list of plan or service ids).
pub(super) const CONFIRMED_KEY: &str = "@confirmed";
/// How often held plans are re-checked without being told that instances changed.
const HELD_RECHECK_EVERY: Duration = Duration::from_secs(10);

impl CatalogCache {
    /// Saves the catalog now served (the next start's guard compares with it).
    pub(super) async fn save_served(&self, body: &Bytes) {
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
    pub(super) async fn load_confirmed(&self) {
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

    pub(super) async fn recheck_loop(&self) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(HELD_RECHECK_EVERY) => {}
                () = self.recheck.notified() => {}
            }
            self.recheck_held().await;
        }
    }

    /// Live (not orphaned) instances per gateway plan and service id.
    ///
    /// # Errors
    /// The store failed.
    pub async fn live_counts(&self) -> Result<LiveCounts, RoutingError> {
        let mut counts = LiveCounts::default();
        for count in self.store.live_plans().await? {
            let n = usize::try_from(count.instances).unwrap_or(usize::MAX);
            *counts.plans.entry(count.plan_id).or_default() += n;
            *counts.services.entry(count.service_id).or_default() += n;
        }
        Ok(counts)
    }
}
