//! The upstream brokers the gateway places calls on: one [`UpstreamBroker`] client each (with its
//! circuit breaker), looked up by name, and whether each is healthy enough to take new calls.
//!
//! Health is the breaker's state and the broker's catalog: a broker whose last catalog refresh
//! failed, or that never delivered one, takes no new placements (the catalog cache reports each
//! refresh here, see [`Brokers::set_catalog_current`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use osb_config::Settings;

use crate::RoutingError;
use crate::upstream::UpstreamBroker;

/// See the module docs.
#[derive(Debug)]
pub struct Brokers {
    clients: Vec<Arc<UpstreamBroker>>,
    /// Index-aligned with `clients`: the broker has a catalog and its last refresh succeeded.
    catalog_current: Vec<AtomicBool>,
}

impl Brokers {
    /// One client per configured broker, in the settings' order.
    ///
    /// # Errors
    /// A broker's HTTP client cannot be built.
    pub fn new(settings: &Settings) -> Result<Self, RoutingError> {
        let clients = settings
            .brokers
            .iter()
            .map(|b| UpstreamBroker::new(b).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let catalog_current = clients.iter().map(|_| AtomicBool::new(false)).collect();
        Ok(Brokers {
            clients,
            catalog_current,
        })
    }

    /// The broker named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<UpstreamBroker>> {
        self.clients.iter().find(|b| b.name() == name)
    }

    /// Every broker, in the settings' order.
    pub fn clients(&self) -> &[Arc<UpstreamBroker>] {
        &self.clients
    }

    /// Whether calls may be placed on `broker`: its circuit is not open and its catalog is current.
    pub fn is_healthy(&self, broker: &str) -> bool {
        self.clients
            .iter()
            .zip(&self.catalog_current)
            .find(|(client, _)| client.name() == broker)
            .is_some_and(|(client, current)| !client.is_open() && current.load(Ordering::Relaxed))
    }

    /// Records whether broker `index`'s catalog is current (it has one and its last refresh
    /// succeeded).
    pub fn set_catalog_current(&self, index: usize, current: bool) {
        if let Some(flag) = self.catalog_current.get(index) {
            flag.store(current, Ordering::Relaxed);
        }
    }
}
