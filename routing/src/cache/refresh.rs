//! Refreshing one broker's catalog: a conditional fetch, validation within the broker's limits (on
//! the blocking pool), persistence of the last good body, and the backoff after failures. Also the
//! operators' dry run, [`CatalogCache::candidate`]: every catalog fetched now and merged, not applied.

use std::sync::Arc;
use std::time::Duration;

use osb_config::BrokerSettings;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::publish::build_merged;
use super::{CatalogCache, CatalogSource, Freshness, HeldCatalog, count_into};
use crate::RoutingError;
use crate::catalog::{Catalog, validate_bounded};
use crate::clock::now_ms;
use crate::error::error_chain;
use crate::store::{Store, StoredCatalog};
use crate::upstream::{CallHeaders, CatalogFetch, UpstreamBroker, Validators};

impl CatalogCache {
    /// Refreshes `broker` every 0.8 × its refresh interval (sooner after a failure, with backoff,
    /// or when woken), until it leaves the configuration.
    pub(super) async fn refresh_loop(&self, broker: &str, wake: &tokio::sync::Notify) {
        loop {
            let Some(interval) = self.brokers.get(broker).map(|b| b.settings().refresh_interval) else {
                return;
            };
            let delay = match self.refresh(broker).await {
                Ok(()) => interval.mul_f64(0.8),
                Err(failures) => backoff(failures, interval),
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = wake.notified() => {}
            }
        }
    }

    /// Refreshes `name` once. `Err` carries the number of consecutive failures.
    pub(super) async fn refresh(&self, name: &str) -> Result<(), u32> {
        let (broker, held) = {
            let states = self.states.lock().await;
            match states.iter().find(|s| s.status.name == name) {
                Some(state) => (state.client.clone(), state.catalog.clone()),
                None => return Ok(()),
            }
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
                    let owned_name = broker.name().to_owned();
                    let parse_body = body.clone();
                    let limits = broker.settings().catalog_limits;
                    let validated = tokio::task::spawn_blocking(move || {
                        validate_bounded(&owned_name, &parse_body, &limits)
                    })
                    .await;
                    match validated {
                        Ok(Ok(validated)) => Some((validated, validators, digest, body, limits)),
                        Ok(Err(e)) => return Err(self.record_failure(name, &e).await),
                        Err(join) => {
                            let e = RoutingError::InvalidCatalog {
                                broker: broker.name().to_owned(),
                                reason: format!("validation task failed: {join}"),
                            };
                            return Err(self.record_failure(name, &e).await);
                        }
                    }
                }
            }
            Err(e) => return Err(self.record_failure(name, &e).await),
        };

        let now = now_ms();
        let mut states = self.states.lock().await;
        let Some(state) = states.iter_mut().find(|s| s.status.name == name) else {
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
                false
            }
            Some((validated, validators, digest, body, limits)) => {
                for dropped in &validated.dropped {
                    warn!(broker = broker.name(), what = %dropped.what, reason = %dropped.reason, "Dropped from the catalog.");
                }
                let held = HeldCatalog::new(&validated, body.clone(), limits, validators.clone(), digest);
                drop(validated);
                count_into(&mut state.status, &held);
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
                state.catalog = Some(Arc::new(held));
                true
            }
        };
        self.publish(&states, changed).await;
        Ok(())
    }

    pub(super) async fn record_failure(&self, name: &str, error: &RoutingError) -> u32 {
        let mut states = self.states.lock().await;
        let Some(state) = states.iter_mut().find(|s| s.status.name == name) else {
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
        self.publish(&states, false).await;
        failures
    }

    /// Every broker's catalog fetched now (not applied, not persisted) and merged as the gateway
    /// would: what a refresh would change (the operators' dry run). A broker that cannot be
    /// fetched contributes the catalog in use; its error is returned beside the merge.
    pub async fn candidate(&self) -> (Catalog, Vec<(String, String)>) {
        let held: Vec<(Arc<UpstreamBroker>, Option<Arc<HeldCatalog>>)> = {
            let states = self.states.lock().await;
            states
                .iter()
                .map(|s| (s.client.clone(), s.catalog.clone()))
                .collect()
        };
        let mut errors = Vec::new();
        let mut fetched: Vec<(Arc<UpstreamBroker>, Option<Arc<HeldCatalog>>)> = Vec::new();
        for (broker, held) in held {
            let call = CallHeaders {
                request_identity: uuid::Uuid::new_v4().to_string(),
                operation: "catalog",
                ..CallHeaders::default()
            };
            let fresh = match broker.fetch_catalog(&Validators::default(), &call).await {
                Ok(CatalogFetch::Fetched { body, validators }) => {
                    let limits = broker.settings().catalog_limits;
                    match validate_bounded(broker.name(), &body, &limits) {
                        Ok(validated) => {
                            let digest = Sha256::digest(&body).into();
                            Some(Arc::new(HeldCatalog::new(
                                &validated, body, limits, validators, digest,
                            )))
                        }
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
}

/// The catalog of `broker` the store holds, if it is usable (within the broker's limits: a
/// catalog persisted before a limit was lowered is left aside, and the broker waits for a new one).
pub(super) async fn load_persisted(
    store: &dyn Store,
    settings: &BrokerSettings,
) -> Option<(HeldCatalog, u64)> {
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
                HeldCatalog::new(&validated, stored.body, limits, stored.validators, digest),
                stored.fetched_at_ms,
            ))
        }
        Err(e) => {
            warn!(broker, error = %e, "Ignoring an unusable persisted catalog.");
            None
        }
    }
}

/// Retry delay after `failures` consecutive failures: 1 s doubling, at most the refresh interval
/// and at most 60 s.
fn backoff(failures: u32, interval: Duration) -> Duration {
    let exp = Duration::from_secs(1u64 << failures.saturating_sub(1).min(6));
    exp.min(interval).min(Duration::from_secs(60))
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
}
