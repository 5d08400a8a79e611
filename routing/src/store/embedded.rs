//! The embedded store: one redb file, durable on commit, zero setup.
//!
//! redb is synchronous, so every call runs on tokio's blocking pool. The file is locked by the
//! process that opened it: one gateway per file.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Store, StoredCatalog};
use crate::RoutingError;
use crate::upstream::Validators;

/// broker name → raw catalog body.
const CATALOG_BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog_bodies");
/// broker name → [`CatalogMeta`] as JSON.
const CATALOG_META: TableDefinition<&str, &str> = TableDefinition::new("catalog_meta");

#[derive(Serialize, Deserialize)]
struct CatalogMeta {
    etag: Option<String>,
    last_modified: Option<String>,
    fetched_at_ms: u64,
}

/// The redb-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish()
    }
}

fn store_error(context: &str, e: impl std::fmt::Display) -> RoutingError {
    RoutingError::Store(format!("{context}: {e}"))
}

impl EmbeddedStore {
    /// Opens (creating it and its folder if needed) the store file at `path`.
    ///
    /// # Errors
    /// [`RoutingError::Store`] when the file cannot be created, is locked by another process, or is
    /// not a redb file.
    pub async fn open(path: PathBuf) -> Result<Self, RoutingError> {
        let shown = path.display().to_string();
        let opened = path.clone();
        let db = tokio::task::spawn_blocking(move || {
            if let Some(parent) = opened.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| store_error(&format!("create {}", parent.display()), e))?;
            }
            let db = Database::create(&opened).map_err(|e| store_error(&format!("open {shown}"), e))?;
            // Create the tables once so readers never meet a missing table.
            let txn = db.begin_write().map_err(|e| store_error("begin", e))?;
            txn.open_table(CATALOG_BODIES)
                .map_err(|e| store_error("open table", e))?;
            txn.open_table(CATALOG_META)
                .map_err(|e| store_error("open table", e))?;
            txn.commit().map_err(|e| store_error("commit", e))?;
            Ok::<_, RoutingError>(db)
        })
        .await
        .map_err(|e| store_error("open task", e))??;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, RoutingError> + Send + 'static,
    ) -> Result<T, RoutingError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| store_error("task", e))?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn load_catalog(&self, broker: &str) -> Result<Option<StoredCatalog>, RoutingError> {
        let broker = broker.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
            let bodies = txn
                .open_table(CATALOG_BODIES)
                .map_err(|e| store_error("open table", e))?;
            let metas = txn
                .open_table(CATALOG_META)
                .map_err(|e| store_error("open table", e))?;
            let body = bodies.get(broker.as_str()).map_err(|e| store_error("read", e))?;
            let meta = metas.get(broker.as_str()).map_err(|e| store_error("read", e))?;
            let (Some(body), Some(meta)) = (body, meta) else {
                return Ok(None);
            };
            let meta: CatalogMeta =
                serde_json::from_str(meta.value()).map_err(|e| store_error("decode catalog meta", e))?;
            Ok(Some(StoredCatalog {
                body: Bytes::copy_from_slice(body.value()),
                validators: Validators {
                    etag: meta.etag,
                    last_modified: meta.last_modified,
                },
                fetched_at_ms: meta.fetched_at_ms,
            }))
        })
        .await
    }

    async fn save_catalog(&self, broker: &str, catalog: StoredCatalog) -> Result<(), RoutingError> {
        let broker = broker.to_owned();
        self.blocking(move |db| {
            let meta = CatalogMeta {
                etag: catalog.validators.etag,
                last_modified: catalog.validators.last_modified,
                fetched_at_ms: catalog.fetched_at_ms,
            };
            let meta = serde_json::to_string(&meta).map_err(|e| store_error("encode catalog meta", e))?;
            let txn = db.begin_write().map_err(|e| store_error("begin", e))?;
            {
                let mut bodies = txn
                    .open_table(CATALOG_BODIES)
                    .map_err(|e| store_error("open table", e))?;
                bodies
                    .insert(broker.as_str(), catalog.body.as_ref())
                    .map_err(|e| store_error("write", e))?;
                let mut metas = txn
                    .open_table(CATALOG_META)
                    .map_err(|e| store_error("open table", e))?;
                metas
                    .insert(broker.as_str(), meta.as_str())
                    .map_err(|e| store_error("write", e))?;
            }
            txn.commit().map_err(|e| store_error("commit", e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn catalogs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/gw.redb");
        let store = EmbeddedStore::open(path.clone()).await.unwrap();
        assert_eq!(store.load_catalog("azure").await.unwrap(), None);
        let saved = StoredCatalog {
            body: Bytes::from_static(b"{\"services\":[]}"),
            validators: Validators {
                etag: Some("\"v1\"".into()),
                last_modified: None,
            },
            fetched_at_ms: 42,
        };
        store.save_catalog("azure", saved.clone()).await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(path).await.unwrap();
        assert_eq!(store.load_catalog("azure").await.unwrap(), Some(saved));
        assert_eq!(store.load_catalog("aws").await.unwrap(), None);
    }
}
