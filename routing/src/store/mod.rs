//! The gateway's durable state behind one trait, so backends can be swapped.
//!
//! Today the store keeps each broker's last good catalog (so a restart during an upstream outage
//! still serves that broker's services); the ownership registry of instances and bindings joins it
//! next. Backends: [`EmbeddedStore`] (a redb file, the default). A PostgreSQL backend for several
//! replicas implements the same trait.

mod embedded;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use osb_config::StoreSettings;

pub use embedded::EmbeddedStore;

use crate::RoutingError;
use crate::upstream::Validators;

/// A broker's catalog as last fetched: the raw body and how to ask whether it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCatalog {
    pub body: Bytes,
    pub validators: Validators,
    /// When it was fetched, in milliseconds since the Unix epoch.
    pub fetched_at_ms: u64,
}

/// Durable state of the gateway. Writes are durable when the call returns.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The last good catalog saved for `broker`, if any.
    async fn load_catalog(&self, broker: &str) -> Result<Option<StoredCatalog>, RoutingError>;

    /// Replaces the saved catalog of `broker`.
    async fn save_catalog(&self, broker: &str, catalog: StoredCatalog) -> Result<(), RoutingError>;
}

/// Opens the store the settings describe.
///
/// # Errors
/// [`RoutingError::Store`] when it cannot be opened (or the kind is not built in).
pub async fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, RoutingError> {
    match settings {
        StoreSettings::Embedded { path } => Ok(Arc::new(EmbeddedStore::open(path.clone()).await?)),
        StoreSettings::Postgres { .. } => Err(RoutingError::Store(
            "the postgres store is not available in this build".to_owned(),
        )),
    }
}
