//! The upstream brokers the gateway places calls on: one [`UpstreamBroker`] client each (with its
//! circuit breaker), looked up by name, and whether each is healthy enough to take new calls.
//!
//! Health is the breaker's state and the broker's catalog: a broker whose last catalog refresh
//! failed, or that never delivered one, takes no new placements (the catalog cache reports each
//! refresh here, see [`Brokers::set_catalog_current`]).
//!
//! The set changes on a configuration reload ([`Brokers::reconfigure`]): swapped whole, so a call
//! that looked a broker up keeps that client until it finishes. A broker whose settings did not
//! change keeps its client (connections, breaker, credentials in use).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use osb_config::{BrokerSettings, Settings};

use crate::RoutingError;
use crate::upstream::UpstreamBroker;

/// One configured broker.
#[derive(Debug)]
struct Entry {
    client: Arc<UpstreamBroker>,
    /// The broker has a catalog and its last refresh succeeded.
    catalog_current: Arc<AtomicBool>,
}

/// What a reconfiguration changed, by broker name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BrokerChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Same name, other settings (URL, credentials, TLS, limits…): a new client.
    pub changed: Vec<String>,
}

impl BrokerChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Brokers {
    set: ArcSwap<Vec<Entry>>,
}

fn entry(settings: &BrokerSettings) -> Result<Entry, RoutingError> {
    Ok(Entry {
        client: Arc::new(UpstreamBroker::new(settings)?),
        catalog_current: Arc::new(AtomicBool::new(false)),
    })
}

impl Brokers {
    /// One client per configured broker, in the settings' order.
    ///
    /// # Errors
    /// A broker's HTTP client cannot be built.
    pub fn new(settings: &Settings) -> Result<Self, RoutingError> {
        let entries = settings
            .brokers
            .iter()
            .map(entry)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Brokers {
            set: ArcSwap::from_pointee(entries),
        })
    }

    /// Replaces the set with `brokers` (in that order): unchanged brokers keep their client, the
    /// others get a new one. Nothing changes if a client cannot be built.
    ///
    /// # Errors
    /// A broker's HTTP client cannot be built.
    pub fn reconfigure(&self, brokers: &[BrokerSettings]) -> Result<BrokerChanges, RoutingError> {
        let old = self.set.load_full();
        let mut changes = BrokerChanges::default();
        let mut next = Vec::with_capacity(brokers.len());
        for settings in brokers {
            match old.iter().find(|e| e.client.name() == settings.name) {
                Some(kept) if kept.client.settings() == settings => next.push(Entry {
                    client: kept.client.clone(),
                    catalog_current: kept.catalog_current.clone(),
                }),
                Some(_) => {
                    // The catalog in use stays until the new client's first refresh.
                    let fresh = entry(settings)?;
                    if let Some(kept) = old.iter().find(|e| e.client.name() == settings.name) {
                        fresh
                            .catalog_current
                            .store(kept.catalog_current.load(Ordering::Relaxed), Ordering::Relaxed);
                    }
                    changes.changed.push(settings.name.clone());
                    next.push(fresh);
                }
                None => {
                    changes.added.push(settings.name.clone());
                    next.push(entry(settings)?);
                }
            }
        }
        changes.removed = old
            .iter()
            .map(|e| e.client.name().to_owned())
            .filter(|name| !brokers.iter().any(|b| &b.name == name))
            .collect();
        self.set.store(Arc::new(next));
        Ok(changes)
    }

    /// The broker named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<UpstreamBroker>> {
        self.set
            .load()
            .iter()
            .find(|e| e.client.name() == name)
            .map(|e| e.client.clone())
    }

    /// Every broker, in the settings' order.
    pub fn clients(&self) -> Vec<Arc<UpstreamBroker>> {
        self.set.load().iter().map(|e| e.client.clone()).collect()
    }

    /// Whether calls may be placed on `broker`: its circuit is not open and its catalog is current.
    pub fn is_healthy(&self, broker: &str) -> bool {
        self.set
            .load()
            .iter()
            .find(|e| e.client.name() == broker)
            .is_some_and(|e| !e.client.is_open() && e.catalog_current.load(Ordering::Relaxed))
    }

    /// Records whether `broker`'s catalog is current (it has one and its last refresh succeeded).
    pub fn set_catalog_current(&self, broker: &str, current: bool) {
        if let Some(e) = self.set.load().iter().find(|e| e.client.name() == broker) {
            e.catalog_current.store(current, Ordering::Relaxed);
        }
    }
}
