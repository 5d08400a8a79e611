//! The embedded store: one redb file, durable on commit, zero setup.
//!
//! Records live in the file only: a registry read is a redb read transaction served from its page
//! cache (a few µs, on the caller's thread), so memory stays flat however many instances there
//! are, and opening the file reads no record. What this process keeps in memory
//! ([`memory::Memory`]) is small and changes only after a commit succeeded: the orphan and pending
//! indexes and the records per broker, each also kept in a table of its own and loaded on open.
//!
//! redb is synchronous: scans (catalogs, inventory pages, exports) run on tokio's blocking pool;
//! writes go to one writer thread that **group-commits**: it takes every write waiting, runs them
//! one after the other in a single transaction, commits once (one `fsync` for the batch), and only
//! then answers each caller. A compare-and-swap is a read and a write inside that transaction, so
//! concurrent writers never interleave. Records are stored in a compact binary form
//! ([`codec`]); the orphan, pending and instance→bindings indexes and the counts are updated in the
//! same transaction. The file is locked by the process that opened it: one gateway per file.
//!
//! The audit log is a table of its own (seq → record as JSON), newest first.
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
mod codec;
mod memory;
mod read;

use self::batch::{Job, Output, Tables, flags_changed, spawn_writer, swap_in};
use self::codec::Stored;
use self::memory::{BINDING, Memory};
use super::indexed::Indexed;
use super::inventory::{MAX_PAGE, RecordFilter};
use super::{
    Expect, FORGET_REPLICA_AFTER_MS, PlanCount, RecordCounts, RecordRef, Store, StoredCatalog, Swap,
};
use crate::RoutingError;
use crate::audit::{AuditQuery, AuditRecord};
use crate::record::{BindingRecord, InstanceRecord};
use crate::upstream::Validators;

/// broker name → raw catalog body.
const CATALOG_BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog_bodies");
/// broker name → [`CatalogMeta`] as JSON.
const CATALOG_META: TableDefinition<&str, &str> = TableDefinition::new("catalog_meta");

/// instance id → [`InstanceRecord`] ([`codec`]).
const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
/// binding id → [`BindingRecord`] ([`codec`]).
const BINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");
/// "<instance id>\n<binding id>" → (): the bindings of an instance, for cascading deletes.
const INSTANCE_BINDINGS: TableDefinition<&str, ()> = TableDefinition::new("instance_bindings");
/// "i:<id>" / "b:<id>" → (): records being orphan-mitigated.
const ORPHANS: TableDefinition<&str, ()> = TableDefinition::new("orphans");
/// "i:<id>" / "b:<id>" → (): records with a write-ahead intent.
const PENDING: TableDefinition<&str, ()> = TableDefinition::new("pending");
/// seq → [`AuditRecord`] as JSON.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// "i:<broker>" / "b:<broker>" → how many records; [`COUNTED`] → 1 once the table is kept (files
/// written before it are counted once, on open).
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("counts");
/// The counts table's marker key (no kind is `~`).
const COUNTED: &str = "~counted";

#[derive(Serialize, Deserialize)]
struct CatalogMeta {
    etag: Option<String>,
    last_modified: Option<String>,
    fetched_at_ms: u64,
}

/// redb's page cache (read and write) for the store file: registry reads are served from it.
const PAGE_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// The redb-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    memory: Arc<RwLock<Memory>>,
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
        let (db, memory) = tokio::task::spawn_blocking(move || {
            if let Some(parent) = opened.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| store_error(&format!("create {}", parent.display()), e))?;
            }
            // Bounded well below redb's 1 GiB default: RSS stays flat under load; the OS's page
            // cache holds what does not fit.
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
            read::count_once(&txn)?;
            txn.commit().map_err(|e| store_error("commit", e))?;
            let memory = read::load_memory(&db)?;
            Ok::<_, RoutingError>((db, memory))
        })
        .await
        .map_err(|e| store_error("open task", e))??;
        let (db, memory) = (Arc::new(db), Arc::new(RwLock::new(memory)));
        let writes = spawn_writer(&db, memory.clone())?;
        Ok(EmbeddedStore {
            db,
            memory,
            writes,
            path,
        })
    }

    /// Runs `write` in the writer thread's next transaction; returns once it is committed (and
    /// the memory updated with what it changed).
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Tables<'_>) -> Result<T, RoutingError> + Send + 'static,
    ) -> Result<T, RoutingError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            run: Box::new(move |tables| write(tables).map(|t| Box::new(t) as Output)),
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

    fn memory<T>(&self, read: impl FnOnce(&Memory) -> T) -> T {
        read(
            &self
                .memory
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

    /// An inventory page of `table` ([`read::page`]), read on the blocking pool.
    async fn page<R: read::Paged>(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<R>, RoutingError> {
        let (filter, after) = (filter.clone(), after.map(str::to_owned));
        let limit = limit.clamp(1, MAX_PAGE);
        self.blocking(move |db| read::page(db, table, &filter, after.as_deref(), limit))
            .await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, RoutingError> {
        read::record(&self.db, INSTANCES, instance_id)
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
                    let Some(binding_id) = key.strip_prefix(&prefix) else {
                        continue;
                    };
                    let removed = tables
                        .bindings()?
                        .remove(binding_id)
                        .map_err(|e| store_error("delete", e))?
                        .map(|bytes| BindingRecord::decode(binding_id, bytes.value()))
                        .transpose()?;
                    if let Some(old) = removed {
                        tables.count(BINDING, &old.broker, -1);
                        let was = (old.is_orphaned(), old.is_pending());
                        flags_changed(tables, BINDING, binding_id, was, (false, false))?;
                    }
                }
            }
            Ok(outcome)
        })
        .await
    }

    async fn binding(&self, binding_id: &str) -> Result<Option<BindingRecord>, RoutingError> {
        read::record(&self.db, BINDINGS, binding_id)
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
            Ok(outcome)
        })
        .await
    }

    async fn bindings_of(&self, instance_id: &str) -> Result<Vec<BindingRecord>, RoutingError> {
        read::bindings_of(&self.db, instance_id)
    }

    async fn instances(&self) -> Result<Vec<InstanceRecord>, RoutingError> {
        self.blocking(|db| read::all_records(db, INSTANCES)).await
    }

    async fn bindings(&self) -> Result<Vec<BindingRecord>, RoutingError> {
        self.blocking(|db| read::all_records(db, BINDINGS)).await
    }

    async fn counts(&self) -> Result<RecordCounts, RoutingError> {
        Ok(self.memory(|m| m.counts.clone()))
    }

    async fn live_plans(&self) -> Result<Vec<PlanCount>, RoutingError> {
        self.blocking(read::live_plans).await
    }

    async fn list_instances(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, RoutingError> {
        self.page(INSTANCES, filter, after, limit).await
    }

    async fn list_bindings(
        &self,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BindingRecord>, RoutingError> {
        self.page(BINDINGS, filter, after, limit).await
    }

    async fn orphans(&self) -> Result<Vec<RecordRef>, RoutingError> {
        Ok(self.memory(|m| Memory::refs(&m.orphans)))
    }

    async fn pending(&self) -> Result<Vec<RecordRef>, RoutingError> {
        Ok(self.memory(|m| Memory::refs(&m.pending)))
    }

    async fn claim_orphans(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<RecordRef>, RoutingError> {
        let mut memory = self
            .memory
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let memory = &mut *memory;
        // As the PostgreSQL store orders them: bindings first, then instances; in each, the
        // owner's own claims, then the least recently claimed.
        let mut eligible: Vec<(bool, bool, u64, &(u8, String))> = memory
            .orphans
            .iter()
            .filter_map(|key| match memory.claims.get(key) {
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
            memory.claims.insert(key.clone(), (owner.to_owned(), until_ms));
        }
        Ok(Memory::refs(&claimed))
    }

    async fn heartbeat(
        &self,
        replica: &str,
        now_ms: u64,
        since_ms: u64,
    ) -> Result<Vec<String>, RoutingError> {
        let mut memory = self
            .memory
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = memory.replicas.entry(replica.to_owned()).or_insert(now_ms);
        *seen = (*seen).max(now_ms);
        let forget_before = since_ms.saturating_sub(FORGET_REPLICA_AFTER_MS);
        memory
            .replicas
            .retain(|id, seen| id == replica || *seen >= forget_before);
        let mut alive: Vec<String> = memory
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
            Ok(seqs)
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
            Ok(removed)
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
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests;
