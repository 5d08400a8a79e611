//! The embedded store: one redb file, durable on commit, zero setup.
//!
//! This process is the file's only writer, so every record is also kept in memory (the mirror):
//! registry reads never touch redb. The mirror changes only after a commit succeeded.
//!
//! redb is synchronous: catalog reads run on tokio's blocking pool; writes go to one writer thread that
//! **group-commits**: it takes every write waiting, runs them one after the other in a single
//! transaction, commits once (one `fsync` for the batch), and only then answers each caller. A
//! compare-and-swap is a read and a write inside that transaction, so concurrent writers never
//! interleave. Records are stored as JSON; the orphan, pending and instance→bindings indexes are
//! updated in the same transaction. The file is locked by the process that opened it: one gateway
//! per file.
//!
//! The audit log is a table of its own (seq → record as JSON), read from redb (not mirrored: it
//! only grows), newest first.
//!
//! Orphan claims and replica heartbeats live in memory only: they describe processes using the
//! file, and after a restart no earlier process can still be working or alive. Keeping them (rather
//! than answering "everything is mine") gives this store the same semantics as the shared
//! PostgreSQL store, so the same tests run against both.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

mod batch;
mod mirror;

use self::batch::{Job, Output, Tables, set_flag, spawn_writer, swap_in};
use self::mirror::{BINDING, Change, Mirror};
use super::indexed::Indexed;
use super::{Expect, FORGET_REPLICA_AFTER_MS, RecordCounts, RecordRef, Store, StoredCatalog, Swap};
use crate::RoutingError;
use crate::audit::{AuditQuery, AuditRecord};
use crate::record::{BindingRecord, InstanceRecord};
use crate::upstream::Validators;

/// broker name → raw catalog body.
const CATALOG_BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog_bodies");
/// broker name → [`CatalogMeta`] as JSON.
const CATALOG_META: TableDefinition<&str, &str> = TableDefinition::new("catalog_meta");

/// instance id → [`InstanceRecord`] as JSON.
const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
/// binding id → [`BindingRecord`] as JSON.
const BINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");
/// "<instance id>\n<binding id>" → (): the bindings of an instance, for cascading deletes.
const INSTANCE_BINDINGS: TableDefinition<&str, ()> = TableDefinition::new("instance_bindings");
/// "i:<id>" / "b:<id>" → (): records being orphan-mitigated.
const ORPHANS: TableDefinition<&str, ()> = TableDefinition::new("orphans");
/// "i:<id>" / "b:<id>" → (): records with a write-ahead intent.
const PENDING: TableDefinition<&str, ()> = TableDefinition::new("pending");
/// seq → [`AuditRecord`] as JSON.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

#[derive(Serialize, Deserialize)]
struct CatalogMeta {
    etag: Option<String>,
    last_modified: Option<String>,
    fetched_at_ms: u64,
}

/// redb's page cache (read and write) for the store file.
const PAGE_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The redb-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    mirror: Arc<RwLock<Mirror>>,
    writes: std::sync::mpsc::Sender<Job>,
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
        let (db, mirror) = tokio::task::spawn_blocking(move || {
            if let Some(parent) = opened.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| store_error(&format!("create {}", parent.display()), e))?;
            }
            // The mirror answers every registry read, so redb's page cache only serves writes and
            // the audit log: bounded well below its 1 GiB default, it keeps RSS flat under load.
            let db = Database::builder()
                .set_cache_size(PAGE_CACHE_BYTES)
                .create(&opened)
                .map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => RoutingError::Store(format!(
                        "{shown} is in use by another process (one gateway per embedded store file)"
                    )),
                    e => store_error(&format!("open {shown}"), e),
                })?;
            // Create the tables once so readers never meet a missing table.
            let txn = db.begin_write().map_err(|e| store_error("begin", e))?;
            let open_error = |e| store_error("open table", e);
            txn.open_table(CATALOG_BODIES).map_err(open_error)?;
            txn.open_table(CATALOG_META).map_err(open_error)?;
            txn.open_table(INSTANCES).map_err(open_error)?;
            txn.open_table(BINDINGS).map_err(open_error)?;
            txn.open_table(INSTANCE_BINDINGS).map_err(open_error)?;
            txn.open_table(ORPHANS).map_err(open_error)?;
            txn.open_table(PENDING).map_err(open_error)?;
            txn.open_table(AUDIT).map_err(open_error)?;
            txn.commit().map_err(|e| store_error("commit", e))?;
            // Load every record into the mirror.
            let mut mirror = Mirror::default();
            for record in all_records::<InstanceRecord>(&db, INSTANCES)? {
                mirror.apply(Change::PutInstance(record));
            }
            for record in all_records::<BindingRecord>(&db, BINDINGS)? {
                mirror.apply(Change::PutBinding(record));
            }
            Ok::<_, RoutingError>((db, mirror))
        })
        .await
        .map_err(|e| store_error("open task", e))??;
        let (db, mirror) = (Arc::new(db), Arc::new(RwLock::new(mirror)));
        let writes = spawn_writer(&db, mirror.clone())?;
        Ok(EmbeddedStore {
            db,
            mirror,
            writes,
            path,
        })
    }

    /// Runs `write` in the writer thread's next transaction; returns once it is committed (and
    /// the mirror updated with the changes it reports).
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Tables<'_>) -> Result<(T, Vec<Change>), RoutingError> + Send + 'static,
    ) -> Result<T, RoutingError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            run: Box::new(move |tables| write(tables).map(|(t, changes)| (Box::new(t) as Output, changes))),
            reply,
        };
        self.writes
            .send(job)
            .map_err(|_| store_error("write", "the writer thread stopped"))?;
        let output = answer
            .await
            .map_err(|_| store_error("write", "the writer thread stopped"))??;
        output
            .downcast::<T>()
            .map(|t| *t)
            .map_err(|_| store_error("write", "unexpected result type"))
    }

    fn read<T>(&self, read: impl FnOnce(&Mirror) -> T) -> T {
        read(
            &self
                .mirror
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
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

fn decode<R: Indexed>(bytes: &[u8]) -> Result<R, RoutingError> {
    serde_json::from_slice(bytes).map_err(|e| store_error("decode record", e))
}

fn all_records<R: Indexed>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
) -> Result<Vec<R>, RoutingError> {
    let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
    let table = txn.open_table(table).map_err(|e| store_error("open table", e))?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(|e| store_error("read", e))? {
        let (_, value) = entry.map_err(|e| store_error("read", e))?;
        out.push(decode(value.value())?);
    }
    Ok(out)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, RoutingError> {
        Ok(self.read(|m| m.instances.get(instance_id).cloned()))
    }

    async fn swap_instance(
        &self,
        instance_id: &str,
        expect: Expect,
        record: Option<InstanceRecord>,
    ) -> Result<Swap<InstanceRecord>, RoutingError> {
        let id = instance_id.to_owned();
        self.write(move |tables| {
            let deleting = record.is_none();
            let (outcome, _) = swap_in(tables, &id, expect, record)?;
            let changes = match &outcome {
                Swap::Written(record) => vec![Change::PutInstance(record.clone())],
                Swap::Deleted => vec![Change::DeleteInstance(id.clone())],
                Swap::Conflict => Vec::new(),
            };
            if deleting && outcome == Swap::Deleted {
                // Cascade: the bindings of a deleted instance are gone with it.
                let prefix = format!("{id}\n");
                let keys: Vec<String> = tables
                    .links()?
                    .range(prefix.as_str()..)
                    .map_err(|e| store_error("read", e))?
                    .map_while(|entry| entry.ok().map(|(k, _)| k.value().to_owned()))
                    .take_while(|k| k.starts_with(&prefix))
                    .collect();
                for key in keys {
                    tables
                        .links()?
                        .remove(key.as_str())
                        .map_err(|e| store_error("delete", e))?;
                    if let Some(binding_id) = key.strip_prefix(&prefix) {
                        tables
                            .bindings()?
                            .remove(binding_id)
                            .map_err(|e| store_error("delete", e))?;
                        let index_key = format!("b:{binding_id}");
                        set_flag(tables.orphans()?, &index_key, false)?;
                        set_flag(tables.pending()?, &index_key, false)?;
                    }
                }
            }
            Ok((outcome, changes))
        })
        .await
    }

    async fn binding(&self, binding_id: &str) -> Result<Option<BindingRecord>, RoutingError> {
        Ok(self.read(|m| m.bindings.get(binding_id).cloned()))
    }

    async fn swap_binding(
        &self,
        binding_id: &str,
        expect: Expect,
        record: Option<BindingRecord>,
    ) -> Result<Swap<BindingRecord>, RoutingError> {
        let id = binding_id.to_owned();
        self.write(move |tables| {
            let deleting = record.is_none();
            let instance_id = record.as_ref().map(|r| r.instance_id.clone());
            let (outcome, stored) = swap_in(tables, &id, expect, record)?;
            // The instance → bindings link exists exactly while the binding does (a binding never
            // moves to another instance): written when it is created, removed when it is deleted.
            match (&outcome, &stored, deleting) {
                (Swap::Written(_), None, _) => {
                    let link = format!("{}\n{id}", instance_id.unwrap_or_default());
                    tables
                        .links()?
                        .insert(link.as_str(), ())
                        .map_err(|e| store_error("write", e))?;
                }
                (Swap::Deleted, Some(old), true) => {
                    let link = format!("{}\n{id}", old.instance_id);
                    tables
                        .links()?
                        .remove(link.as_str())
                        .map_err(|e| store_error("delete", e))?;
                }
                _ => {}
            }
            let changes = match &outcome {
                Swap::Written(record) => vec![Change::PutBinding(record.clone())],
                Swap::Deleted => vec![Change::DeleteBinding(id.clone())],
                Swap::Conflict => Vec::new(),
            };
            Ok((outcome, changes))
        })
        .await
    }

    async fn bindings_of(&self, instance_id: &str) -> Result<Vec<BindingRecord>, RoutingError> {
        Ok(self.read(|m| {
            m.by_instance
                .get(instance_id)
                .map(|ids| ids.iter().filter_map(|id| m.bindings.get(id).cloned()).collect())
                .unwrap_or_default()
        }))
    }

    async fn instances(&self) -> Result<Vec<InstanceRecord>, RoutingError> {
        Ok(self.read(|m| m.instances.values().cloned().collect()))
    }

    async fn bindings(&self) -> Result<Vec<BindingRecord>, RoutingError> {
        Ok(self.read(|m| m.bindings.values().cloned().collect()))
    }

    async fn counts(&self) -> Result<RecordCounts, RoutingError> {
        Ok(self.read(|m| m.counts.clone()))
    }

    async fn orphans(&self) -> Result<Vec<RecordRef>, RoutingError> {
        Ok(self.read(|m| Mirror::refs(&m.orphans)))
    }

    async fn pending(&self) -> Result<Vec<RecordRef>, RoutingError> {
        Ok(self.read(|m| Mirror::refs(&m.pending)))
    }

    async fn claim_orphans(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<RecordRef>, RoutingError> {
        let mut mirror = self
            .mirror
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mirror = &mut *mirror;
        // As the PostgreSQL store orders them: bindings first, then instances; in each, the
        // owner's own claims, then the least recently claimed.
        let mut eligible: Vec<(bool, bool, u64, &(u8, String))> = mirror
            .orphans
            .iter()
            .filter_map(|key| match mirror.claims.get(key) {
                None => Some((key.0 != BINDING, true, 0, key)),
                Some((by, until)) if by == owner || *until < now_ms => {
                    Some((key.0 != BINDING, by != owner, *until, key))
                }
                Some(_) => None,
            })
            .collect();
        eligible.sort();
        let claimed: BTreeSet<(u8, String)> = eligible
            .into_iter()
            .take(limit)
            .map(|(_, _, _, key)| key.clone())
            .collect();
        for key in &claimed {
            mirror.claims.insert(key.clone(), (owner.to_owned(), until_ms));
        }
        Ok(Mirror::refs(&claimed))
    }

    async fn heartbeat(
        &self,
        replica: &str,
        now_ms: u64,
        since_ms: u64,
    ) -> Result<Vec<String>, RoutingError> {
        let mut mirror = self
            .mirror
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = mirror.replicas.entry(replica.to_owned()).or_insert(now_ms);
        *seen = (*seen).max(now_ms);
        let forget_before = since_ms.saturating_sub(FORGET_REPLICA_AFTER_MS);
        mirror
            .replicas
            .retain(|id, seen| id == replica || *seen >= forget_before);
        let mut alive: Vec<String> = mirror
            .replicas
            .iter()
            .filter(|(id, seen)| *id == replica || **seen >= since_ms)
            .map(|(id, _)| id.clone())
            .collect();
        alive.sort();
        Ok(alive)
    }

    async fn ping(&self) -> Result<(), RoutingError> {
        Ok(())
    }

    async fn quiesce(&self) {
        // Blocking-pool closures hold their own handle to the database, and one whose caller was
        // cancelled still runs to the end.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&self.db) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<u64, RoutingError> {
        let seqs = self.append_audits(vec![record]).await?;
        seqs.first()
            .copied()
            .ok_or_else(|| store_error("append audit record", "no sequence number"))
    }

    async fn append_audits(&self, records: Vec<AuditRecord>) -> Result<Vec<u64>, RoutingError> {
        self.write(move |tables| {
            let mut table = tables
                .txn
                .open_table(AUDIT)
                .map_err(|e| store_error("open table", e))?;
            let mut last = table
                .last()
                .map_err(|e| store_error("read", e))?
                .map_or(0, |(seq, _)| seq.value());
            let mut seqs = Vec::with_capacity(records.len());
            for record in records {
                last += 1;
                let record = AuditRecord { seq: last, ..record };
                let bytes = serde_json::to_vec(&record).map_err(|e| store_error("encode audit record", e))?;
                table
                    .insert(last, bytes.as_slice())
                    .map_err(|e| store_error("write", e))?;
                seqs.push(last);
            }
            Ok((seqs, Vec::new()))
        })
        .await
    }

    async fn prune_audit(&self, through: u64) -> Result<u64, RoutingError> {
        self.write(move |tables| {
            let mut table = tables
                .txn
                .open_table(AUDIT)
                .map_err(|e| store_error("open table", e))?;
            let mut removed = 0;
            table
                .retain_in(..=through, |_, _| {
                    removed += 1;
                    false
                })
                .map_err(|e| store_error("delete", e))?;
            Ok((removed, Vec::new()))
        })
        .await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, RoutingError> {
        let query = query.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| store_error("begin", e))?;
            let table = txn.open_table(AUDIT).map_err(|e| store_error("open table", e))?;
            let limit = query.page_size();
            let before = query.before.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            for entry in table.range(..before).map_err(|e| store_error("read", e))?.rev() {
                let (seq, value) = entry.map_err(|e| store_error("read", e))?;
                let mut record: AuditRecord = serde_json::from_slice(value.value())
                    .map_err(|e| store_error("decode audit record", e))?;
                record.seq = seq.value();
                if query.matches(&record) {
                    out.push(record);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

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
        self.write(move |tables| {
            let meta = CatalogMeta {
                etag: catalog.validators.etag,
                last_modified: catalog.validators.last_modified,
                fetched_at_ms: catalog.fetched_at_ms,
            };
            let meta = serde_json::to_string(&meta).map_err(|e| store_error("encode catalog meta", e))?;
            {
                let mut bodies = tables
                    .txn
                    .open_table(CATALOG_BODIES)
                    .map_err(|e| store_error("open table", e))?;
                bodies
                    .insert(broker.as_str(), catalog.body.as_ref())
                    .map_err(|e| store_error("write", e))?;
                let mut metas = tables
                    .txn
                    .open_table(CATALOG_META)
                    .map_err(|e| store_error("open table", e))?;
                metas
                    .insert(broker.as_str(), meta.as_str())
                    .map_err(|e| store_error("write", e))?;
            }
            Ok(((), Vec::new()))
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
